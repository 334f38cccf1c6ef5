"""
Tests for L{l4lb.config.binds}: every accepted spelling of C{bind} and the
Twisted endpoint description it becomes.
"""

from __future__ import annotations

from typing import List

import pytest

from l4lb.config import BindSpec, ConfigError, Problem, parse_config
from l4lb.config.binds import check_endpoint, parse_binds

HEAD = """\
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s
[backend be]
server a = 10.0.0.1:80
[frontend fe]
default_backend = be
"""
# The bind line is line 9.


def bind_problems(value: str) -> List[Problem]:
    """
    Parse a file whose frontend has C{bind = value}; return its errors.
    """
    with pytest.raises(ConfigError) as caught:
        parse_config(HEAD + f"bind = {value}\n")
    return caught.value.problems


@pytest.mark.parametrize(
    "written, endpoint",
    [
        ("*:80", "tcp:80"),
        (":80", "tcp:80"),
        ("0.0.0.0:80", "tcp:80:interface=0.0.0.0"),
        ("127.0.0.1:8080", "tcp:8080:interface=127.0.0.1"),
        ("[::1]:8080", "tcp6:8080:interface=\\:\\:1"),
        ("[::]:80", "tcp6:80:interface=\\:\\:"),
        (":::80", "tcp6:80:interface=\\:\\:"),
        ("[2001:db8::5]:443", "tcp6:443:interface=2001\\:db8\\:\\:5"),
        ("tcp:8080:interface=127.0.0.1", "tcp:8080:interface=127.0.0.1"),
        ("tcp6:8080:interface=\\:\\:1", "tcp6:8080:interface=\\:\\:1"),
        ("tcp:0", "tcp:0"),
        ("unix:/run/l4lb.sock", "unix:/run/l4lb.sock"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
        ("systemd:domain=INET6:name=web", "systemd:domain=INET6:name=web"),
    ],
)
def test_bind_forms(written: str, endpoint: str) -> None:
    """HAProxy and Twisted spellings of a bind become endpoint descriptions."""
    config = parse_config(HEAD + f"bind = {written}\n")
    assert config.frontends[0].binds == (BindSpec(endpoint, written, 9),)


def test_several_binds_by_commas_and_continuation_lines() -> None:
    """Commas and continuation lines separate binds; each keeps its own line."""
    config = parse_config(HEAD + "bind = *:80, [::]:80,\n    127.0.0.1:8080\n")
    assert config.frontends[0].binds == (
        BindSpec("tcp:80", "*:80", 9),
        BindSpec("tcp6:80:interface=\\:\\:", "[::]:80", 9),
        BindSpec("tcp:8080:interface=127.0.0.1", "127.0.0.1:8080", 10),
    )


@pytest.mark.parametrize(
    "value, message",
    [
        ("*:0", "port of '*:0': 0 is out of range; expected an integer from 1 to 65535"),
        ("*:65536", "expected an integer from 1 to 65535"),
        ("*:http", "'http' is not an integer"),
        ("80", "'80' has no port; expected ADDRESS:PORT such as *:80"),
        ("300.1.1.1:80", "'300.1.1.1' is not an IP address"),
        ("localhost:80", "host names are not resolved for binds"),
        ("[127.0.0.1]:80", "in brackets is not an IPv6 address"),
        ("[::1:80", "is not a bind address"),
        ("*:80 ssl crt /x.pem", "certificate file '/x.pem' does not exist"),
        ("*:80 tls", "unexpected 'tls' after '*:80': not a bind option"),
        ("tcp:notaport", "'tcp:notaport' is not a valid endpoint description"),
        ("tcp:70000", "port 70000 is out of range; expected 0-65535"),
        ("systemd:domain=INET", "give exactly one of index=N or name=NAME"),
        ("systemd:domain=IPX:index=0", "domain must be one of INET, INET6, UNIX"),
        ("systemd:domain=INET:fd=3", "unexpected 'fd=3'"),
    ],
)
def test_bad_binds(value: str, message: str) -> None:
    """A bad bind is an error at its line naming the key and what is allowed."""
    (problem,) = bind_problems(value)
    assert (problem.line, problem.key, problem.section) == (9, "bind", "frontend fe")
    assert message in problem.message


def test_each_bad_bind_is_reported_at_its_own_line() -> None:
    """Errors in several binds are all reported, each at its line."""
    problems = bind_problems("*:0,\n  *:80,\n  bad:1")
    assert [p.line for p in problems] == [9, 11]


def test_empty_bind_value() -> None:
    """'bind =' with nothing after it says what to write."""
    (problem,) = bind_problems("")
    assert "missing value" in problem.message and "ADDRESS:PORT" in problem.message


def test_only_commas() -> None:
    """A bind of only commas is a missing address."""
    binds, errors = parse_binds([(4, ",,")])
    assert binds == [] and errors[0][0] == 4 and "missing address" in errors[0][1]


def test_endpoint_check_binds_nothing() -> None:
    """Checking an endpoint uses a memory reactor: nothing listens."""
    assert check_endpoint("tcp:1") == "tcp:1"
