"""
Tests for the PROXY protocol keywords: C{accept-proxy} binds with
C{accept-proxy-from}, the C{send-proxy}, C{send-proxy-v2} and
C{check-send-proxy} server options, and the header a check sends.
"""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.protocol import Protocol

from l4lb.config import ConfigError, parse_config
from l4lb.config.errors import InvalidValue
from l4lb.config.parser import parse_config_with_warnings
from l4lb.config.proxy import parse_trusted
from l4lb.health.build import check_preamble
from l4lb.health.tcp import TcpCheck
from tests.test_health_tcp import Lab

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
# Keys of the frontend start at line 9.


def errors(text: str) -> List[str]:
    """
    The error messages of a configuration that must fail.
    """
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return [p.message for p in caught.value.problems]


def test_accept_proxy_bind_with_trusted_ranges() -> None:
    """accept-proxy marks its bind only; the ranges are kept in normal form."""
    config = parse_config(
        HEAD + "bind = 127.0.0.1:8080 accept-proxy, 127.0.0.1:8081\n"
        "accept-proxy-from = 10.0.0.0/8, 192.0.2.7 ::1\n"
    )
    frontend = config.frontends[0]
    assert [b.accept_proxy for b in frontend.binds] == [True, False]
    assert frontend.accept_proxy_from == ("10.0.0.0/8", "192.0.2.7/32", "::1/128")


def test_accept_proxy_without_trusted_ranges_is_an_error() -> None:
    """An accept-proxy bind needs accept-proxy-from: no peer is trusted by default."""
    (message,) = errors(HEAD + "bind = *:80 accept-proxy\n")
    assert "needs 'accept-proxy-from = RANGES'" in message


def test_accept_proxy_on_udp_is_an_error() -> None:
    """The PROXY protocol is not read on UDP frontends."""
    text = HEAD.replace("[backend be]", "[backend be]\nmode = udp") + (
        "mode = udp\nbind = *:53 accept-proxy\naccept-proxy-from = 127.0.0.1\n"
    )
    assert any("TCP connections only" in m for m in errors(text))


def test_unused_trusted_ranges_warn() -> None:
    """accept-proxy-from without an accept-proxy bind is a warning."""
    _, warnings = parse_config_with_warnings(HEAD + "bind = *:80\naccept-proxy-from = 10.0.0.0/8\n")
    assert any("no bind of this section has 'accept-proxy'" in w.message for w in warnings)


@pytest.mark.parametrize("value", ["", "10.0.0.0/33", "localhost", "10.0.0.0/8 fe80::/129"])
def test_bad_trusted_ranges(value: str) -> None:
    """Anything but addresses and ranges is refused with what is expected."""
    with pytest.raises(InvalidValue) as caught:
        parse_trusted(value)
    assert "expected" in caught.value.message


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.text(max_size=60))
def test_trusted_ranges_parser_never_escapes(text: str) -> None:
    """Any text is a list of ranges or an InvalidValue; nothing else escapes."""
    try:
        parse_trusted(text)
    except InvalidValue:
        pass


def test_misspelt_bind_option_suggests_accept_proxy() -> None:
    """An unknown word after a bind address names the nearest option."""
    (message,) = errors(HEAD + "bind = *:80 accept-prxy\naccept-proxy-from = ::1\n")
    assert "did you mean 'accept-proxy'" in message


def test_send_proxy_versions_and_default_server() -> None:
    """send-proxy is 1, send-proxy-v2 is 2, and no-send-proxy undoes default-server's."""
    config = parse_config(
        HEAD.replace(
            "server a = 10.0.0.1:80",
            "default-server = send-proxy-v2\n"
            "server a = 10.0.0.1:80\n"
            "server b = 10.0.0.2:80 send-proxy\n"
            "server c = 10.0.0.3:80 no-send-proxy-v2 check-send-proxy",
        )
        + "bind = *:80\n"
    )
    got = [(s.name, s.send_proxy, s.check_send_proxy) for s in config.backends[0].servers]
    assert got == [("a", 2, False), ("b", 1, False), ("c", 0, True)]


def test_which_checks_send_a_header() -> None:
    """
    As in HAProxy, checks send a header with check-send-proxy, or when the
    server has send-proxy and the check is not moved by port or addr.
    """
    config = parse_config(
        HEAD.replace(
            "server a = 10.0.0.1:80",
            "server a = 10.0.0.1:80 check send-proxy-v2\n"
            "server b = 10.0.0.2:80 check send-proxy port 81\n"
            "server c = 10.0.0.3:80 check check-send-proxy port 81\n"
            "server d = 10.0.0.4:80 check",
        )
        + "bind = *:80\n"
    )
    a, b, c, d = config.backends[0].servers
    assert check_preamble(a) == b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    assert check_preamble(b) == b""
    assert check_preamble(c) == b"PROXY UNKNOWN\r\n"
    assert check_preamble(d) == b""


class Recorder(Protocol):
    """Keeps what it receives."""

    def __init__(self) -> None:
        self.got = b""

    def dataReceived(self, data: bytes) -> None:
        self.got += data


def test_check_sends_its_header_first() -> None:
    """A check with a preamble writes it before its tcp-check sends."""
    from tests.test_health_tcp import rules

    lab = Lab(TcpCheck, rules=rules("send PING\\r\\n", "expect string +PONG"), preamble=b"PROXY UNKNOWN\r\n")
    lab.run()
    server = Recorder()
    lab.accept(server)
    assert server.got == b"PROXY UNKNOWN\r\nPING\r\n"


def test_send_proxy_to_udp_servers_is_an_error() -> None:
    """A UDP server with send-proxy is refused at its line: datagrams get no header."""
    text = HEAD.replace("[backend be]", "[backend be]\nmode = udp").replace(
        "server a = 10.0.0.1:80", "server a = 10.0.0.1:53 send-proxy-v2"
    ) + "mode = udp\nbind = *:53\n"
    (message,) = errors(text)
    assert "not sent to UDP servers" in message
