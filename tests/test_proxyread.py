"""
Tests for L{l4lb.tcp.proxyread}: reading a PROXY protocol header from the
bytes a client sent, whole or in pieces, valid or not.
"""

from __future__ import annotations

import struct
from typing import List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l4lb.proxyproto import V2_SIGNATURE, tlv, v1_header, v2_header
from l4lb.tcp.proxyread import MAX_V2, InvalidHeader, ProxyHeader, read_header

V1 = b"PROXY TCP4 127.168.0.1 127.168.0.11 56324 443\r\n"
V1_6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"
V2 = v2_header(("192.0.2.1", 40000), ("198.51.100.1", 443), authority="db.example")
V2_6 = v2_header(("2001:db8::1", 1), ("::1", 2))


def test_v1_whole() -> None:
    """A v1 line gives its addresses and its length; what follows is left."""
    assert read_header(V1 + b"GET /") == ProxyHeader(
        1, len(V1), ("127.168.0.1", 56324), ("127.168.0.11", 443)
    )
    assert read_header(V1_6) == ProxyHeader(1, len(V1_6), ("2001:db8::1", 1), ("2001:db8::2", 65535))


def test_v1_unknown_carries_no_address() -> None:
    """PROXY UNKNOWN, with or without addresses after it, keeps the connection's own."""
    assert read_header(b"PROXY UNKNOWN\r\nxyz") == ProxyHeader(1, 15)
    line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"
    assert read_header(line) == ProxyHeader(1, len(line))


def test_v2_whole() -> None:
    """A v2 header (with a TLV) gives its addresses and its whole length."""
    assert read_header(V2 + b"\x16\x03") == ProxyHeader(
        2, len(V2), ("192.0.2.1", 40000), ("198.51.100.1", 443)
    )
    assert read_header(V2_6) == ProxyHeader(2, len(V2_6), ("2001:db8::1", 1), ("::1", 2))


def test_v2_local_carries_no_address() -> None:
    """A LOCAL header (a proxy's own health check) keeps the connection's addresses."""
    local = v2_header(None, None, local=True)
    assert read_header(local) == ProxyHeader(2, 16)


def test_v2_unix_family_carries_no_address() -> None:
    """A header for UNIX sockets is accepted, and its paths are not used as addresses."""
    block = b"/a".ljust(108, b"\x00") + b"/b".ljust(108, b"\x00")
    header = V2_SIGNATURE + b"\x21\x31" + struct.pack("!H", len(block)) + block
    assert read_header(header) == ProxyHeader(2, len(header))


@pytest.mark.parametrize("header", [V1, V1_6, V2, V2_6], ids=["v1", "v1-6", "v2", "v2-6"])
def test_every_split_waits_then_reads(header: bytes) -> None:
    """Cut at any offset, the beginning asks for more and the whole is read."""
    for cut in range(len(header)):
        assert read_header(header[:cut]) is None, cut
    assert read_header(header) is not None


@pytest.mark.parametrize(
    "data, words",
    [
        (b"GET / HTTP/1.0\r\n", "no PROXY protocol header"),
        (b"\x16\x03\x01\x02\x00", "no PROXY protocol header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "expected 6 words"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "invalid source address"),
        (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "invalid destination address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "invalid source address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "invalid source port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", "invalid destination port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", "expected 6 words"),
        (b"PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n", "not printable"),
        (b"PROXY TCP4 1.2.3.4\x00", "not printable"),
        (b"PROXY " + b"x" * 120, "without CRLF in its first 107 bytes"),
        (V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\x00" * 12, "version 1"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c" + b"\x00" * 12, "InvalidProxyHeader"),
        (V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4, "MissingAddressData"),
        (V2_SIGNATURE + b"\x21\x41\x00\x00", "InvalidNetworkProtocol"),
        (V2_SIGNATURE + b"\x21\x11\xff\xff", f"at most {MAX_V2} are read"),
    ],
)
def test_invalid_headers_say_why(data: bytes, words: str) -> None:
    """Each kind of invalid header is an InvalidHeader whose message says what is wrong."""
    with pytest.raises(InvalidHeader) as caught:
        read_header(data)
    assert words in caught.value.message


def test_largest_v2_header_is_read() -> None:
    """A v2 header of exactly the largest size read is accepted (TLVs ignored)."""
    block = struct.pack("!4s4sHH", b"\x7f\x00\x00\x01", b"\x7f\x00\x00\x02", 1, 2)
    filler = tlv(0x04, b"\x00" * (MAX_V2 - 16 - len(block) - 3))
    header = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(block) + len(filler)) + block + filler
    assert len(header) == MAX_V2
    parsed = read_header(header)
    assert parsed is not None and parsed.source == ("127.0.0.1", 1)


def _outcome(data: bytes) -> str:
    """
    What reading C{data} gave: a header, a wait, or a clean refusal; any
    other exception escapes and fails the property.
    """
    try:
        result = read_header(data)
    except InvalidHeader as e:
        assert e.message
        return "invalid"
    if result is None:
        return "more"
    assert 0 < result.length <= len(data)
    assert result.length <= MAX_V2
    return "header"


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape(data: bytes) -> None:
    """Random bytes are read, waited on or refused; nothing else happens."""
    _outcome(data)


_VALID = [V1, V1_6, V2, V2_6, b"PROXY UNKNOWN\r\n", v2_header(None, None, local=True)]


@settings(max_examples=500, derandomize=True, deadline=None)
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=4),
    st.integers(0, 130),
)
def test_mutated_headers_never_escape(header: bytes, flips: List[tuple], cut: int) -> None:
    """Valid headers with bytes changed and cut short are read, waited on or refused."""
    data = bytearray(header)
    for position, value in flips:
        if position < len(data):
            data[position] = value
    _outcome(bytes(data[: max(cut, 0)] if cut < len(data) else data))


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.sampled_from([1, 2]),
    st.one_of(st.none(), st.from_regex(r"[a-z]{1,20}(\.[a-z]{1,10}){0,3}", fullmatch=True)),
)
def test_what_we_send_we_read(
    address: object, sport: int, dport: int, version: int, sni: Optional[str]
) -> None:
    """Every header the encoder writes is read back to the same addresses."""
    host = str(address)
    other = "192.0.2.77" if ":" not in host else "2001:db8::77"
    header = v1_header((host, sport), (other, dport)) if version == 1 else v2_header(
        (host, sport), (other, dport), sni
    )
    parsed = read_header(header + b"rest")
    assert parsed == ProxyHeader(version, len(header), (host, sport), (other, dport))
