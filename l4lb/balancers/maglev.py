"""
C{maglev}: l4lb's own hashing algorithm, the lookup table of Google's
Maglev load balancer (Eisenbud et al., NSDI 2016), with weights as in
Envoy.

Each eligible server has a permutation of the table's slots, given by an
offset and a skip derived from its hash key (C{offset = h1 % M},
C{skip = h2 % (M - 1) + 1}, slot C{j} = C{(offset + j * skip) % M}).
Servers take turns claiming the next free slot of their permutation until
the table is full; a server of weight C{w} claims a slot in a round only
while it holds fewer than C{round * w / max_weight} slots, so shares
follow weights.  A client goes to C{table[hash % M]}: one hash and one
index per pick.

The table has C{M} slots, a prime (C{balance = maglev(M)}, 65537 by
default); each server's share is within one slot of even, and when a
server goes down almost only its clients move.  The table is rebuilt when a
server goes down, comes back or changes weight: about C{M * ln M} steps
(a few hundred milliseconds for 65537 slots).  When a client's server may
not take the connection (full, avoided on a retry), the next slots are
tried.
"""

from __future__ import annotations

from typing import Container, Iterable, List, Optional, Tuple

from l4lb.balancers.base import BalancerArgumentError, BalancerBase
from l4lb.balancers.hashing import client_hash, hash64, server_hash_key
from l4lb.pool import Server

#: The table size when C{maglev} is written without one.
DEFAULT_SIZE = 65537
#: The largest table size accepted.
MAX_SIZE = 16777213


def is_prime(n: int) -> bool:
    """
    Whether C{n} is prime (trial division; C{n} up to L{MAX_SIZE}).
    """
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    divisor = 3
    while divisor * divisor <= n:
        if n % divisor == 0:
            return False
        divisor += 2
    return True


def maglev_table(servers: Iterable[Server], size: int) -> List[Server]:
    """
    Return the Maglev lookup table of C{size} slots over the servers with
    a weight above 0, or an empty list when there is none.

    Servers are ordered by hash key, so the table does not depend on their
    order in the file.
    """
    members = sorted(
        ((server_hash_key(s), s) for s in servers if s.weight > 0),
        key=lambda item: item[0],
    )
    if not members:
        return []
    count = len(members)
    offsets = [hash64(b"maglev-offset:" + key) % size for key, _ in members]
    skips = [hash64(b"maglev-skip:" + key) % (size - 1) + 1 for key, _ in members]
    weights = [s.weight for _, s in members]
    owners = [s for _, s in members]
    heaviest = max(weights)
    # The next slot each server would try: offset + j * skip, kept modulo size.
    positions = list(offsets)
    held = [0] * count
    table: List[Optional[Server]] = [None] * size
    filled = 0
    turn = 0
    while True:
        turn += 1
        for i in range(count):
            if held[i] * heaviest >= turn * weights[i]:
                continue
            slot = positions[i]
            skip = skips[i]
            while table[slot] is not None:
                slot += skip
                if slot >= size:
                    slot -= size
            table[slot] = owners[i]
            slot += skip
            positions[i] = slot - size if slot >= size else slot
            held[i] += 1
            filled += 1
            if filled == size:
                return table  # type: ignore[return-value]


class Maglev(BalancerBase):
    """
    Client address hashing through a Maglev lookup table.

    @ivar size: The table's number of slots, a prime.
    """

    name = "maglev"
    needs_client_address = True
    # A weight change rebuilds the table: slowstart only ramps maxconn.
    dynamic_weights = False

    def setup(self) -> None:
        """
        Build the algorithm's own state.
        """
        self.size = int(self.args[0]) if self.args else DEFAULT_SIZE
        self._tiers = (self._active, self._backups)
        self._tables: List[List[Server]] = [[], []]
        for tier in (0, 1):
            self._rebuild(tier)

    @classmethod
    def check_args(cls, args: Tuple[str, ...]) -> None:
        """
        Accept nothing or one prime table size from 3 to L{MAX_SIZE}.
        """
        if not args:
            return
        if (
            len(args) == 1
            and args[0].isdigit()
            and 3 <= int(args[0]) <= MAX_SIZE
            and is_prime(int(args[0]))
        ):
            return
        raise BalancerArgumentError(
            cls.name,
            args,
            f"expected one prime table size from 3 to {MAX_SIZE}, well above the"
            f" number of servers, as in maglev({DEFAULT_SIZE})",
        )

    def _rebuild(self, tier: int) -> None:
        """
        Rebuild one tier's table (0: active, 1: backup) over its eligible
        servers.
        """
        self._tables[tier] = maglev_table(
            (s for s in self._tiers[tier] if s.eligible), self.size
        )

    def table(self, backup: bool = False) -> List[Server]:
        """
        Return the current lookup table of the active servers (or of the
        backup servers), for inspection.
        """
        return self._tables[1 if backup else 0]

    def pick(
        self, client_address: Optional[str], avoid: Container[Server] = ()
    ) -> Optional[Server]:
        """
        Return the client's server from the table, or the next usable one.

        @param client_address: The client's IP address; all clients without
            one hash alike.
        @param avoid: Servers not to choose unless nothing else is left.
        """
        if self.active_in_use():
            table = self._tables[0]
        elif self.allbackups:
            table = self._tables[1]
        else:
            return self.fallback(avoid)
        if not table:
            return self.fallback(avoid)
        return self.walk(table, client_hash(client_address) % self.size, avoid)

    def _tier_of(self, server: Server) -> int:
        return 1 if server.spec.backup else 0

    def server_up(self, server: Server) -> None:
        """
        Rebuild C{server}'s tier with it.
        """
        self._rebuild(self._tier_of(server))

    def server_down(self, server: Server) -> None:
        """
        Rebuild C{server}'s tier without it.
        """
        self._rebuild(self._tier_of(server))

    def weight_changed(self, server: Server) -> None:
        """
        Rebuild C{server}'s tier with its new weight.
        """
        self._rebuild(self._tier_of(server))
