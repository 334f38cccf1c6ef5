"""
The lean data path of an established TCP session, for plain TCP sockets on
Linux.

Once both legs are connected, L{LeanRelay} takes the two sockets from their
Twisted transports and registers one small descriptor per socket with the
reactor.  A readable socket is read into one buffer shared by every relay
and the chunk is sent to the other socket at once, so a steady exchange
costs one C{recv} and one C{send} per chunk and no change to the reactor's
registrations.  Only what the other socket did not accept is kept (at most
one chunk per direction); the source then stops being read until the
destination is writable and has taken it, which is what keeps memory
bounded when one side reads slowly.

An end of stream from one side shuts the write half of the other (it can
only be read once the remainder for the other side is sent).  On a socket error, and whenever the session closes or
aborts, the relay detaches: it unregisters its descriptors, hands any
remainder back to the destination's transport, and from then on the
transports own the sockets again, so each socket is still closed exactly
once, by its transport.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, List, Optional

from twisted.internet import error, tcp
from twisted.internet.interfaces import IReactorFDSet, IReadWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

#: Bytes read at most per C{recv}; also the most kept per direction.
CHUNK = 65536

# One buffer for every relay: a chunk is sent (or its remainder copied out)
# before the next read, and the reactor runs in one thread.
_buffer = bytearray(CHUNK)
_view = memoryview(_buffer)


def usable(reactor: Any, client: Any, server: Any) -> bool:
    """
    Whether the lean path can carry a session between two transports: on
    Linux, with a reactor that lets descriptors be added, and for plain TCP
    transports (not TLS) that expose their socket.

    @param reactor: The session's reactor.
    @param client: The client leg's transport.
    @param server: The server leg's transport.
    """
    if not sys.platform.startswith("linux") or not IReactorFDSet.providedBy(reactor):
        return False
    for transport in (client, server):
        if not isinstance(transport, tcp.Connection):
            return False
        if getattr(transport, "TLS", False) or not isinstance(
            getattr(transport, "socket", None), socket.socket
        ):
            return False
    return True


@implementer(IReadWriteDescriptor)
class _Side:
    """
    One socket of a lean relay: reading it feeds the other side, writing it
    drains the remainder the other side left for it.

    @ivar pending: Bytes read from the other side that this socket has not
        accepted yet, or C{None}.
    """

    __slots__ = (
        "relay",
        "session",
        "reactor",
        "transport",
        "sock",
        "fd",
        "peer",
        "pending",
        "from_client",
    )

    def __init__(self, relay: "LeanRelay", transport: Any, from_client: bool) -> None:
        self.relay = relay
        self.session = relay.session
        self.reactor = relay.reactor
        self.transport = transport
        sock = transport.socket
        self.sock = sock
        self.fd = sock.fileno()
        self.peer: Optional[_Side] = None
        self.pending: Optional[memoryview] = None
        self.from_client = from_client

    def fileno(self) -> int:
        """
        The socket's descriptor.
        """
        return self.fd

    def logPrefix(self) -> str:
        """
        How the reactor names this descriptor in its logs.
        """
        return "l4lb-relay"

    def doRead(self) -> None:
        """
        Relay one chunk from this socket to the other one.
        """
        try:
            n = self.sock.recv_into(_buffer)
        except BlockingIOError:
            return None
        except OSError:
            self.relay.lost(self)
            return None
        if not n:
            self.relay.ended(self)
            return None
        session = self.session
        if self.from_client:
            session.bytes_in += n
        else:
            session.bytes_out += n
        session.last_activity = session.seconds()
        peer = self.peer
        assert peer is not None
        try:
            sent = peer.sock.send(_view[:n])
        except BlockingIOError:
            sent = 0
        except OSError:
            self.relay.lost(peer)
            return None
        if sent < n:
            # The destination is full: keep the rest, stop reading here
            # until it has been sent.
            peer.pending = memoryview(bytes(_view[sent:n]))
            self.reactor.removeReader(self)
            self.reactor.addWriter(peer)
        return None

    def doWrite(self) -> None:
        """
        Send what is left for this socket; once it is all sent, read the
        other socket again.
        """
        data = self.pending
        if data is None:
            self.reactor.removeWriter(self)
            return None
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            return None
        except OSError:
            self.relay.lost(self)
            return None
        if sent < len(data):
            self.pending = data[sent:]
            return None
        self.pending = None
        self.reactor.removeWriter(self)
        assert self.peer is not None
        self.reactor.addReader(self.peer)
        return None

    def shut_write(self) -> None:
        """
        Send an end of stream on this socket.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def connectionLost(self, reason: Failure) -> None:
        """
        The reactor dropped this descriptor (a hang-up, or at shutdown).
        """
        self.relay.lost(self)


