"""
Tests for L{l4lb.config.units}: HAProxy's time syntax and the other value
types, and the messages that name what is allowed.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l4lb.config.errors import InvalidValue
from l4lb.config.units import (
    not_allowed,
    parse_bool,
    parse_choice,
    parse_int,
    parse_ip,
    parse_port,
    parse_time,
)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("5000", 5.0),
        ("5000ms", 5.0),
        ("5s", 5.0),
        ("0", 0.0),
        ("250us", 0.00025),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("10S", 10.0),
        (" 50s ", 50.0),
    ],
)
def test_time_units(text: str, seconds: float) -> None:
    """A bare number is milliseconds; us ms s m h d scale it; result in seconds."""
    assert parse_time(text) == pytest.approx(seconds)


@given(st.integers(min_value=0, max_value=10**9))
def test_bare_number_is_milliseconds(number: int) -> None:
    """Any whole number without a unit equals the same number with 'ms'."""
    assert parse_time(str(number)) == parse_time(f"{number}ms")


@pytest.mark.parametrize(
    "text, message",
    [
        ("5x", "unknown time unit 'x' in '5x' (a bare number means ms); allowed: us, ms, s, m, h, d"),
        ("5 sec", "'5 sec' is not a time"),
        ("5mss", "did you mean 'ms'?"),
        ("-5s", "'-5s' is negative"),
        ("1.5s", "expected a whole number"),
        ("", "is not a time"),
    ],
)
def test_bad_times(text: str, message: str) -> None:
    """Bad times are refused with the allowed units in the message."""
    with pytest.raises(InvalidValue) as caught:
        parse_time(text)
    assert message in caught.value.message
    assert "us, ms, s, m, h, d" in caught.value.message


def test_int_range_messages() -> None:
    """Integers out of range name the range."""
    assert parse_int("7", 0, 50) == 7
    with pytest.raises(InvalidValue, match="51 is out of range; expected an integer from 0 to 50"):
        parse_int("51", 0, 50)
    with pytest.raises(InvalidValue, match="'x' is not an integer; expected an integer >= 1"):
        parse_int("x", 1)


@pytest.mark.parametrize("text", ["0", "65536", "http"])
def test_bad_ports(text: str) -> None:
    """Ports are 1-65535."""
    with pytest.raises(InvalidValue, match="from 1 to 65535"):
        parse_port(text)


@pytest.mark.parametrize(
    "text, value",
    [(None, True), ("", True), ("true", True), ("YES", True), ("on", True), ("1", True),
     ("false", False), ("no", False), ("Off", False), ("0", False)],
)
def test_booleans(text: object, value: bool) -> None:
    """Booleans accept true/false/yes/no/on/off/1/0; no value means true."""
    assert parse_bool(text) is value  # type: ignore[arg-type]


def test_bad_boolean_lists_words() -> None:
    """A bad boolean lists every accepted word."""
    with pytest.raises(InvalidValue, match="allowed: true, yes, on, 1, false, no, off, 0"):
        parse_bool("maybe")


def test_choice_suggests_nearest() -> None:
    """A misspelt word suggests the nearest allowed one."""
    assert parse_choice("Consistent", ("map-based", "consistent")) == "consistent"
    with pytest.raises(InvalidValue) as caught:
        parse_choice("consistant", ("map-based", "consistent"))
    assert caught.value.message == (
        "'consistant' is not allowed; did you mean 'consistent'? Allowed: map-based, consistent"
    )


def test_not_allowed_without_a_near_word() -> None:
    """Without a near candidate the message only lists what is allowed."""
    assert not_allowed("unknown key", "zzz", ["balance", "mode"]) == (
        "unknown key; allowed: balance, mode"
    )


def test_ip_literals() -> None:
    """IP addresses: IPv4, IPv6 with or without brackets; names are refused."""
    assert parse_ip("192.0.2.1") == "192.0.2.1"
    assert parse_ip("[2001:db8::1]") == "2001:db8::1"
    with pytest.raises(InvalidValue, match="not an IP address"):
        parse_ip("db.example")
