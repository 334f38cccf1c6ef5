"""
Tests for L{l4lb.proxyproto}: the PROXY protocol headers sent to servers,
checked against the specification's examples and layout, and read back by
Twisted's parsers.
"""

from __future__ import annotations

import struct
from ipaddress import ip_address
from typing import Any, Optional

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser

from l4lb.proxyproto import (
    V1_MAX,
    V2_SIGNATURE,
    check_header,
    preamble,
    session_endpoints,
    tlv,
    v1_header,
    v2_header,
)

MAX6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"


def test_v1_tcp4_matches_the_specification_example() -> None:
    """An IPv4 connection gives the specification's TCP4 line."""
    assert (
        v1_header(("127.168.0.1", 56324), ("127.168.0.11", 443))
        == b"PROXY TCP4 127.168.0.1 127.168.0.11 56324 443\r\n"
    )


def test_v1_tcp6_longest_line_fits_the_limit() -> None:
    """The longest TCP6 line is the specification's 104 bytes, under 107."""
    line = v1_header((MAX6, 65535), (MAX6, 65535))
    assert line == f"PROXY TCP6 {MAX6} {MAX6} 65535 65535\r\n".encode()
    assert len(line) == 104 <= V1_MAX


def test_v1_tcp6_uses_the_short_form() -> None:
    """IPv6 addresses are written compressed, and a zone is dropped."""
    assert (
        v1_header(("2001:db8:0:0:0:0:0:1", 1000), ("fe80::1%eth0", 80))
        == b"PROXY TCP6 2001:db8::1 fe80::1 1000 80\r\n"
    )


def test_v1_unknown_for_non_ip_addresses() -> None:
    """A UNIX socket peer or a missing address gives PROXY UNKNOWN."""
    assert v1_header(("unix", 0), ("127.0.0.1", 80)) == b"PROXY UNKNOWN\r\n"
    assert v1_header(("127.0.0.1", 1), None) == b"PROXY UNKNOWN\r\n"
    assert v1_header(("127.0.0.1", 70000), ("127.0.0.2", 80)) == b"PROXY UNKNOWN\r\n"


def test_mixed_families_are_written_as_ipv6() -> None:
    """An IPv4 address paired with an IPv6 one is written IPv4-mapped."""
    assert (
        v1_header(("192.0.2.1", 5), ("2001:db8::2", 6))
        == b"PROXY TCP6 ::ffff:c000:201 2001:db8::2 5 6\r\n"
    )


def test_ipv4_clients_of_a_dual_stack_socket_are_ipv4() -> None:
    """When both ends are IPv4-mapped IPv6 addresses, the header says TCP4."""
    assert (
        v1_header(("::ffff:192.0.2.1", 5), ("::ffff:127.0.0.1", 80))
        == b"PROXY TCP4 192.0.2.1 127.0.0.1 5 80\r\n"
    )
    assert v2_header(("::ffff:192.0.2.1", 5), ("::ffff:127.0.0.1", 80))[13] == 0x11


def test_v2_tcp4_layout_field_by_field() -> None:
    """A TCP over IPv4 header has the signature, 0x21, 0x11, length 12 and the addresses."""
    header = v2_header(("127.168.0.1", 56324), ("127.168.0.11", 443))
    assert len(header) == 28
    assert header[:12] == b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a" == V2_SIGNATURE
    assert header[12] == 0x21
    assert header[13] == 0x11
    assert struct.unpack("!H", header[14:16]) == (12,)
    assert header[16:20] == bytes([127, 168, 0, 1])
    assert header[20:24] == bytes([127, 168, 0, 11])
    assert struct.unpack("!HH", header[24:28]) == (56324, 443)


def test_v2_tcp6_layout_field_by_field() -> None:
    """A TCP over IPv6 header has family 0x21, length 36, 16-byte addresses."""
    header = v2_header(("2001:db8::1", 1), ("::1", 65535))
    assert header[12:14] == b"\x21\x21"
    assert struct.unpack("!H", header[14:16]) == (36,)
    assert header[16:32] == b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"
    assert header[32:48] == b"\x00" * 15 + b"\x01"
    assert struct.unpack("!HH", header[48:52]) == (1, 65535)
    assert len(header) == 52


