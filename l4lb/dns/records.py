"""
What DNS answers mean for servers, as HAProxy decides it: pure functions
and a small state class, with time passed in.

A L{Resolution} keeps the records of one name across answers: a record
missing from a valid answer stays for C{hold obsolete}; after a failed
resolution the records of the last valid answer stay for the C{hold} of
that kind of failure.  L{assign} then places the records in a template's
slots, keeping each record in the slot it already has.
"""

from __future__ import annotations

import ipaddress
from typing import Dict, List, Optional, Sequence, Tuple

import attr

from l4lb.config.dns import ResolversSpec

#: The kinds of answer (C{hold} names them).
VALID = "valid"
NX = "nx"
REFUSED = "refused"
TIMEOUT = "timeout"
OTHER = "other"

#: Why a server loses its address, in HAProxy's words, by kind of answer.
REASONS = {
    VALID: "No IP for server ",
    NX: "DNS NX status",
    REFUSED: "DNS refused status",
    TIMEOUT: "DNS timeout status",
    OTHER: "unspecified DNS error",
}


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Record:
    """
    One server-worthy record of an answer.

    @ivar address: The IP address to connect to.
    @ivar port: The port an SRV record gives, else C{None}.
    @ivar weight: The SRV weight (0-65535), else C{None}.
    @ivar target: The SRV target's name, else C{""}.
    """

    address: str
    port: Optional[int] = None
    weight: Optional[int] = None
    target: str = ""

    @property
    def key(self) -> Tuple[str, Optional[int], str]:
        """
        What identifies the record from one answer to the next: an SRV
        record by target and port (its address may move), an address
        record by address.
        """
        if self.target:
            return ("", self.port, self.target)
        return (self.address, self.port, "")


def server_weight(srv_weight: int) -> int:
    """
    HAProxy's mapping of an SRV weight (0-65535) to a server weight
    (1-256): C{weight / 256 + 1}, so that weight 0 still takes traffic.
    """
    return min(256, max(0, srv_weight) // 256 + 1)


def order_addresses(
    addresses: Sequence[str], prefer: str = "ipv6", nets: Sequence[str] = ()
) -> List[str]:
    """
    Sort addresses as HAProxy picks them: those in a C{resolve-net}
    network first (in the order of the networks), then the preferred
    family, keeping the answer's order otherwise.
    """
    networks = [ipaddress.ip_network(net) for net in nets]

    def rank(item: Tuple[int, str]) -> Tuple[int, int, int]:
        index, text = item
        address = ipaddress.ip_address(text)
        net_rank = next(
            (i for i, net in enumerate(networks) if address.version == net.version and address in net),
            len(networks),
        )
        family = 0 if (address.version == 6) == (prefer == "ipv6") else 1
        return (net_rank, family, index)

    return [text for _, text in sorted(enumerate(addresses), key=rank)]


class Resolution:
    """
    The records of one name, across answers.

    @ivar records: The records in force, by L{Record.key}, with when each
        was last seen.
    @ivar last_valid: When the last valid answer came, or C{None}.
    @ivar status: The kind of the last answer.
    """

    def __init__(self, spec: ResolversSpec) -> None:
        self.spec = spec
        self.records: Dict[Tuple[str, Optional[int], str], Tuple[Record, float]] = {}
        self.last_valid: Optional[float] = None
        self.status = VALID

    def answered(self, records: Sequence[Record], now: float) -> List[Record]:
        """
        Take a valid answer (one with no record counts as valid: the name
        exists and has nothing).

        @return: The records in force: those of the answer, then those
            missing from it for less than C{hold obsolete}.
        """
        self.status = VALID
        self.last_valid = now
        for record in records:
            self.records[record.key] = (record, now)
        hold = self.spec.hold_for("obsolete")
        for key, (record, seen) in list(self.records.items()):
            if now - seen > hold:
                del self.records[key]
        return self.current()

    def failed(self, kind: str, now: float) -> List[Record]:
        """
        Take a failed resolution of C{kind} (L{NX}, L{REFUSED}, L{TIMEOUT},
        L{OTHER}).

        @return: The records in force: the last valid answer's while it is
            younger than the C{hold} of C{kind}, then none.
        """
        self.status = kind
        if self.last_valid is None or now - self.last_valid > self.spec.hold_for(kind):
            self.records.clear()
        return self.current()

    def current(self) -> List[Record]:
        """
        The records in force, most recently seen first, then in the order
        they came.
        """
        return [record for record, _ in self.records.values()]

    @property
    def reason(self) -> str:
        """
        Why a server of this name has no address, in HAProxy's words.
        """
        return REASONS[self.status]


def assign(
    slots: Sequence[Optional[Record]], records: Sequence[Record]
) -> List[Optional[Record]]:
    """
    Place C{records} in a template's slots.

    A record already in a slot stays there (an SRV record whose address,
    port or weight changed too); a slot whose record is gone empties; new
    records fill the empty slots in order.  Records beyond the slots are
    left out.

    @param slots: What each slot holds now (C{None}: empty).
    @return: What each slot holds next.
    """
    wanted = {record.key: record for record in records}
    placed: List[Optional[Record]] = []
    for held in slots:
        placed.append(wanted.pop(held.key) if held is not None and held.key in wanted else None)
    waiting = [record for record in records if record.key in wanted]
    for index, held in enumerate(placed):
        if held is None and waiting:
            placed[index] = waiting.pop(0)
    return placed


def follow(
    current: Optional[str], addresses: Sequence[str], taken: Sequence[str] = ()
) -> Optional[str]:
    """
    The address a server following a name takes: the one it has while the
    answer still holds it (no churn), else the first one no other server
    of the backend took (C{prevent-dup-ip}), else C{None}.

    @param addresses: The answer's addresses, ordered by L{order_addresses}.
    @param taken: Addresses other servers of the backend have.
    """
    if current is not None and current in addresses:
        return current
    for address in addresses:
        if address not in taken:
            return address
    return None
