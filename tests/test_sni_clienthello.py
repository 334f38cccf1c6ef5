"""
The ClientHello reader (L{l4lb.sni.clienthello}) on real hellos recorded
from Python's C{ssl} and OpenSSL's C{s_client}, split every way they can
arrive, and on broken ones.
"""

from __future__ import annotations

import ssl
import time
from typing import List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l4lb.sni.clienthello import (
    MALFORMED,
    NEED_MORE,
    NOT_TLS,
    TOO_BIG,
    ClientHello,
    HelloReader,
    Outcome,
    Verdict,
    parse_client_hello,
)
from tests.hellokit import (
    OPENSSL,
    frame,
    handshake_of,
    large_hello,
    openssl_hello,
    python_hello,
    with_extension,
)

TLS13 = python_hello("db.example.com")
TLS12 = python_hello("db.example.com", maximum=ssl.TLSVersion.TLSv1_2)
NO_SNI = python_hello(None)


def fed_in_pieces(data: bytes, cuts: List[int]) -> Outcome:
    """
    What a reader says when C{data} arrives cut at C{cuts}, fed what it
    has so far after each piece.
    """
    reader = HelloReader()
    outcome: Outcome = reader.feed(b"")
    for cut in sorted(cuts) + [len(data)]:
        outcome = reader.feed(data[:cut])
    return outcome


def test_python_tls13_hello() -> None:
    """Python's default hello (offering TLS 1.3) gives its server name."""
    assert parse_client_hello(TLS13) == ClientHello("db.example.com", len(TLS13))


def test_python_tls12_hello() -> None:
    """A hello offering TLS 1.2 at most gives its server name."""
    assert TLS12 != TLS13
    assert parse_client_hello(TLS12) == ClientHello("db.example.com", len(TLS12))


def test_name_is_lowercased() -> None:
    """Server names are compared without case: the reader lowercases."""
    hello = python_hello("DB.Example.COM")
    assert parse_client_hello(hello) == ClientHello("db.example.com", len(hello))


def test_hello_without_sni() -> None:
    """A well-formed hello without a server_name extension has no name."""
    assert parse_client_hello(NO_SNI) == ClientHello(None, len(NO_SNI))


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")
@pytest.mark.parametrize("options", [(), ("-tls1_2",), ("-tls1_3",)])
def test_openssl_s_client_hello(options: List[str]) -> None:
    """The hello of C{openssl s_client -servername} gives its name."""
    hello = openssl_hello("api.example.org", *options)
    assert parse_client_hello(hello) == ClientHello("api.example.org", len(hello))


@pytest.mark.parametrize("hello", [TLS13, TLS12, large_hello()], ids=["tls13", "tls12", "large"])
def test_every_prefix_needs_more_and_every_split_reads_the_same(hello: bytes) -> None:
    """
    Before its last byte a hello is never decided, and cut at any offset
    into two segments it reads the same as in one.
    """
    whole = parse_client_hello(hello)
    assert isinstance(whole, ClientHello) and whole.server_name == "db.example.com"
    reader = HelloReader()
    for end in range(len(hello)):
        assert reader.feed(hello[:end]) is NEED_MORE
    assert reader.feed(hello) == whole
    for cut in range(len(hello) + 1):
        assert fed_in_pieces(hello, [cut]) == whole


def test_hello_over_several_records() -> None:
    """
    A hello whose handshake message is split over two or three records, cut
    into segments anywhere, gives its name.
    """
    message = handshake_of(TLS13)
    for sizes in ([100], [1, 2], [300, 150], [3]):
        hello = frame(message, sizes)
        assert hello.count(b"\x16\x03\x01") >= len(sizes) + 1
        expected = ClientHello("db.example.com", len(hello))
        assert parse_client_hello(hello) == expected
        for cut in range(len(hello) + 1):
            assert fed_in_pieces(hello, [cut, cut + 7]) == expected


def test_large_post_quantum_sized_hello_over_records() -> None:
    """
    A 1.9 KB hello (the size of one with an ML-KEM key share) split into
    records of 1024 bytes is read whole.
    """
    message = handshake_of(large_hello(1900))
    hello = frame(message, [1024])
    assert len(hello) > 1900
    assert parse_client_hello(hello) == ClientHello("db.example.com", len(hello))


def test_one_byte_records_fed_one_byte_at_a_time_is_linear() -> None:
    """
    The worst input allowed (a 16 KB hello in one-byte records) fed one byte
    at a time is read in linear time: each byte is looked at once.
    """
    message = with_extension(handshake_of(TLS13), 0x1A1A, b"\0" * 2100)
    hello = frame(message, [1] * (len(message) - 1))
    assert 16000 > len(hello) > 15000
    reader = HelloReader()
    started = time.process_time()
    for end in range(len(hello)):
        assert reader.feed(memoryview(hello)[:end]) is NEED_MORE
    assert reader.feed(hello) == ClientHello("db.example.com", len(hello))
    # Quadratic work would rescan ~2,600 records ~16,000 times: tens of
    # seconds; linear work takes well under one.
    assert time.process_time() - started < 3.0


def test_extra_bytes_after_the_hello_are_left() -> None:
    """The client's next bytes after its hello do not change the result."""
    outcome = parse_client_hello(TLS13 + b"\x14\x03\x03\x00\x01\x01")
    assert outcome == ClientHello("db.example.com", len(TLS13))


