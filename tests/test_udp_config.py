"""
C{mode udp} in lb.ini: binds, the UDP keys, C{udp-check} rules and the
rule that a frontend and its backend share a mode.
"""

from __future__ import annotations

import pytest

from l4lb.config import ConfigError
from l4lb.config.parser import parse_config, parse_config_with_warnings
from l4lb.config.udp import parse_udp_endpoint

BASE = """
[defaults]
mode = udp
timeout udp = 20s

[frontend dns]
bind = *:53, [::]:53, 127.0.0.1:5353
maxsessions = 500
default_backend = ns

[backend ns]
udp-responses = 1
udp-requests = 4
server a = 127.0.0.1:1053 check inter 1s
"""


def test_mode_udp_frontend_and_backend() -> None:
    """A UDP frontend and backend parse with their keys, inherited from [defaults] where set there."""
    config, warnings = parse_config_with_warnings(BASE, "lb.ini")
    fe, be = config.frontends[0], config.backends[0]
    assert (fe.mode, be.mode) == ("udp", "udp")
    assert fe.maxsessions == 500
    assert fe.timeouts.udp == 20.0 and be.timeouts.udp == 20.0
    assert (be.udp_responses, be.udp_requests) == (1, 4)
    assert be.udp_check is None
    # UDP sections need none of the TCP timeouts.
    assert warnings == []


def test_udp_binds() -> None:
    """UDP binds accept HAProxy's addresses, IPv4 and IPv6, several per frontend."""
    fe = parse_config(BASE).frontends[0]
    assert [parse_udp_endpoint(b.endpoint) for b in fe.binds] == [
        ("", 53), ("::", 53), ("127.0.0.1", 5353),
    ]
    assert [b.text for b in fe.binds] == ["*:53", "[::]:53", "127.0.0.1:5353"]


def test_stream_endpoint_in_a_udp_frontend_is_an_error() -> None:
    """A Twisted stream endpoint in a UDP frontend is refused with its line."""
    text = BASE.replace("bind = *:53, [::]:53, 127.0.0.1:5353", "bind = tcp:53")
    with pytest.raises(ConfigError) as e:
        parse_config(text, "lb.ini")
    assert "lb.ini:7:" in str(e.value) and "ADDRESS:PORT" in str(e.value)


def test_udp_frontend_needs_a_udp_backend() -> None:
    """A UDP frontend pointing at a TCP backend is an error at its default_backend line."""
    text = BASE + "\n[backend web]\nmode = tcp\ntimeout connect = 1s\ntimeout server = 1s\nserver w = 127.0.0.1:80\n"
    text = text.replace("default_backend = ns", "default_backend = web")
    with pytest.raises(ConfigError) as e:
        parse_config(text, "lb.ini")
    message = str(e.value)
    assert "lb.ini:9:" in message
    assert "'mode udp' but backend 'web' is 'mode tcp'" in message


def test_tcp_frontend_cannot_use_a_udp_backend() -> None:
    """The reverse mismatch is an error too."""
    text = BASE.replace("[frontend dns]", "[frontend dns]\nmode = tcp\ntimeout client = 1s")
    with pytest.raises(ConfigError) as e:
        parse_config(text, "lb.ini")
    assert "'mode tcp' but backend 'ns' is 'mode udp'" in str(e.value)


def test_listen_section_in_udp_mode() -> None:
    """A [listen] section can be UDP."""
    config = parse_config("[listen syslog]\nmode = udp\nbind = 127.0.0.1:514\nserver s = 10.0.0.1:514\n")
    assert config.frontends[0].mode == config.backends[0].mode == "udp"
    assert parse_udp_endpoint(config.frontends[0].binds[0].endpoint) == ("127.0.0.1", 514)


@pytest.mark.parametrize(
    "lines, expected",
    [
        (["udp-check send = ping\\n"], dict(send=b"ping\n", expect="any")),
        (["udp-check send-binary = 00 ff", "udp-check expect = binary ff"],
         dict(send=b"\x00\xff", expect="binary", pattern=b"\xff")),
        (["udp-check send = hi", "udp-check expect = string PONG"],
         dict(send=b"hi", expect="string", pattern=b"PONG")),
        (["udp-check dns = example.com"], dict(dns_name="example.com", dns_type="A")),
        (["udp-check dns = example.com aaaa"], dict(dns_name="example.com", dns_type="AAAA")),
    ],
)
def test_udp_check_rules(lines: list, expected: dict) -> None:
    """The udp-check keys combine into one check."""
    text = BASE + "\n".join(lines) + "\n"
    check = parse_config(text).backends[0].udp_check
    assert check is not None
    for key, value in expected.items():
        assert getattr(check, key) == value


@pytest.mark.parametrize(
    "lines, fragment",
    [
        (["udp-check send = a", "udp-check dns = example.com"], "only one of"),
        (["udp-check expect = string x"], "needs something to send"),
        (["udp-check send-binary = 0g"], "not hexadecimal"),
        (["udp-check expect = regex x", "udp-check send = a"], "allowed: any, string TEXT, binary HEX"),
        (["udp-check dns = bad..name"], "not a DNS query"),
        (["udp-check dns = example.com WKS"], "unknown DNS query type"),
        (["udp-check sned = a"], "did you mean"),
        (["retries = 1", "udp-check send = a", "udp-check expect = binary"], "not an expectation"),
    ],
)
def test_udp_check_errors(lines: list, fragment: str) -> None:
    """Bad or conflicting udp-check rules are errors with their line and the allowed values."""
    text = BASE + "\n".join(lines) + "\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, "lb.ini")
    assert fragment in str(e.value)
    assert "lb.ini:1" in str(e.value)


def test_udp_keys_are_not_frontend_keys_everywhere() -> None:
    """udp-responses belongs to backends: in a frontend it is an unknown key there."""
    text = BASE.replace("maxsessions = 500", "maxsessions = 500\nudp-responses = 1")
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert "not allowed in a [frontend] section" in str(e.value)