class LeanRelay:
    """
    Carries an established session between two plain TCP sockets.

    @ivar session: The L{l4lb.tcp.relay.Session} whose counters, activity
        time and end-of-stream handlers it uses.
    @ivar client: The client socket's side.
    @ivar server: The server socket's side.
    @ivar attached: Whether it still owns the sockets.
    @ivar handed: The transports it gave a remainder to send, if any.
    """

    __slots__ = ("session", "reactor", "client", "server", "attached", "handed")

    def __init__(self, session: Any, client_transport: Any, server_transport: Any) -> None:
        self.session = session
        self.reactor = session.reactor
        self.client = _Side(self, client_transport, True)
        self.server = _Side(self, server_transport, False)
        self.client.peer = self.server
        self.server.peer = self.client
        self.attached = False
        self.handed: Optional[List[Any]] = None

    def start(self, first: bytes = b"") -> None:
        """
        Take both sockets from their transports and start relaying.

        @param first: Bytes the server receives before anything relayed
            from the client (a PROXY header, bytes read while inspecting);
            the client is read once they are sent.
        """
        for side in (self.client, self.server):
            side.transport.stopReading()
            side.transport.stopWriting()
        self.attached = True
        reactor = self.reactor
        if first:
            self.server.pending = memoryview(first)
            reactor.addWriter(self.server)
        else:
            reactor.addReader(self.client)
        reactor.addReader(self.server)

    def ended(self, side: _Side) -> None:
        """
        C{side} read an end of stream: stop reading it, pass the end of
        stream on and tell the session.  Nothing can be left for the other
        side: C{side} is not read while a remainder waits.
        """
        self.reactor.removeReader(side)
        peer = side.peer
        assert peer is not None
        peer.shut_write()
        if side is self.client:
            self.session.client_eof()
        else:
            self.session.server_eof()

    def close(self) -> None:
        """
        Close both sockets gracefully.  A socket with a remainder to send
        is left to its transport, which sends it and then closes; the other
        is closed now, which spares the reactor a registration only to find
        nothing left to write.  The session may end during the call.
        """
        self.detach(flush=True)
        handed = self.handed or ()
        for side in (self.client, self.server):
            transport = side.transport
            if transport in handed or not transport.connected or transport.disconnecting:
                transport.loseConnection()
            else:
                transport.connectionLost(Failure(error.ConnectionDone()))

    def lost(self, side: _Side) -> None:
        """
        C{side}'s socket failed: give both sockets back to their transports
        and let C{side}'s transport close, which ends the session the usual
        way.
        """
        if not self.attached:
            return
        self.detach(flush=True, skip=side)
        side.transport.connectionLost(Failure(error.ConnectionLost()))

    def detach(self, flush: bool, skip: Optional[_Side] = None) -> None:
        """
        Stop relaying and give the sockets back to their transports.

        @param flush: Hand each remainder to its transport to send (a
            graceful close); otherwise drop it (an abort).
        @param skip: A side whose remainder is dropped anyway (its socket
            failed).
        """
        if not self.attached:
            return
        self.attached = False
        reactor = self.reactor
        for side in (self.client, self.server):
            reactor.removeReader(side)
            reactor.removeWriter(side)
        for side in (self.client, self.server):
            pending, side.pending = side.pending, None
            if flush and pending is not None and side is not skip:
                side.transport.write(bytes(pending))
                if self.handed is None:
                    self.handed = []
                self.handed.append(side.transport)
