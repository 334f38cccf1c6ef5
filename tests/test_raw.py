"""
L{RawTransport}: the transport of a socket the lean path owns, on real
loopback sockets, with time and registrations in memory.
"""

from __future__ import annotations

import socket
from typing import Iterator, List, Tuple

import pytest
from twisted.internet import error, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from l4lb.tcp.raw import RawTransport, peer_address


class Recorder(Protocol):
    """
    Records C{connectionLost} reasons and the bytes it receives.
    """

    def __init__(self) -> None:
        self.lost: List[Failure] = []
        self.received: List[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.append(reason)


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    """
    A connected TCP pair on 127.0.0.1: the peer, and the socket under test
    (non-blocking).
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        peer = socket.create_connection(listener.getsockname(), timeout=5)
        ours, _ = listener.accept()
    ours.setblocking(False)
    yield peer, ours
    peer.close()
    ours.close()


def made(ours: socket.socket) -> Tuple[RawTransport, Recorder, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    protocol = Recorder()
    transport = RawTransport(ours, protocol, ours.getpeername(), reactor)
    protocol.makeConnection(transport)  # type: ignore[arg-type]
    return transport, protocol, reactor


def test_addresses(pair: Tuple[socket.socket, socket.socket]) -> None:
    """The peer and host addresses are Twisted's address objects."""
    peer, ours = pair
    transport, _, _ = made(ours)
    assert transport.getPeer() == IPv4Address("TCP", *peer.getsockname())
    assert transport.getHost() == IPv4Address("TCP", *ours.getsockname())
    assert peer_address(("::1", 80, 0, 0)).host == "::1"


def test_lose_connection_closes_on_the_next_turn(pair: Tuple[socket.socket, socket.socket]) -> None:
    """
    C{loseConnection} closes the socket from the reactor, not during the
    call, and the protocol hears of it once, as a clean close.
    """
    peer, ours = pair
    transport, protocol, reactor = made(ours)
    transport.loseConnection()
    assert transport.disconnecting and transport.connected
    assert protocol.lost == []
    transport.loseConnection()
    reactor.advance(0)
    assert not transport.connected
    assert ours.fileno() == -1
    assert len(protocol.lost) == 1 and protocol.lost[0].check(error.ConnectionDone)
    assert peer.recv(1) == b""


def test_abort_is_a_connection_aborted(pair: Tuple[socket.socket, socket.socket]) -> None:
    """C{abortConnection} closes on the next turn with C{ConnectionAborted}."""
    _, ours = pair
    transport, protocol, reactor = made(ours)
    transport.abortConnection()
    reactor.advance(0)
    assert len(protocol.lost) == 1 and protocol.lost[0].check(error.ConnectionAborted)


def test_connection_lost_closes_once(pair: Tuple[socket.socket, socket.socket]) -> None:
    """C{connectionLost} closes now; a second call does nothing."""
    _, ours = pair
    transport, protocol, _ = made(ours)
    reason = Failure(error.ConnectionLost())
    transport.connectionLost(reason)
    transport.connectionLost(reason)
    assert protocol.lost == [reason]
    assert ours.fileno() == -1


def test_write_turns_it_into_a_twisted_transport(pair: Tuple[socket.socket, socket.socket]) -> None:
    """
    Writing hands the socket to Twisted's transport, which becomes the
    protocol's, buffers and sends the bytes, and closes it later.
    """
    peer, ours = pair
    transport, protocol, reactor = made(ours)
    transport.write(b"remainder")
    twisted = transport.twisted
    assert isinstance(twisted, tcp.Server)
    assert protocol.transport is twisted
    assert twisted in reactor.getReaders() and twisted in reactor.getWriters()
    twisted.doWrite()
    assert peer.recv(100) == b"remainder"
    transport.loseConnection()
    assert transport.disconnecting
    # What the reactor does with a transport done writing.
    why = twisted.doWrite()
    assert why is not None
    twisted.connectionLost(Failure(why))
    assert len(protocol.lost) == 1
    assert peer.recv(1) == b""
    assert not transport.connected


def test_producer_calls_do_nothing_until_upgraded(pair: Tuple[socket.socket, socket.socket]) -> None:
    """A raw socket is read by nobody: pausing, resuming and unregistering are no-ops."""
    _, ours = pair
    transport, _, reactor = made(ours)
    transport.pauseProducing()
    transport.resumeProducing()
    transport.stopReading()
    transport.stopWriting()
    transport.unregisterProducer()
    assert reactor.getReaders() == [] and reactor.getWriters() == []
    assert transport.producer is None and not transport.TLS
