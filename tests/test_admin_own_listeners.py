"""
Tests for l4lb's own listeners (the runtime API's socket, the statistics
pages): the idle timeout C{stats timeout}, the connection cap
(L{l4lb.admin.cap}), the descriptors they may take (L{l4lb.fdlimit}) and
their configuration keys.
"""

from __future__ import annotations

import resource
from typing import Any, List

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from l4lb.admin.cap import CappedFactory, caps_in_effect, own_listeners
from l4lb.admin.protocol import AdminFactory
from l4lb.admin.web import stats_site
from l4lb.config import ConfigError
from l4lb.config.model import Config, StatsBind, StatsSocket
from l4lb.config.parser import parse_config
from l4lb.fdlimit import FD_RESERVE, own_listener_caps, traffic_maxconn
from tests.relaykit import ListeningPort, Relay
from tests.runtimekit import stand_in


class Commands:
    """
    Commands that answer C{ok} to anything.
    """

    def run(self, line: str) -> str:
        return "ok\n"


def admin_connection(clock: Clock, timeout: float = 10.0) -> "tuple[Any, StringTransport]":
    """
    A runtime API connection on C{clock}, over a string transport.
    """
    factory = AdminFactory(Commands(), timeout, clock)  # type: ignore[arg-type]
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_idle_admin_connection_is_closed_after_stats_timeout() -> None:
    """
    A runtime API connection that sends nothing is closed once C{stats
    timeout} has passed, and not before; the timer runs on the injected
    clock.
    """
    clock = Clock()
    _, transport = admin_connection(clock, 10.0)
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_each_line_restarts_the_admin_idle_timer() -> None:
    """
    In interactive mode (C{prompt}) each line restarts the idle timer: a
    session that keeps talking stays open, one that falls silent is closed
    C{stats timeout} after its last line.
    """
    clock = Clock()
    proto, transport = admin_connection(clock, 10.0)
    proto.dataReceived(b"prompt\n")
    for _ in range(5):
        clock.advance(8)
        proto.dataReceived(b"show info\n")
    assert not transport.disconnecting
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_admin_connection_not_reading_its_answer_is_aborted() -> None:
    """
    A client that stops reading cannot keep its connection: once closed
    for idleness, it is aborted C{stats timeout} later if still open, and
    no timer is left once the connection is gone.
    """
    clock = Clock()
    proto, transport = admin_connection(clock, 5.0)
    proto.dataReceived(b"prompt\n")
    clock.advance(5)
    assert transport.disconnecting and not transport.disconnected
    clock.advance(5)
    assert transport.disconnected
    proto.connectionLost(None)
    assert clock.getDelayedCalls() == []


