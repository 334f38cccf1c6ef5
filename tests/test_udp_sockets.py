"""
The session socket (L{ConnectedSocket}) on real loopback sockets: it reads
only its server's datagrams, reports ICMP port unreachable, and closes
without a trace.
"""

from __future__ import annotations

import socket
from typing import Any, List

from twisted.internet.protocol import DatagramProtocol

from l4lb.udp.sockets import MAX_DATAGRAM, ConnectedSocket


class FDReactor:
    """
    Just the file-descriptor set of a reactor.
    """

    def __init__(self) -> None:
        self.readers: List[Any] = []

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.remove(reader)

    def getReaders(self) -> List[Any]:
        return list(self.readers)


class Recorder(DatagramProtocol):
    """
    Records what the socket reports.
    """

    def __init__(self) -> None:
        self.datagrams: List[bytes] = []
        self.refused = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.datagrams.append(datagram)

    def connectionRefused(self) -> None:
        self.refused += 1


def peer() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


def test_exchange_with_the_server() -> None:
    """Datagrams go to the connected server, and its replies, even the largest, are read whole."""
    reactor, protocol, server = FDReactor(), Recorder(), peer()
    with server:
        conn = ConnectedSocket(reactor, protocol, *server.getsockname())
        assert reactor.readers == [conn]
        conn.write(b"hello")
        data, addr = server.recvfrom(MAX_DATAGRAM)
        assert data == b"hello"
        big = b"z" * 65000
        server.sendto(big, addr)
        server.sendto(b"second", addr)
        conn.doRead()
        assert protocol.datagrams == [big, b"second"]
        conn.stopListening()


def test_datagrams_from_others_are_not_read() -> None:
    """A datagram from another address never reaches the session."""
    reactor, protocol, server, stranger = FDReactor(), Recorder(), peer(), peer()
    with server, stranger:
        conn = ConnectedSocket(reactor, protocol, *server.getsockname())
        local = conn.socket.getsockname()  # type: ignore[union-attr]
        stranger.sendto(b"intruder", local)
        conn.doRead()
        assert protocol.datagrams == []
        conn.stopListening()


def test_port_unreachable_is_reported() -> None:
    """A datagram to a closed port brings an ICMP error, reported as connectionRefused."""
    reactor, protocol = FDReactor(), Recorder()
    closed = peer()
    address = closed.getsockname()
    closed.close()
    conn = ConnectedSocket(reactor, protocol, *address)
    conn.write(b"anyone?")
    conn.doRead()
    conn.write(b"again")  # a pending error may also surface on send
    conn.doRead()
    assert protocol.refused >= 1
    conn.stopListening()


def test_pending_error_when_the_reactor_drops_the_socket() -> None:
    """When the reactor drops the socket for a pending ICMP error (epoll's EPOLLERR), it is reported as a refusal."""
    reactor, protocol = FDReactor(), Recorder()
    closed = peer()
    address = closed.getsockname()
    closed.close()
    conn = ConnectedSocket(reactor, protocol, *address)
    conn.write(b"anyone?")
    reactor.readers.remove(conn)  # as the reactor does before connectionLost
    conn.connectionLost(None)
    assert protocol.refused == 1
    assert conn.socket is None


def test_stop_closes_the_descriptor() -> None:
    """Stopping removes the reader and closes the socket; stopping again is harmless."""
    reactor, protocol, server = FDReactor(), Recorder(), peer()
    with server:
        conn = ConnectedSocket(reactor, protocol, *server.getsockname())
        sock = conn.socket
        assert sock is not None
        conn.stopListening()
        conn.stopListening()
        assert reactor.readers == []
        assert sock.fileno() == -1 and conn.fileno() == -1
