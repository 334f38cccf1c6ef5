"""
L{accept_directly}: a plain TCP bind accepting its connections into
sessions over raw sockets, on a real (uninstalled, never run) epoll reactor
and real sockets on 127.0.0.1.
"""

from __future__ import annotations

import select
import socket
from typing import Any, Iterator, List, Tuple

import pytest
from twisted.internet import tcp
from twisted.internet.testing import MemoryReactorClock

from l4lb.balancers import find_factory
from l4lb.config.model import Backend, Frontend, ServerSpec, Timeouts
from l4lb.logs import MemorySink
from l4lb.pool import BackendState
from l4lb.reactor import L4lbEPollReactor
from l4lb.tcp.accept import accept_directly
from l4lb.tcp.frontend import FrontendFactory, FrontendState
from l4lb.tcp.limits import ConnectionLimiter
from l4lb.tcp.raw import RawTransport
from l4lb.tcp.relay import Session
from tests.test_reactor import close_reactor

TIMEOUTS = Timeouts(connect=5.0, client=50.0, server=50.0)


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """
    A listening socket standing for the backend's one server.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


@pytest.fixture
def reactor() -> Iterator[L4lbEPollReactor]:
    """
    A fresh epoll reactor, closed after the test.
    """
    r = L4lbEPollReactor()
    yield r
    for selectable in set(r.getReaders() + r.getWriters()):
        if isinstance(selectable, (tcp.Connection, tcp.Port)):
            selectable.connectionLost(None)
    close_reactor(r)


def frontend(reactor: Any, server: socket.socket) -> FrontendState:
    host, port = server.getsockname()
    spec = ServerSpec(name="s1", host=host, port=port, address=host, weight=1)
    backend = BackendState(
        Backend(name="be", servers=(spec,), timeouts=TIMEOUTS), find_factory("roundrobin")
    )
    limiter = ConnectionLimiter(0)
    return FrontendState(
        Frontend(name="fe", binds=(), default_backend="be", timeouts=TIMEOUTS),
        backend,
        limiter.gate(0),
        reactor,
        MemorySink(),
    )


def listen(reactor: Any, state: FrontendState) -> Tuple[Any, FrontendFactory]:
    factory = FrontendFactory(state)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return port, factory


def connect_and_accept(port: Any) -> Tuple[socket.socket, List[Session]]:
    """
    Connect a client to C{port} and let the port accept it.
    """
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    readable, _, _ = select.select([port.socket], [], [], 5)
    assert readable
    made: List[Session] = []
    original = Session.start

    def record(session: Session) -> None:
        made.append(session)
        original(session)

    Session.start = record  # type: ignore[method-assign]
    try:
        port.doRead()
    finally:
        Session.start = original  # type: ignore[method-assign]
    return client, made


def test_plain_bind_accepts_into_raw_sockets(reactor: Any, server: socket.socket) -> None:
    """
    A plain bind's connection becomes a session whose client transport is
    the raw socket, with the peer's address, connecting to the server.
    """
    state = frontend(reactor, server)
    port, factory = listen(reactor, state)
    assert accept_directly(port, factory, reactor)
    client, made = connect_and_accept(port)
    with client:
        (session,) = made
        assert isinstance(session.client.transport, RawTransport)
        assert (session.client_host, session.client_port) == client.getsockname()
        assert state.total == 1 and state.current == 1
        session.kill("KD")
        reactor.runUntilCurrent()
        assert state.current == 0


def test_classic_relay_accepts_the_twisted_way(reactor: Any, server: socket.socket) -> None:
    """With C{tune.relay = classic}, Twisted's accept makes the transport."""
    state = frontend(reactor, server)
    port, factory = listen(reactor, state)
    assert accept_directly(port, factory, reactor)
    state.lean = False
    client, made = connect_and_accept(port)
    with client:
        (session,) = made
        assert isinstance(session.client.transport, tcp.Server)
        session.kill("KD")
        reactor.runUntilCurrent()


def test_not_for_binds_with_their_own_stages(reactor: Any, server: socket.socket) -> None:
    """A bind whose factory has stages of its own (accept-proxy) keeps Twisted's accept."""
    state = frontend(reactor, server)
    factory = FrontendFactory(state, [object()])
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    assert not accept_directly(port, factory, reactor)


def test_not_without_file_descriptors(server: socket.socket) -> None:
    """A reactor without descriptor sets (a test reactor) keeps Twisted's accept."""
    reactor = MemoryReactorClock()
    state = frontend(reactor, server)
    factory = FrontendFactory(state)
    port = reactor.listenTCP(0, factory)
    assert not accept_directly(port, factory, reactor)
