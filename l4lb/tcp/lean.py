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
bounded when one side reads slowly.  L{LeanRelay.held_up} tells the session
which way is held, so that its idle timeout blames a peer that does not read;
a destination taking its remainder counts as activity.

A direction that carries a bulk transfer (a few full chunks in a row)
moves to C{splice}: the chunk goes from the source socket into a pipe of
that direction and from the pipe to the destination socket, without being
copied through the process.  What the destination does not take stays in
the pipe, which then plays the part of the remainder (a pipe holds one
chunk), with the same pause of the source.  The pipe is made when needed
and closed with the relay; where there is no C{splice} (systems other than
Linux) the buffer path carries everything.

An end of stream from one side shuts the write half of the other (it can
only be read once the remainder for the other side is sent).  On a socket error, and whenever the session closes or
aborts, the relay detaches: it unregisters its descriptors, hands any
remainder back to the destination's transport, and from then on the
transports own the sockets again, so each socket is still closed exactly
once, by its transport.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, List, Optional, Tuple

from twisted.internet import error
from twisted.internet.interfaces import IReactorFDSet, IReadWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from l4lb._twistedcompat import connection_socket
from l4lb.tcp import splice
from l4lb.tcp.datapath import IDataPath
from l4lb.tcp.legs import abort_legs
from l4lb.tcp.raw import RawTransport

# Shared by every session's close: making a Failure is costly.
_DONE = Failure(error.ConnectionDone())

_LINUX = sys.platform.startswith("linux")

#: Bytes read at most per C{recv} or C{splice}; also the most kept per
#: direction (a pipe holds 64 KiB too).
CHUNK = 65536

#: Full chunks read in a row after which a direction moves to C{splice}
#: (a bulk transfer), where the platform has it (L{l4lb.tcp.splice}).
SPLICE_AFTER = 4


