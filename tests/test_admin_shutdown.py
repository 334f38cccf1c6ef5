"""
Tests for the graceful stop of L{l4lb.service.BalancerService}: listeners
close at once, established connections get C{hard-stop-after} seconds,
then the rest are closed.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.testing import MemoryReactorClock

from l4lb.config.model import Backend, Config, Frontend, GlobalSettings, ServerSpec
from l4lb.config.parser import parse_config
from l4lb.logs import MemorySink
from l4lb.service import BalancerService


class FakeSession:
    """
    An open connection that ends when killed (or when told to).
    """

    def __init__(self, service: BalancerService, state: str = "established") -> None:
        self.service = service
        self.state = state
        self.killed: List[str] = []
        service.limiter.current += 1

    def kill(self, termination: str) -> None:
        self.killed.append(termination)
        self.end()

    def end(self) -> None:
        self.service.limiter.current -= 1


def make(grace: float = 10.0) -> "tuple[BalancerService, MemoryReactorClock, Any]":
    """
    A service with one backend and one server, not started.
    """
    config = Config(
        global_settings=GlobalSettings(hard_stop_after=grace),
        frontends=(Frontend(name="fe", binds=(), default_backend="be"),),
        backends=(
            Backend(name="be", servers=(ServerSpec("s1", "127.0.10.1", 80, address="127.0.10.1"),)),
        ),
    )
    reactor = MemoryReactorClock()
    service = BalancerService(config, reactor, sink=MemorySink())
    return service, reactor, service.backends["be"].server("s1")


def fired(d: Any) -> bool:
    """
    Whether C{d} has fired.
    """
    result: List[object] = []
    d.addBoth(result.append)
    return bool(result)


def test_no_connection_stops_at_once() -> None:
    """
    Without open connections the stop completes immediately.
    """
    service, _, _ = make()
    assert fired(service._drain(10.0))


def test_connections_finishing_in_time_are_left_alone() -> None:
    """
    A connection that ends before C{hard-stop-after} is not touched, and
    the stop completes right after it ends.
    """
    service, reactor, server = make()
    session = FakeSession(service)
    server.sessions.add(session)
    d = service._drain(10.0)
    reactor.advance(5.0)
    assert not fired(d)
    session.end()
    server.sessions.discard(session)
    reactor.advance(0.1)
    assert fired(d)
    assert session.killed == []


def test_connections_left_after_grace_are_killed() -> None:
    """
    At C{hard-stop-after} the remaining connections are closed as killed
    by the admin (C{KD}, C{KC} while connecting) and the stop completes.
    """
    service, reactor, server = make(grace=3.0)
    established, connecting = FakeSession(service), FakeSession(service, "connecting")
    server.sessions.update({established, connecting})
    d = service._drain(3.0)
    reactor.advance(2.9)
    assert not fired(d) and established.killed == []
    for _ in range(4):
        reactor.advance(0.05)
    assert established.killed == ["KD"] and connecting.killed == ["KC"]
    reactor.advance(0.1)
    assert fired(d)


def test_stuck_connection_does_not_block_stop() -> None:
    """
    A connection that does not go even when killed holds the stop for at
    most one more second.
    """
    service, reactor, server = make(grace=1.0)
    session = FakeSession(service)
    session.kill = lambda termination: None  # type: ignore[method-assign]
    server.sessions.add(session)
    d = service._drain(1.0)
    for _ in range(60):
        reactor.advance(0.05)
    assert fired(d)


def test_hard_stop_after_config() -> None:
    """
    C{hard-stop-after} takes a time value and defaults to 30 seconds.
    """
    assert parse_config("[global]\n", "lb.ini").global_settings.hard_stop_after == 30.0
    text = "[global]\nhard-stop-after = 2m\n"
    assert parse_config(text, "lb.ini").global_settings.hard_stop_after == 120.0
