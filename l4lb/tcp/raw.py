"""
Connected TCP sockets that the lean data path owns from the start.

A session whose connections can take the lean path (L{l4lb.tcp.lean})
never needs Twisted's buffered transports: the lean relay reads and writes
the sockets itself.  Building a Twisted transport for each socket anyway
(its log prefix, its address objects, its registrations) and tearing it
down at the end is most of the cost of a short connection, so the direct
accept (L{l4lb.tcp.accept}) and the direct connect (L{l4lb.tcp.dial}) wrap
their sockets in a L{RawTransport} instead.

A L{RawTransport} offers the few transport methods a session calls while
connecting and closing.  Whatever needs a real transport (a remainder left
to send at close, the classic relay for a TLS server) turns it into
Twisted's own with L{RawTransport.upgrade}, once; from then on every call
goes to that transport.
"""

from __future__ import annotations

import socket
from typing import Any, Optional, Tuple, Union

from twisted.internet import address, error, tcp
from twisted.python.failure import Failure

from l4lb._twistedcompat import server_transport

__all__ = ["RawTransport", "peer_address"]

# One of each for every connection: a Failure is costly to make, and these
# carry no traceback.
_DONE = Failure(error.ConnectionDone())
_ABORTED = Failure(error.ConnectionAborted())


def peer_address(peer: Tuple[Any, ...]) -> Union[address.IPv4Address, address.IPv6Address]:
    """
    The Twisted address of a socket address tuple.

    @param peer: C{(host, port)} for IPv4, C{(host, port, flowinfo,
        scope_id)} for IPv6.
    """
    if len(peer) == 2:
        return address.IPv4Address("TCP", peer[0], peer[1])
    return address.IPv6Address("TCP", peer[0], peer[1], peer[2], peer[3])


class RawTransport:
    """
    A connected, non-blocking TCP socket with just enough of a transport
    for a session.

    @ivar socket: The socket.
    @ivar protocol: The leg (L{l4lb.tcp.legs.ClientLeg} or
        L{l4lb.tcp.legs.ServerLeg}) whose transport it is.
    @ivar peer: The peer's socket address.
    @ivar twisted: The Twisted transport it became, or C{None}.
    @ivar producer: Always C{None}: nothing is registered with it.
    """

    __slots__ = (
        "socket",
        "protocol",
        "reactor",
        "peer",
        "twisted",
        "producer",
        "_connected",
        "_disconnecting",
    )

    #: Never TLS (L{l4lb.tcp.lean.usable} asks).
    TLS = False

    def __init__(self, sock: socket.socket, protocol: Any, peer: Tuple[Any, ...], reactor: Any) -> None:
        self.socket = sock
        self.protocol = protocol
        self.reactor = reactor
        self.peer = peer
        self.twisted: Optional[tcp.Server] = None
        self.producer = None
        self._connected = True
        self._disconnecting = False

    @property
    def connected(self) -> bool:
        """
        Whether the socket is still open.
        """
        if self.twisted is not None:
            return bool(self.twisted.connected)
        return self._connected

    @property
    def disconnecting(self) -> bool:
        """
        Whether a close was asked for and has not happened yet.
        """
        if self.twisted is not None:
            return bool(self.twisted.disconnecting)
        return self._disconnecting

    def upgrade(self) -> tcp.Server:
        """
        Hand the socket to a Twisted transport (made once), which becomes
        the protocol's transport and starts reading.
        """
        if self.twisted is None:
            transport = server_transport(self.socket, self.protocol, self.peer, self.reactor)
            transport.repstr = f"<{type(self.protocol).__name__} on a lean socket>"
            self.twisted = transport
            self.protocol.transport = transport
        return self.twisted

    def getPeer(self) -> Union[address.IPv4Address, address.IPv6Address]:
        """
        The peer's address.
        """
        return peer_address(self.peer)

    def getHost(self) -> Union[address.IPv4Address, address.IPv6Address]:
        """
        This side's address.
        """
        return peer_address(self.socket.getsockname())

    def fileno(self) -> int:
        """
        The socket's descriptor (-1 once closed).
        """
        return self.socket.fileno()

    def pauseProducing(self) -> None:
        """
        Stop reading: nothing reads a raw socket but the lean relay, which
        its session stops itself.
        """
        if self.twisted is not None:
            self.twisted.pauseProducing()

    def resumeProducing(self) -> None:
        """
        Read again (only a Twisted transport it became reads).
        """
        if self.twisted is not None:
            self.twisted.resumeProducing()

    def stopReading(self) -> None:
        """
        As L{pauseProducing}.
        """
        if self.twisted is not None:
            self.twisted.stopReading()

    def stopWriting(self) -> None:
        """
        Stop waiting to write (only a Twisted transport it became waits).
        """
        if self.twisted is not None:
            self.twisted.stopWriting()

    def unregisterProducer(self) -> None:
        """
        Nothing is registered unless it became a Twisted transport.
        """
        if self.twisted is not None:
            self.twisted.unregisterProducer()

    def write(self, data: bytes) -> None:
        """
        Send C{data} through a Twisted transport, which buffers what the
        socket does not take at once.
        """
        self.upgrade().write(data)

    def loseConnection(self) -> None:
        """
        Close the socket soon, as a Twisted transport would: the protocol
        hears of it from the reactor, not during this call.
        """
        if self.twisted is not None:
            self.twisted.loseConnection()
        else:
            self._close_soon(_DONE)

    def abortConnection(self) -> None:
        """
        Close the socket soon without sending anything more.
        """
        if self.twisted is not None:
            self.twisted.abortConnection()
        else:
            self._close_soon(_ABORTED)

    def _close_soon(self, reason: Failure) -> None:
        if self._connected and not self._disconnecting:
            self._disconnecting = True
            self.reactor.callLater(0, self.connectionLost, reason)

    def connectionLost(self, reason: Failure) -> None:
        """
        Close the socket now and tell the protocol; nothing happens once
        it is closed.
        """
        if self.twisted is not None:
            self.twisted.connectionLost(reason)
            return
        if not self._connected:
            return
        self._connected = False
        self._disconnecting = False
        self.socket.close()
        self.protocol.connectionLost(reason)