class Pipes:
    """
    The pipes the lean relays of this process hold, and how many they may
    (C{maxpipes}): each takes two descriptors beyond the connection's own.

    @ivar limit: The most open at once.
    @ivar open: How many are open now.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0


#: This process's pipes; the service sets the limit from the configuration.
PIPES = Pipes(1024)
_splice: Any = splice.splice
_SPLICE_FLAGS = splice.FLAGS

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
    return plain(reactor, client) and plain(reactor, server)


def plain(reactor: Any, transport: Any) -> bool:
    """
    Whether one transport can be carried by the lean path: a plain TCP
    socket on Linux, with a reactor that lets descriptors be added.

    @param reactor: The session's reactor.
    @param transport: The transport.
    """
    if isinstance(transport, RawTransport):
        # Only made where the lean path can run.
        return True
    if not _LINUX or not IReactorFDSet.providedBy(reactor):
        return False
    if getattr(transport, "TLS", False):
        return False
    return connection_socket(transport) is not None


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
        "full_reads",
        "pipe_r",
        "pipe_w",
        "in_pipe",
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
        self.full_reads = 0
        self.pipe_r = -1
        self.pipe_w = -1
        self.in_pipe = 0

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
        Relay one chunk from this socket to the other one: through the
        shared buffer, or through this direction's pipe once it has one.
        """
        spliced = self.pipe_w >= 0
        try:
            if spliced:
                n = _splice(self.fd, self.pipe_w, CHUNK, flags=_SPLICE_FLAGS)
            else:
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
        if spliced:
            self._splice_on(peer, n)
            return None
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
        elif n == CHUNK:
            self.full_reads += 1
            if self.full_reads == SPLICE_AFTER and _splice is not None:
                self._open_pipe()
        elif self.full_reads:
            self.full_reads = 0
        return None

    def _splice_on(self, peer: "_Side", n: int) -> None:
        """
        Move the C{n} bytes just spliced into this side's pipe on to the
        other socket, without copying them through this process.  What the
        other socket does not take stays in the pipe: this socket is not
        read until it has been sent.
        """
        try:
            sent = _splice(self.pipe_r, peer.fd, n, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.in_pipe = n
            self.relay.lost(peer)
            return
        if sent < n:
            self.in_pipe = n - sent
            self.reactor.removeReader(self)
            self.reactor.addWriter(peer)

    def _open_pipe(self) -> None:
        """
        Move this direction to C{splice} through a pipe of its own (a bulk
        transfer), unless no descriptor is left for one.
        """
        if PIPES.open >= PIPES.limit:
            # All in use: copy on, and try again after as many chunks.
            self.full_reads = 0
            return
        try:
            self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.full_reads = 0
            return
        PIPES.open += 1

    def doWrite(self) -> None:
        """
        Send what is left for this socket; once it is all sent, read the
        other socket again.
        """
        peer = self.peer
        assert peer is not None
        data = self.pending
        if data is None:
            if peer.in_pipe:
                return self._splice_write(peer)
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
        # The destination took it all: activity, as a write is in HAProxy.
        session = self.session
        session.last_activity = session.seconds()
        self.reactor.removeWriter(self)
        self.reactor.addReader(peer)
        return None

    def _splice_write(self, peer: "_Side") -> None:
        """
        Send what is left in the other side's pipe for this socket.
        """
        assert _splice is not None
        try:
            sent = _splice(peer.pipe_r, self.fd, peer.in_pipe, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return None
        except OSError:
            self.relay.lost(self)
            return None
        peer.in_pipe -= sent
        if peer.in_pipe:
            return None
        session = self.session
        session.last_activity = session.seconds()
        self.reactor.removeWriter(self)
        self.reactor.addReader(peer)
        return None

    def drain_pipe(self) -> Optional[bytes]:
        """
        Read back what this side's pipe still holds for the other socket
        (C{None}: nothing), and close the pipe.
        """
        left = None
        if self.in_pipe:
            chunks = []
            while self.in_pipe > 0:
                try:
                    chunk = os.read(self.pipe_r, self.in_pipe)
                except OSError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
                self.in_pipe -= len(chunk)
            left = b"".join(chunks)
        self.in_pipe = 0
        self.close_pipe()
        return left

    def close_pipe(self) -> None:
        """
        Close this side's pipe, if it has one.
        """
        if self.pipe_r >= 0:
            os.close(self.pipe_r)
            os.close(self.pipe_w)
            self.pipe_r = self.pipe_w = -1
            PIPES.open -= 1

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


@implementer(IDataPath)
class LeanRelay:
    """
    Carries an established session between two plain TCP sockets: the
    lean L{IDataPath}.

    @ivar session: The L{l4lb.tcp.session.Session} whose counters,
        activity time and end-of-stream handlers it uses.
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

    def start(self, first: bytes = b"", watcher: Any = None, dialer: Any = None) -> None:
        """
        Take both sockets from their transports and start relaying.

        @param first: Bytes the server receives before anything relayed
            from the client (a PROXY header, bytes read while inspecting);
            the client is read once they are sent.
        @param watcher: The L{l4lb.tcp.watch.HangupWatcher} of the client
            socket, if any, which stops here.
        @param dialer: The L{l4lb.tcp.dial.Dialer} that connected the
            server socket, if any, which stops here.

        A reactor with C{hand_over} (L{l4lb.reactor.L4lbEPollReactor})
        moves the watcher's and the dialer's registrations to the relay
        instead of dropping and adding them.
        """
        for side in (self.client, self.server):
            side.transport.stopReading()
            side.transport.stopWriting()
        self.attached = True
        reactor = self.reactor
        hand_over = getattr(reactor, "hand_over", None)
        if first:
            # A fresh connection takes a short preamble at once, almost
            # always: no need to wait until the socket is writable.
            try:
                sent = self.server.sock.send(first)
            except OSError:
                # Full, or failed: the wait for writability finds out.
                sent = 0
            first = first[sent:]
        if first:
            self.server.pending = memoryview(first)
            if watcher is not None:
                watcher.stop()
            _take(hand_over, dialer, self.server, True, True)
        else:
            _take(hand_over, watcher, self.client, True, False)
            _take(hand_over, dialer, self.server, True, False)

    def held_up(self) -> Tuple[bool, bool]:
        """
        Whether data waits for the server socket (the client socket is not
        read meanwhile), and whether data waits for the client socket.
        """
        client, server = self.client, self.server
        return (
            server.pending is not None or client.in_pipe > 0,
            client.pending is not None or server.in_pipe > 0,
        )

    def ended(self, side: _Side) -> None:
        """
        C{side} read an end of stream: tell the session, which has the
        other socket's write half shut (L{shut_write}).  Nothing can be
        left for the other side: C{side} is not read while a remainder
        waits.
        """
        session = self.session
        if side is self.client:
            both = session.server_eof_seen
            session.client_eof()
        else:
            both = session.client_eof_seen
            session.server_eof()
        if both and self.attached:
            # Not closed after all: never read an ended socket again.
            self.reactor.removeReader(side)

    def shut_write(self, to_server: bool) -> None:
        """
        The client (C{to_server}) or the server ended its stream: stop
        reading it and send an end of stream on the other socket.

        When the other direction had ended already, the session closes both
        sockets at once, and closing sends the end of stream: neither the
        C{shutdown} nor the change of registration is needed then.
        """
        session = self.session
        if to_server:
            side, both = self.client, session.server_eof_seen
        else:
            side, both = self.server, session.client_eof_seen
        if both or not self.attached:
            return
        self.reactor.removeReader(side)
        peer = side.peer
        assert peer is not None
        peer.shut_write()

    def abort(self) -> None:
        """
        Drop what is left to send and abort both sockets through their
        transports.
        """
        self.detach(flush=False)
        abort_legs(self.session)

    def close(self) -> None:
        """
        Close both sockets gracefully.  A socket with a remainder to send
        is left to its transport, which sends it and then closes; the other
        is closed now, which spares the reactor a registration only to find
        nothing left to write.  The session may end during the call.
        """
        self._pipes_to_pending()
        self.detach(flush=True)
        handed = self.handed or ()
        for side in (self.client, self.server):
            transport = side.transport
            if transport in handed or not transport.connected or transport.disconnecting:
                transport.loseConnection()
            else:
                transport.connectionLost(_DONE)

    def _pipes_to_pending(self) -> None:
        """
        Turn what the pipes still hold into remainders, so that closing
        and detaching treat both paths alike.
        """
        for side in (self.client, self.server):
            if side.in_pipe:
                left = side.drain_pipe()
                peer = side.peer
                assert peer is not None
                if left:
                    peer.pending = memoryview(left)

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
        if flush:
            self._pipes_to_pending()
        for side in (self.client, self.server):
            side.close_pipe()
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


def _take(hand_over: Any, old: Any, side: _Side, reading: bool, writing: bool) -> None:
    """
    Register C{side} for reading (and writing), taking over the
    registration of C{old} (a watcher or dialer of the same socket, or
    C{None}) where the reactor can.
    """
    if old is not None:
        if hand_over is not None and hand_over(old, side, reading, writing):
            old.release()
            return
        old.drop()
    reactor = side.reactor
    if reading:
        reactor.addReader(side)
    if writing:
        reactor.addWriter(side)