def test_v2_authority_tlv_carries_the_server_name() -> None:
    """A known SNI is appended as a PP2_TYPE_AUTHORITY record counted in the length."""
    header = v2_header(("127.0.0.1", 1), ("127.0.0.2", 2), authority="db.example.com")
    assert struct.unpack("!H", header[14:16]) == (12 + 3 + 14,)
    assert header[28:31] == b"\x02\x00\x0e"
    assert header[31:] == b"db.example.com"


def test_tlv_rejects_oversized_values() -> None:
    """A TLV longer than its 16-bit length field can say is refused."""
    assert tlv(0x02, b"x") == b"\x02\x00\x01x"
    try:
        tlv(0x02, b"x" * 65536)
    except ValueError:
        pass
    else:
        raise AssertionError("no error")


def test_v2_local_for_non_ip_addresses_and_checks() -> None:
    """Without IP addresses, and for checks, v2 sends LOCAL with the unspecified family."""
    local = V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert v2_header(("unix", 0), ("unix", 0)) == local
    assert check_header(2) == local
    assert check_header(1) == b"PROXY UNKNOWN\r\n"


def test_twisted_reads_what_we_write() -> None:
    """Twisted's parsers read our v1 and v2 headers back to the same addresses."""
    for src, dst in [
        (("192.0.2.1", 40000), ("198.51.100.1", 443)),
        (("2001:db8::5", 1), ("2001:db8::6", 65535)),
    ]:
        for parser, header in [
            (V1Parser(), v1_header(src, dst)),
            (V2Parser(), v2_header(src, dst, authority="a.example")),
        ]:
            info, rest = parser.feed(header + b"data")
            assert rest == b"data"
            assert info is not None and info.source is not None and info.destination is not None
            source: Any = info.source
            destination: Any = info.destination
            assert (ip_address(source.host), source.port) == (ip_address(src[0]), src[1])
            assert (ip_address(destination.host), destination.port) == (
                ip_address(dst[0]),
                dst[1],
            )


class _Transport:
    def __init__(self, host: Any) -> None:
        self.host = host

    def getHost(self) -> Any:
        return self.host


class _Client:
    def __init__(self, host: Any) -> None:
        self.transport = _Transport(host)


class _Session:
    def __init__(self, host: Any, destination: Optional[Any] = None, sni: Optional[str] = None) -> None:
        self.client_host = "192.0.2.9"
        self.client_port = 5555
        self.client = _Client(host)
        self.destination = destination
        self.sni = sni


def test_session_destination_is_the_listening_socket_unless_a_header_said() -> None:
    """The destination is the socket the client reached, or what an accepted header carried."""
    host = IPv4Address("TCP", "127.0.0.1", 8080)
    assert session_endpoints(_Session(host)) == (("192.0.2.9", 5555), ("127.0.0.1", 8080))
    carried = _Session(host, destination=("203.0.113.1", 443))
    assert session_endpoints(carried)[1] == ("203.0.113.1", 443)
    assert session_endpoints(_Session(UNIXAddress(b"/tmp/s")))[1] is None


def test_preamble_per_version() -> None:
    """send-proxy writes v1, send-proxy-v2 writes v2 with the SNI, none writes nothing."""
    session = _Session(IPv4Address("TCP", "127.0.0.1", 8080), sni="x.example")
    v1, v2 = preamble(1), preamble(2)
    assert preamble(0) is None
    assert v1 is not None and v2 is not None
    assert v1(session) == b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 8080\r\n"
    assert v2(session) == v2_header(("192.0.2.9", 5555), ("127.0.0.1", 8080), "x.example")
    session.sni = None
    assert v2(session) == v2_header(("192.0.2.9", 5555), ("127.0.0.1", 8080))