@pytest.mark.parametrize(
    "data",
    [b"G", b"GET / HTTP/1.1\r\n", b"SSH-2.0-OpenSSH_9.6\r\n", b"\x80\x2e\x01\x03\x01", b"\x16\x02", b"\x16\x04\x00"],
)
def test_not_tls_is_known_from_the_first_bytes(data: bytes) -> None:
    """Plain text, SSL 2 and non-3.x records are NOT_TLS without waiting."""
    reader = HelloReader()
    assert reader.feed(data) is NOT_TLS
    assert reader.reason


def mutate(hello: bytes, offset: int, value: int) -> bytes:
    return hello[:offset] + bytes([value]) + hello[offset + 1 :]


def test_malformed_hellos() -> None:
    """Inconsistent records, messages and extensions are MALFORMED."""
    name_at = TLS13.index(b"db.example.com")
    message = handshake_of(TLS13)
    cases = {
        "server hello type": mutate(TLS13, 5, 2),
        "empty record": b"\x16\x03\x01\x00\x00" + TLS13,
        "record of another type": frame(message, [10])[:15] + b"\x17" + frame(message, [10])[16:],
        "name with a slash": mutate(TLS13, name_at + 2, ord("/")),
        "name list longer than its extension": mutate(TLS13, name_at - 6, 0x40),
        "session id over 32 bytes": mutate(TLS13, 5 + 4 + 34, 33),
        "odd cipher suite length": mutate(TLS13, 5 + 4 + 34 + 1 + 32 + 1, 0x21),
        "duplicate extension": frame(with_extension(message, 0, b"\x00\x05\x00\x00\x02ab")),
        "message longer than declared": frame(
            message[:1] + (len(message) - 14).to_bytes(3, "big") + message[4:]
        ),
        "record version 2.x": frame(message, [50])[:56] + b"\x02" + frame(message, [50])[57:],
    }
    for what, data in cases.items():
        reader = HelloReader()
        assert reader.feed(data) is MALFORMED, what
        assert reader.reason, what


def test_truncated_hello_only_needs_more() -> None:
    """A hello cut short is undecided, not malformed: more may come."""
    for end in (1, 5, 9, 100, len(TLS13) - 1):
        assert parse_client_hello(TLS13[:end]) is NEED_MORE


def test_size_cap() -> None:
    """
    A hello larger than the cap is TOO_BIG as soon as a length says so,
    without waiting for its bytes.
    """
    assert parse_client_hello(TLS13, max_size=len(TLS13)) == ClientHello("db.example.com", len(TLS13))
    assert parse_client_hello(TLS13, max_size=len(TLS13) - 1) is TOO_BIG
    declared = b"\x16\x03\x01\x40\x00\x01\x00\x3f\xfc"
    assert parse_client_hello(declared, max_size=4096) is TOO_BIG
    in_records = frame(handshake_of(large_hello(8000)), [4000])
    assert parse_client_hello(in_records[:20], max_size=4096) is TOO_BIG


def test_outcome_is_kept_once_decided() -> None:
    """A decided reader answers the same whatever else it is fed."""
    reader = HelloReader()
    assert reader.feed(b"x") is NOT_TLS
    assert reader.feed(TLS13) is NOT_TLS
    reader = HelloReader()
    hello = reader.feed(TLS13)
    assert reader.feed(TLS13 + b"more") == hello


OUTCOMES = (NEED_MORE, NOT_TLS, MALFORMED, TOO_BIG)


def check_outcome(outcome: Outcome) -> None:
    assert outcome in OUTCOMES or isinstance(outcome, ClientHello)
    if isinstance(outcome, ClientHello) and outcome.server_name is not None:
        assert outcome.server_name == outcome.server_name.lower()
        assert outcome.server_name.isascii()


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=5))
def test_random_bytes_never_raise(data: bytes, cuts: List[int]) -> None:
    """
    Any bytes give one of the documented outcomes, the same whether they
    arrive at once or in pieces.
    """
    outcome = parse_client_hello(data)
    check_outcome(outcome)
    assert fed_in_pieces(data, [min(c, len(data)) for c in cuts]) == outcome


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.data())
def test_random_bytes_behind_a_handshake_header_never_raise(data: st.DataObject) -> None:
    """Random bodies in well-framed records give a documented outcome."""
    body = data.draw(st.binary(min_size=4, max_size=400))
    sizes = data.draw(st.lists(st.integers(1, 50), max_size=4))
    outcome = parse_client_hello(frame(b"\x01" + len(body).to_bytes(3, "big") + body, sizes))
    check_outcome(outcome)


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.sampled_from([TLS13, TLS12, NO_SNI]),
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 600),
    st.lists(st.integers(0, 600), max_size=3),
)
def test_mutated_hellos_never_raise(
    hello: bytes, changes: List[tuple], keep: int, cuts: List[int]
) -> None:
    """
    A real hello with bytes changed and its end cut off gives a documented
    outcome, the same at once and in pieces.
    """
    data = bytearray(hello)
    for offset, value in changes:
        data[offset % len(data)] = value
    mutated = bytes(data[: len(data) - keep % 40])
    outcome = parse_client_hello(mutated)
    check_outcome(outcome)
    assert fed_in_pieces(mutated, [min(c, len(mutated)) for c in cuts]) == outcome


def test_verdicts_are_the_documented_ones() -> None:
    """The verdict constants are the enum's four members."""
    assert set(Verdict) == set(OUTCOMES)