def stats_connection(clock: Clock, timeout: float) -> "tuple[Any, StringTransport]":
    """
    A connection to the statistics pages on C{clock}, over a string
    transport.
    """
    relay = Relay()
    service: Any = stand_in(
        config=Config(frontends=(relay.frontend.spec,), backends=(relay.backend.spec,)),
        frontends={"fe": relay.frontend},
        udp_frontends={},
        backends={"be": relay.backend},
        limiter=relay.limiter,
    )
    site = stats_site(service, clock, None, timeout)
    proto = site.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_idle_stats_page_connection_is_closed_after_stats_timeout() -> None:
    """
    A connection to the statistics pages that sends nothing is closed
    after C{stats timeout} (Twisted's own default would keep it twelve
    hours), quietly, and one that stops reading is aborted later.
    """
    clock = Clock()
    _, transport = stats_connection(clock, 3.0)
    clock.advance(2.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting
    clock.advance(60)
    assert transport.disconnected


def test_stats_page_keepalive_connection_times_out_between_requests() -> None:
    """
    A kept-alive connection to the statistics pages restarts its idle
    timer with each request and is closed C{stats timeout} after the last.
    """
    clock = Clock()
    proto, transport = stats_connection(clock, 3.0)
    for _ in range(3):
        clock.advance(2)
        proto.dataReceived(b"HEAD /;csv HTTP/1.1\r\nHost: lb\r\n\r\n")
    assert not transport.disconnecting
    assert transport.value().startswith(b"HTTP/1.1 200")
    clock.advance(3)
    assert transport.disconnecting


def test_capped_listener_stops_accepting_at_its_maxconn() -> None:
    """
    At its cap a listener of l4lb's own stops reading (new connections wait
    in the kernel's backlog, holding no descriptor) instead of accepting
    and closing them; a batch never accepts more than the free slots, and
    a closed connection resumes accepting.
    """
    capped = CappedFactory(Factory.forProtocol(Protocol), 2)
    port = ListeningPort(reading=False)
    capped.watch(port)
    assert port.reading
    port.doRead()
    assert port.batches == [2]
    first, second = (capped.buildProtocol(None) for _ in range(2))
    assert first is not None and second is not None
    first.makeConnection(StringTransport())
    assert port.reading and capped.current == 1
    second.makeConnection(StringTransport())
    assert not port.reading and capped.current == 2
    port.doRead()
    assert port.batches == [2]
    first.connectionLost(None)  # type: ignore[arg-type]
    assert port.reading and capped.current == 1
    port.doRead()
    assert port.batches == [2, 1]


def test_own_listener_caps_never_take_the_traffics_descriptors() -> None:
    """
    The own listeners get their caps only from what the descriptor limit
    leaves after 2 x maxconn + the reserve; when short they share what is
    left, each keeping one connection from the reserve.
    """
    inf = resource.RLIM_INFINITY
    fits = 2 * 100 + FD_RESERVE + 20
    assert own_listener_caps(fits, 100, [10, 10]) == (10, 10)
    assert own_listener_caps(fits - 6, 100, [10, 10]) == (7, 7)
    assert own_listener_caps(2 * 100 + FD_RESERVE, 100, [10, 10]) == (1, 1)
    assert own_listener_caps(100, 100, [10, 3]) == (1, 1)
    assert own_listener_caps(fits - 10, 100, [2, 10]) == (2, 5)
    assert own_listener_caps(inf, 10**9, [10]) == (10,)
    assert own_listener_caps(100, 100, []) == ()


def test_lowered_caps_are_logged() -> None:
    """
    When the limit is too small for the configured caps beside maxconn,
    each own listener lowered gets a warning naming it, its cap and why.
    """
    from twisted.logger import LogLevel, globalLogPublisher

    events: List[Any] = []
    globalLogPublisher.addObserver(events.append)
    try:
        both = settings("stats socket = /run/a.sock\nstats bind = 8404 maxconn 2\n")
        caps = caps_in_effect(both, 2 * 100 + FD_RESERVE + 6, 100)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert caps == {"stats socket": 3, "stats bind": 2}
    warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
    assert [(e["name"], e["cap"], e["wanted"]) for e in warnings] == [("stats socket", 3, 10)]


def test_default_maxconn_leaves_room_for_the_own_listeners() -> None:
    """
    Without C{maxconn}, the traffic gets (limit - reserve - own caps) / 2,
    so the own listeners' caps fit beside it.
    """
    assert traffic_maxconn(1024, 0) == (1024 - FD_RESERVE) // 2
    assert traffic_maxconn(1024, 20) == (1024 - FD_RESERVE - 20) // 2
    maxconn = traffic_maxconn(1024, 20)
    assert own_listener_caps(1024, maxconn, [10, 10]) == (10, 10)
    assert traffic_maxconn(10, 20) == 1


def settings(text: str) -> Any:
    """
    The C{[global]} settings of C{text}.
    """
    return parse_config("[global]\n" + text, "lb.ini").global_settings


def test_config_stats_timeout_and_maxconn() -> None:
    """
    C{stats timeout} (HAProxy's time syntax, 10 s by default, never 0) and
    C{stats maxconn} (10 by default) are global keys; the stats socket and
    the stats pages take their own C{maxconn}, which wins over the global
    one.
    """
    default = settings("")
    assert (default.stats_timeout, default.stats_maxconn) == (10.0, 10)
    chosen = settings("stats timeout = 1500\nstats maxconn = 3\n")
    assert (chosen.stats_timeout, chosen.stats_maxconn) == (1.5, 3)
    assert settings("stats timeout = 2m\n").stats_timeout == 120.0
    bad_lines = ("stats timeout = 0", "stats timeout = 5x", "stats maxconn = 0", "stats maxconn = a")
    for bad in bad_lines:
        with pytest.raises(ConfigError):
            settings(bad + "\n")
    both = settings(
        "stats maxconn = 4\nstats socket = /run/a.sock maxconn 2\nstats bind = 127.0.0.1:8404\n"
    )
    assert both.stats_socket == StatsSocket("/run/a.sock", 0o600, 2)
    assert both.stats_bind == StatsBind("127.0.0.1", 8404, None)
    assert own_listeners(both) == {"stats socket": 2, "stats bind": 4}
    assert settings("stats bind = 8404 maxconn 5\n").stats_bind == StatsBind("127.0.0.1", 8404, 5)
    assert own_listeners(settings("")) == {}


def test_haproxy_stats_socket_line_is_accepted() -> None:
    """
    An operator's HAProxy line C{stats socket PATH mode 660 level admin}
    works as it is: l4lb's socket grants every command, as C{level admin}
    does.
    """
    line = "stats socket = /run/haproxy/admin.sock mode 660 level admin\n"
    assert settings(line).stats_socket == StatsSocket("/run/haproxy/admin.sock", 0o660)
    exposed = settings("stats socket = /run/a.sock mode 600 expose-fd listeners\n").stats_socket
    assert exposed == StatsSocket("/run/a.sock", 0o600, None, True)


@pytest.mark.parametrize(
    "options, culprit, allowed",
    [
        ("mode 600 level operator", "'level operator'", "'level admin'"),
        ("mode 600 level user", "'level user'", "'level admin'"),
        ("mode 600 expose-fd all", "'expose-fd all'", "'expose-fd listeners'"),
        ("mode 600 maxconn", "'maxconn'", "'level admin', 'maxconn N'"),
        ("mode 600 maxconn 0", "'maxconn 0'", "N >= 1"),
    ],
)
def test_stats_socket_error_names_only_the_wrong_option(
    options: str, culprit: str, allowed: str
) -> None:
    """
    A C{stats socket} option l4lb cannot honour is named alone in the
    error, not the whole option string, and the error says what is allowed.
    """
    with pytest.raises(ConfigError) as caught:
        settings(f"stats socket = /run/a.sock {options}\n")
    message = str(caught.value)
    assert culprit in message
    assert f"'{options}'" not in message and "mode 600" not in message
    assert allowed in message
