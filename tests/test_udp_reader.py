"""
L{read_directly}: a UDP frontend's port reading into the shared buffer, on
a real (uninstalled, never run) epoll reactor, with a real echo server and
client on 127.0.0.1.
"""

from __future__ import annotations

import select
import socket
from typing import Any, Iterator

import pytest
from twisted.internet.testing import MemoryReactorClock

from l4lb.balancers import find_factory
from l4lb.config.model import Backend, Frontend, ServerSpec, Timeouts
from l4lb.logs import MemorySink
from l4lb.pool import BackendState
from l4lb.reactor import L4lbEPollReactor
from l4lb.udp.frontend import UdpFrontend
from l4lb.udp.reader import read_directly
from tests.test_reactor import close_reactor


def readable(sock: Any) -> None:
    """
    Wait (at most 5 s) until C{sock} has a datagram.
    """
    ready, _, _ = select.select([sock], [], [], 5)
    assert ready, "no datagram arrived"


@pytest.fixture
def reactor() -> Iterator[L4lbEPollReactor]:
    """
    A fresh epoll reactor, closed after the test.
    """
    r = L4lbEPollReactor()
    yield r
    close_reactor(r)


@pytest.fixture
def echo() -> Iterator[socket.socket]:
    """
    The UDP server: a socket the test answers from by hand.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def make_frontend(reactor: Any, echo: socket.socket) -> UdpFrontend:
    host, port = echo.getsockname()
    spec = ServerSpec(name="s1", host=host, port=port, address=host, weight=1)
    backend = BackendState(
        Backend(name="be", servers=(spec,), mode="udp"), find_factory("roundrobin")
    )
    fe = Frontend(
        name="fe", binds=(), default_backend="be", mode="udp", timeouts=Timeouts(udp=10.0)
    )
    return UdpFrontend(fe, backend, reactor, MemorySink(), 100)


def test_datagrams_relayed_both_ways_through_the_shared_buffer(
    reactor: Any, echo: socket.socket
) -> None:
    """
    Datagrams read into the shared buffer reach the server intact and in
    order, the one kept for a retry is a copy, and replies go back to the
    client from the port with its own C{sendto}.
    """
    frontend = make_frontend(reactor, echo)
    listener = frontend.listener()
    port = reactor.listenUDP(0, listener, interface="127.0.0.1", maxPacketSize=65535)
    try:
        assert read_directly(port, listener, reactor)
        assert listener.reply is not None
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with client:
            target = ("127.0.0.1", port.getHost().port)
            client.sendto(b"one", target)
            client.sendto(b"two" * 100, target)
            readable(port.socket)
            port.doRead()
            (session,) = frontend.table
            assert session.datagrams_in == 2
            assert session.pending == b"two" * 100
            assert isinstance(session.pending, bytes)
            got = []
            for _ in range(2):
                readable(echo)
                datagram, source = echo.recvfrom(65535)
                got.append(datagram)
                echo.sendto(datagram.upper(), source)
            assert got == [b"one", b"two" * 100]
            server_socket = session.port
            readable(server_socket.socket)
            server_socket.doRead()
            replies = []
            for _ in range(2):
                readable(client)
                replies.append(client.recv(65535))
            assert replies == [b"ONE", b"TWO" * 100]
            assert session.pending is None
            assert (session.bytes_in, session.bytes_out) == (303, 303)
    finally:
        frontend.stop()
        port.stopListening()


def test_not_without_file_descriptors(echo: socket.socket) -> None:
    """A reactor without descriptor sets keeps Twisted's reads."""
    reactor = MemoryReactorClock()
    frontend = make_frontend(reactor, echo)
    listener = frontend.listener()
    assert not read_directly(object(), listener, reactor)
    assert listener.reply is None
