"""
L{Dialer}: connecting to a server on 127.0.0.1 without Twisted's
connector, with the registrations in memory.
"""

from __future__ import annotations

import select
import socket
from typing import Iterator, List, Tuple

import pytest
from twisted.internet.testing import MemoryReactorClock

from l4lb.tcp.dial import Dialer


class Outcomes:
    """
    Stands for the session: records what the dialer tells it.
    """

    def __init__(self) -> None:
        self.succeeded: List[socket.socket] = []
        self.failed: List[str] = []

    def dial_succeeded(self, dialer: Dialer, sock: socket.socket) -> None:
        self.succeeded.append(sock)

    def dial_failed(self, dialer: Dialer, reason: str) -> None:
        self.failed.append(reason)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """
    A listening socket on 127.0.0.1.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def closed_port() -> int:
    """
    A port on 127.0.0.1 that nothing listens on.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def dial(host: str, port: int) -> Tuple[Dialer, Outcomes, MemoryReactorClock]:
    """
    Start an attempt to C{host}:C{port}, with its session and reactor.
    """
    reactor = MemoryReactorClock()
    outcomes = Outcomes()
    return Dialer(outcomes, host, port, reactor), outcomes, reactor


def settle(dialer: Dialer) -> None:
    """
    Wait (at most 5 s) until the connecting socket is writable, as the
    reactor would.
    """
    _, writable, _ = select.select([], [dialer.fd], [], 5)
    assert writable, "the connection attempt did not finish"


def test_connects_and_hands_over_the_socket(listener: socket.socket) -> None:
    """A server that accepts gets the connected socket to the session."""
    dialer, outcomes, reactor = dial(*listener.getsockname())
    assert dialer in reactor.getWriters()
    settle(dialer)
    dialer.doWrite()
    assert dialer not in reactor.getWriters()
    (sock,) = outcomes.succeeded
    try:
        accepted, peer = listener.accept()
        with accepted:
            assert peer == sock.getsockname()
            sock.send(b"ping")
            assert accepted.recv(4) == b"ping"
    finally:
        sock.close()
    assert outcomes.failed == []


def test_refused_is_a_failure() -> None:
    """A port nobody listens on fails the attempt, with the reason."""
    dialer, outcomes, reactor = dial("127.0.0.1", closed_port())
    settle(dialer)
    dialer.doWrite()
    assert outcomes.succeeded == []
    assert outcomes.failed == ["Connection refused"]
    assert dialer not in reactor.getWriters()


def test_reactor_dropping_it_is_a_failure() -> None:
    """When the reactor drops the socket (a hang-up event), the session hears of a failure."""
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    dialer, outcomes, reactor = dial("127.0.0.1", closed_port())
    settle(dialer)
    reactor.removeWriter(dialer)
    dialer.connectionLost(Failure(ConnectionLost()))
    assert outcomes.failed == ["Connection refused"]


def test_stop_connecting_is_silent(listener: socket.socket) -> None:
    """An abandoned attempt closes its socket and tells the session nothing."""
    dialer, outcomes, reactor = dial(*listener.getsockname())
    dialer.stopConnecting()
    assert dialer not in reactor.getWriters()
    dialer.doWrite()
    reactor.advance(1)
    assert outcomes.succeeded == [] and outcomes.failed == []


def test_release_keeps_the_registration_for_its_taker(listener: socket.socket) -> None:
    """After C{release}, the dialer leaves the socket's registration alone."""
    dialer, outcomes, reactor = dial(*listener.getsockname())
    dialer.release()
    dialer.drop()
    assert dialer in reactor.getWriters()
    reactor.removeWriter(dialer)
    dialer.stopConnecting()


def _epoll_reactors() -> List[type]:
    from twisted.internet.epollreactor import EPollReactor

    from l4lb.reactor import L4lbEPollReactor

    return [EPollReactor, L4lbEPollReactor]


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll(7) is Linux's")
@pytest.mark.parametrize("kind", _epoll_reactors() if hasattr(select, "epoll") else [])
def test_epoll_reactors_tell_refusals_apart(kind: type, listener: socket.socket) -> None:
    """
    On an epoll reactor (Twisted's or l4lb's) the dialer does not ask the
    socket how the connect went: a refusal arrives as an error event, and
    only a connection that was made reaches doWrite.  Both outcomes are
    checked through a real reactor's poll loop.
    """
    reactor = kind()
    try:
        refused, made = Outcomes(), Outcomes()
        failing = Dialer(refused, "127.0.0.1", closed_port(), reactor)
        working = Dialer(made, *listener.getsockname(), reactor)
        assert not failing.ask and not working.ask
        for _ in range(100):
            if refused.failed and made.succeeded:
                break
            reactor.doIteration(0.05)
        assert refused.failed == ["Connection refused"] and refused.succeeded == []
        assert made.failed == [] and len(made.succeeded) == 1
        made.succeeded[0].close()
    finally:
        reactor.removeAll()
        reactor.waker.connectionLost(None)
        # Twisted's epoll reactor keeps its epoll object as _poller.
        reactor._poller.close()


def test_other_reactors_are_asked() -> None:
    """
    On a reactor not known to report a failed connect as an error event
    (any but an epoll reactor; here one in memory), the dialer asks the
    socket (SO_ERROR), and a refusal still reaches the session as such.
    """
    dialer, outcomes, reactor = dial("127.0.0.1", closed_port())
    assert dialer.ask
    settle(dialer)
    dialer.doWrite()
    assert outcomes.failed == ["Connection refused"] and outcomes.succeeded == []
