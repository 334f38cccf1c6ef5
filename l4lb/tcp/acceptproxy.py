"""
C{bind = ... accept-proxy}: connections from trusted peers start with a
PROXY protocol header (version 1 or 2), and the client it names is the
one l4lb balances on, checks against its rules and limits, logs and passes
on with C{send-proxy}.

Only peers in the frontend's C{accept-proxy-from} ranges are trusted.  A
connection from another peer is not read for a header at all: its address
stays the peer's and every byte it sends, a header included, is relayed as
data, as HAProxy does for sources its C{expect-proxy} rule does not cover.
A trusted peer that sends no valid header is closed (C{CR}, with a log
line saying why); one that sends too little in time is closed by the
frontend's inspect delay (C{cR}).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Optional, Tuple, Union

from zope.interface import implementer

from l4lb.interfaces import IClientStage
from l4lb.tcp.proxyread import InvalidHeader, read_header
from l4lb.tcp.stages import StageRejected

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_networks(texts: Iterable[str]) -> Tuple[Network, ...]:
    """
    Read address ranges: C{10.0.0.0/8}, C{2001:db8::/32}, or a single
    address.

    @raise ValueError: For text that is not an address or a range.
    """
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)


@implementer(IClientStage)
class AcceptProxy:
    """
    The stage that reads a PROXY protocol header, first on its bind.

    @ivar trusted: The peer address ranges whose headers are read.
    """

    def __init__(self, trusted: Iterable[Network]) -> None:
        self.trusted = tuple(trusted)

    def trusts(self, host: str) -> bool:
        """
        Whether a peer's header is read: its address is in a trusted range
        (an IPv4 client of an IPv6 socket is matched by its IPv4 address).
        """
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)

    def inspect(self, session: Any, data: bytearray) -> Optional[int]:
        """
        Read the header and take the addresses it carries; see
        L{IClientStage.inspect}.

        @raise StageRejected: C{PR} when a trusted peer sends something
            else than a valid header (the proxy refuses what it cannot
            read, as for HAProxy's invalid requests; not counted as
            denied).
        """
        if not self.trusts(session.client_host):
            return 0
        try:
            header = read_header(bytes(data))
        except InvalidHeader as e:
            raise StageRejected("PR", e.message, denied=False)
        if header is None:
            return None
        if header.source is not None:
            session.client_host, session.client_port = header.source
            session.destination = header.destination
        return header.length

    def expired(self, session: Any, data: bytearray) -> Optional[int]:
        """
        A trusted peer did not send a whole header in time.

        @raise StageRejected: Always, C{cR}.
        """
        raise StageRejected(
            "cR", f"incomplete PROXY protocol header ({len(data)} bytes) when inspect-delay expired"
        )
