"""
The two legs of a relayed TCP connection: the client's accepted
connection (L{ClientLeg}) and the connection to the chosen server
(L{ServerLeg}, or L{TlsServerLeg} for a server with C{ssl}).

A leg only passes what happens on its socket to its
L{l4lb.tcp.session.Session}.  Its C{dataReceived} is the classic data
path's hot path: it adds the chunk's length, notes the time and writes the
chunk through the session's C{server_write}/C{client_write}, which the
data path (L{l4lb.tcp.datapath}) sets to the other transport's C{write}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from twisted.internet import error
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from l4lb.tcp.phases import ESTABLISHED

if TYPE_CHECKING:
    from l4lb.tcp.frontend import FrontendState
    from l4lb.tcp.session import Session


@implementer(IHalfCloseableProtocol)
class ClientLeg(Protocol):
    """
    The accepted connection from a client.

    @ivar frontend: The L{FrontendState} that accepted it (set by the
        factory).
    @ivar session: Its L{Session}, made when the connection is made.
    @ivar stages: The stages of the bind that accepted it (set by the
        factory), or C{None} for its frontend's.
    @ivar peer: The client's socket address when it was accepted directly
        (L{l4lb.tcp.accept}), or C{None}: its transport's C{getPeer()}.
    """

    frontend: "FrontendState"
    session: "Session"
    stages: Optional[List[Any]] = None
    peer: Optional[Tuple[Any, ...]] = None
    transport: Any

    def connectionMade(self) -> None:
        """
        Start a session for the new connection.
        """
        # Imported here: the session module imports this one.
        from l4lb.tcp.session import Session

        self.session = Session(self.frontend, self)
        self.session.start()

    def dataReceived(self, data: bytes) -> None:
        """
        Relay a chunk from the client to the server.
        """
        session = self.session
        session.bytes_in += len(data)
        session.last_activity = session.seconds()
        session.server_write(data)

    def readConnectionLost(self) -> None:
        """
        The client shut its write half.
        """
        self.session.client_eof()

    def writeConnectionLost(self) -> None:
        """
        Our write half towards the client is shut; nothing to do.
        """

    def connectionLost(self, reason: Failure = error.ConnectionDone()) -> None:  # type: ignore[assignment]
        """
        The client's socket is closed.
        """
        self.session.client_lost(reason)


@implementer(IHalfCloseableProtocol)
class ServerLeg(Protocol):
    """
    The connection to the chosen server.

    @ivar session: The L{Session} it belongs to.
    """

    transport: Any

    def __init__(self, session: "Session") -> None:
        self.session = session

    def connectionMade(self) -> None:
        """
        The server accepted the connection: start relaying.
        """
        self.session.server_connected(self)

    def dataReceived(self, data: bytes) -> None:
        """
        Relay a chunk from the server to the client.
        """
        session = self.session
        session.bytes_out += len(data)
        session.last_activity = session.seconds()
        session.client_write(data)

    def readConnectionLost(self) -> None:
        """
        The server shut its write half.
        """
        self.session.server_eof()

    def writeConnectionLost(self) -> None:
        """
        Our write half towards the server is shut; nothing to do.
        """

    def connectionLost(self, reason: Failure = error.ConnectionDone()) -> None:  # type: ignore[assignment]
        """
        The server's socket is closed.
        """
        self.session.server_lost(reason)


@implementer(IHandshakeListener)
class TlsServerLeg(ServerLeg):
    """
    The connection to a server with C{ssl}: the session counts it as
    connected only once the TLS handshake (and the verification of the
    server's certificate) succeeded; a connection lost before is a failed
    connection attempt, retried like a refused one.

    @ivar handshaken: Whether the handshake completed.
    """

    handshaken = False

    def connectionMade(self) -> None:
        """
        The TCP connection is up; the handshake starts.
        """
        self.session.server_handshaking(self)

    def handshakeCompleted(self) -> None:
        """
        The handshake succeeded: start relaying.
        """
        if self.transport.disconnecting:
            # Verification failed during the handshake; connectionLost
            # reports it.
            return
        self.handshaken = True
        self.session.server_connected(self)

    def connectionLost(self, reason: Failure = error.ConnectionDone()) -> None:  # type: ignore[assignment]
        """
        The connection closed: during the handshake it is a failed attempt.
        """
        if not self.handshaken:
            self.session.server_handshake_failed(self, reason)
            return
        self.session.server_lost(reason)

    def dataReceived(self, data: bytes) -> None:
        """
        Relay a chunk from the server to the client, unless the session is
        closing: a TLS connection being closed still reads until the
        server's C{close_notify}, and what comes meanwhile has no client to
        go to (nor is it counted as sent to one).
        """
        if self.session.state == ESTABLISHED:
            super().dataReceived(data)


def unregister(transport: Any) -> None:
    """
    Unregister a transport's producer, if it has one: a transport with a
    producer does not close until it is unregistered.
    """
    if transport is not None and getattr(transport, "producer", None) is not None:
        transport.unregisterProducer()


def abort_legs(session: "Session") -> None:
    """
    Abort the sockets of C{session}'s legs that are not closed yet.
    """
    client = session.client.transport
    unregister(client)
    if not session.client_closed:
        client.abortConnection()
    leg = session.server_leg
    if leg is not None:
        unregister(leg.transport)
        if not session.server_closed:
            leg.transport.abortConnection()
