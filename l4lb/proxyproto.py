"""
The PROXY protocol headers l4lb sends to servers (C{send-proxy},
C{send-proxy-v2}): pure functions of the addresses, independent of Twisted.

The layout is HAProxy's specification (C{doc/proxy-protocol.txt}):

  - version 1 is one ASCII line, C{PROXY TCP4 SRC DST SPORT DPORT\\r\\n}
    (C{TCP6} for IPv6, C{PROXY UNKNOWN\\r\\n} when the addresses are not
    IP addresses);
  - version 2 is binary: the 12-byte signature, the version and command
    (C{0x21} PROXY, C{0x20} LOCAL), the family and transport (C{0x11}
    TCP over IPv4, C{0x21} TCP over IPv6, C{0x00} unspecified), the length
    of what follows, the addresses and ports, then type-length-value
    records (l4lb sends C{PP2_TYPE_AUTHORITY} with the TLS server name
    when it is known).

When one address is IPv4 and the other IPv6, the IPv4 one is written as an
IPv4-mapped IPv6 address, as HAProxy does, so that both have one family.
When both are IPv4-mapped IPv6 addresses (an IPv4 client of a dual-stack
IPv6 socket), both are written as the IPv4 addresses they are.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, Callable, Optional, Tuple, Union

#: The first 12 bytes of every version 2 header.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

#: Version 2, command PROXY: the connection was relayed for a client.
V2_PROXY = 0x21
#: Version 2, command LOCAL: the connection was made by the proxy itself
#: (a health check); the receiver uses the real addresses.
V2_LOCAL = 0x20

#: Family and transport bytes of version 2.
TCP4 = 0x11
TCP6 = 0x21
UNSPEC = 0x00

#: The TLV type carrying the host name the client asked for (the TLS SNI).
PP2_TYPE_AUTHORITY = 0x02

#: The longest version 1 line, CRLF included, in the specification.
V1_MAX = 107

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Endpoint = Tuple[str, int]

_V2_FIXED = struct.Struct("!12sBBH")
_V4_BLOCK = struct.Struct("!4s4sHH")
_V6_BLOCK = struct.Struct("!16s16sHH")


def _ip(host: str) -> Optional[IPAddress]:
    """
    Read an IP address, dropping an IPv6 zone (C{%eth0}) which the header
    cannot carry; C{None} for anything else (a UNIX socket's path).
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return address


def _mapped(address: IPAddress) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + address.packed)


def _pair(
    source: Optional[Endpoint], destination: Optional[Endpoint]
) -> Optional[Tuple[IPAddress, int, IPAddress, int]]:
    """
    Both endpoints as IP addresses of one family, or C{None} when either is
    missing, not an IP address, or has a port out of range.
    """
    if source is None or destination is None:
        return None
    src = _ip(source[0])
    dst = _ip(destination[0])
    if src is None or dst is None:
        return None
    ports = (source[1], destination[1])
    if not all(isinstance(p, int) and 0 <= p <= 65535 for p in ports):
        return None
    if src.version != dst.version:
        src, dst = _mapped(src), _mapped(dst)
    elif isinstance(src, ipaddress.IPv6Address) and isinstance(dst, ipaddress.IPv6Address):
        # An IPv4 client of a dual-stack IPv6 socket: both ends are IPv4.
        src4, dst4 = src.ipv4_mapped, dst.ipv4_mapped
        if src4 is not None and dst4 is not None:
            src, dst = src4, dst4
    return src, ports[0], dst, ports[1]


def v1_header(source: Optional[Endpoint], destination: Optional[Endpoint]) -> bytes:
    """
    A version 1 header (one text line).

    @param source: The client's C{(address, port)}.
    @param destination: The C{(address, port)} the client connected to.
    @return: C{PROXY TCP4|TCP6 ...\\r\\n}, or C{PROXY UNKNOWN\\r\\n} when
        either is not an IP address.
    """
    pair = _pair(source, destination)
    if pair is None:
        return b"PROXY UNKNOWN\r\n"
    src, sport, dst, dport = pair
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode("ascii")


def tlv(kind: int, value: bytes) -> bytes:
    """
    One type-length-value record of a version 2 header.

    @raise ValueError: When C{value} is longer than 65535 bytes.
    """
    if len(value) > 0xFFFF:
        raise ValueError("a TLV value is at most 65535 bytes")
    return struct.pack("!BH", kind, len(value)) + value


def v2_header(
    source: Optional[Endpoint],
    destination: Optional[Endpoint],
    authority: Optional[str] = None,
    local: bool = False,
) -> bytes:
    """
    A version 2 header (binary).

    @param source: The client's C{(address, port)}.
    @param destination: The C{(address, port)} the client connected to.
    @param authority: The host name the client asked for (TLS SNI), sent
        as a C{PP2_TYPE_AUTHORITY} record; C{None} sends none.
    @param local: Send the C{LOCAL} command (a connection of the proxy's
        own, such as a health check) with no addresses.
    @return: The header; when the addresses are not both IP addresses it
        is a C{LOCAL} header with the unspecified family, as HAProxy sends.
    """
    pair = None if local else _pair(source, destination)
    if pair is None:
        command, family, block = V2_LOCAL, UNSPEC, b""
    else:
        src, sport, dst, dport = pair
        command = V2_PROXY
        if src.version == 4:
            family = TCP4
            block = _V4_BLOCK.pack(src.packed, dst.packed, sport, dport)
        else:
            family = TCP6
            block = _V6_BLOCK.pack(src.packed, dst.packed, sport, dport)
    if authority:
        block += tlv(PP2_TYPE_AUTHORITY, authority.encode("utf-8"))
    return _V2_FIXED.pack(V2_SIGNATURE, command, family, len(block)) + block


def session_endpoints(session: Any) -> Tuple[Endpoint, Optional[Endpoint]]:
    """
    The addresses a header describes for a relayed connection: the client's
    (the peer's, or the one an accepted PROXY header carried) and the one
    it connected to (the listening socket's, or the destination an accepted
    header carried).
    """
    source = (session.client_host, session.client_port)
    destination = getattr(session, "destination", None)
    if destination is None:
        host = session.client.transport.getHost()
        if hasattr(host, "host") and hasattr(host, "port"):
            destination = (host.host, host.port)
    return source, destination


def _send_v1(session: Any) -> bytes:
    return v1_header(*session_endpoints(session))


def _send_v2(session: Any) -> bytes:
    source, destination = session_endpoints(session)
    return v2_header(source, destination, getattr(session, "sni", None))


def preamble(version: int) -> Optional[Callable[[Any], bytes]]:
    """
    What a server with C{send-proxy} (C{1}) or C{send-proxy-v2} (C{2})
    receives first on each relayed connection, as a function of the
    session (L{l4lb.pool.Server.preamble}); C{None} for C{0} (no header).
    """
    return {1: _send_v1, 2: _send_v2}.get(version)


def check_header(version: int) -> bytes:
    """
    The header a health check sends first (C{check-send-proxy}): no client
    stands behind a check, so version 1 says C{UNKNOWN} and version 2 uses
    the C{LOCAL} command, as HAProxy's checks do.
    """
    if version == 2:
        return v2_header(None, None, local=True)
    return v1_header(None, None)
