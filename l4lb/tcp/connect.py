"""
Connecting a session to a server: the connection attempts, their timeout,
the TLS handshake of a server with C{ssl}, and the retries.

L{Connecting} is the part of L{l4lb.tcp.session.Session} that makes its
server connections.  Each attempt is one C{reactor.connectTCP} with a
L{ServerConnections} factory (through L{l4lb.tcp.tls.tls_factory} for a
server with C{ssl}), or a L{Dialer} for a plain server of a session that may take
the lean data path (the connected socket then never becomes a Twisted
transport).  C{timeout connect} covers each attempt, the handshake
included.  A failed attempt is retried up to C{retries} times, on the same
server after a pause (at most L{RETRY_PAUSE}) or on another one when
C{option redispatch} says so; the last failure is logged C{SC} (C{sC} for
a timeout).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, List, Optional, Union, cast

from twisted.internet import error
from twisted.internet.interfaces import IAddress, IConnector
from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from l4lb.tcp import lean
from l4lb.tcp.dial import Dialer
from l4lb.tcp.legs import ClientLeg, ServerLeg, TlsServerLeg
from l4lb.tcp.phases import CONNECTING
from l4lb.tcp.raw import RawTransport

if TYPE_CHECKING:
    from l4lb.pool import BackendState, Server
    from l4lb.tcp.frontend import FrontendState
    from l4lb.tcp.session import Session

# HAProxy waits this long at most before retrying the same server.
RETRY_PAUSE = 1.0

_log = Logger(namespace="l4lb")


def stop_connecting(connector: Optional[Union[IConnector, Dialer]]) -> None:
    """
    Abandon a connection attempt; its failure callback is then ignored
    because the session no longer refers to C{connector}.
    """
    if connector is None:
        return
    try:
        connector.stopConnecting()
    except error.NotConnectingError:
        pass


class ServerConnections(ClientFactory):
    """
    The factory of a session's attempts through Twisted's connector (a
    server with C{ssl}, the classic relay): made for those attempts only,
    so that a session itself needs no factory's attributes (it has
    C{__slots__}).  Everything goes to the session.
    """

    noisy = False

    def __init__(self, session: "Connecting") -> None:
        self.session = session

    def buildProtocol(self, addr: IAddress) -> Optional[ServerLeg]:  # type: ignore[override]
        """
        The session's server leg, once the server accepted.
        """
        return self.session.buildProtocol(addr)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        """
        Tell the session the attempt failed.
        """
        self.session.clientConnectionFailed(connector, reason)


class Connecting:
    """
    The connecting part of a session: its server connection attempts.

    @ivar connector: The attempt in progress, or C{None}.
    @ivar dialed: The L{Dialer} whose socket the server leg is being made
        on (the lean data path may take over its registration), or C{None}.
    @ivar handshaking: The TLS server leg whose handshake is in progress,
        or C{None}.
    @ivar tried: The servers already tried.
    """

    # The session's attributes are slots of its own; these two let a test
    # (or an embedding application) hang something extra on a session, and
    # let the SNI stage key a weak dictionary by it.
    __slots__ = ("__dict__", "__weakref__")

    # Set by the session.
    reactor: Any
    frontend: "FrontendState"
    backend: "BackendState"
    client: ClientLeg
    server: Optional["Server"]
    state: str
    timer: Any
    timeouts: Any
    client_host: str
    retries: int
    redispatched: bool
    server_closed: bool
    lean_allowed: bool
    tried: List["Server"]
    connector: Optional[Union[IConnector, Dialer]]
    dialed: Optional[Dialer]
    handshaking: Optional[TlsServerLeg]

    if TYPE_CHECKING:

        def _abort(self, termination: str) -> None: ...

        def _cancel_timer(self) -> None: ...

        def _assign(self, server: "Server") -> None: ...

        def _unassign(self) -> None: ...

    def _connect(self) -> None:
        server = self.server
        assert server is not None and server.address is not None
        self.server_closed = False
        if server.tls is None and self.lean_allowed and lean.plain(self.reactor, self.client.transport):
            self.connector = Dialer(self, server.address, server.port, self.reactor)
        else:
            factory: Any = ServerConnections(self)
            if server.tls is not None:
                from l4lb.tcp.tls import tls_factory

                factory = tls_factory(server.tls, True, factory, self.reactor)
            self.connector = self.reactor.connectTCP(
                server.address, server.port, factory, timeout=None
            )
        timeout = self.timeouts.connect
        if timeout is not None:
            self.timer = self.reactor.callLater(timeout, self._connect_timed_out)

    def buildProtocol(self, addr: IAddress) -> Optional[ServerLeg]:  # type: ignore[override]
        """
        Make the server leg once the server accepted.
        """
        if self.state != CONNECTING:
            return None
        if self.server is not None and self.server.tls is not None:
            return TlsServerLeg(cast("Session", self))
        return ServerLeg(cast("Session", self))

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        """
        A connection attempt failed; retry or give up.
        """
        if connector is not self.connector:
            return
        self.connector = None
        self._cancel_timer()
        self._attempt_failed("s" if reason.check(error.TimeoutError) else "S")

    def dial_succeeded(self, dialer: Dialer, sock: socket.socket) -> None:
        """
        A direct connection attempt (L{Dialer}) reached the server: the
        server leg starts on the connected socket.
        """
        if dialer is not self.connector or self.state != CONNECTING:
            sock.close()
            return
        leg = ServerLeg(cast("Session", self))
        # The lean relay may take over the dialer's registration.
        self.dialed = dialer
        leg.makeConnection(RawTransport(sock, leg, (dialer.host, dialer.port), self.reactor))
        self.dialed = None

    def dial_failed(self, dialer: Dialer, reason: str) -> None:
        """
        A direct connection attempt failed; retry or give up.
        """
        if dialer is not self.connector:
            return
        self.connector = None
        self._cancel_timer()
        self._attempt_failed("S")

    def _connect_timed_out(self) -> None:
        self.timer = None
        connector, self.connector = self.connector, None
        stop_connecting(connector)
        self._drop_handshake()
        self._attempt_failed("s")

    def server_handshaking(self, leg: TlsServerLeg) -> None:
        """
        The TCP connection to a TLS server is up and its handshake started;
        the connect timeout keeps running until it completes.
        """
        self.handshaking = leg

    def server_handshake_failed(self, leg: TlsServerLeg, reason: Failure) -> None:
        """
        A TLS server's connection closed before its handshake completed (a
        certificate that failed verification, a server that does not speak
        TLS): a failed attempt, retried like a refused connection.
        """
        if leg is not self.handshaking:
            # Already abandoned (timed out, or the session ended).
            return
        self.handshaking = None
        self.connector = None
        self._cancel_timer()
        server = self.server
        _log.warn(
            "{frontend}: TLS to server {backend}/{server} failed: {reason}",
            frontend=self.frontend.name,
            backend=self.backend.name,
            server=server.name if server is not None else "-",
            reason=_tls_failure_text(reason),
        )
        self._attempt_failed("S")

    def _drop_handshake(self) -> None:
        """
        Abandon a TLS handshake in progress, if any.
        """
        leg, self.handshaking = self.handshaking, None
        if leg is not None and leg.transport is not None:
            leg.transport.abortConnection()

    def _attempt_failed(self, who: str) -> None:
        self.server_closed = True
        server = self.server
        assert server is not None
        if server.observer is not None:
            server.observer.connect_failed()
        if self.retries >= self.backend.spec.retries:
            # As HAProxy's econ: one error per connection that could not
            # be connected, on the server of its last attempt.
            server.failed_connects += 1
            self._abort(who + "C")
            return
        self.retries += 1
        self.tried.append(server)
        if self._redispatch_now():
            replacement = self.backend.pick(self.client_host, self.tried)
            if replacement is not None and replacement is not server:
                self.redispatched = True
                server.redispatches += 1
                self.backend.redispatches += 1
                self._unassign()
                self._assign(replacement)
                self._connect()
                return
        # A retry that went to another server counts as a redispatch only
        # (wredis), one to the same server as a retry (wretr), as in HAProxy.
        server.retries += 1
        self.backend.retries += 1
        # HAProxy pauses only after an attempt that failed early (refused):
        # after a connect timeout the time has passed already, and it
        # retries at once.
        pause = 0.0 if who == "s" else min(self.timeouts.connect or RETRY_PAUSE, RETRY_PAUSE)
        self.timer = self.reactor.callLater(pause, self._retry)

    def _redispatch_now(self) -> bool:
        interval = self.backend.spec.redispatch
        if interval == 0:
            return False
        if interval > 0:
            return self.retries % interval == 0
        return self.retries == self.backend.spec.retries + interval + 1

    def _retry(self) -> None:
        self.timer = None
        self._connect()


def _tls_failure_text(reason: Failure) -> str:
    """
    Why a TLS handshake failed (L{l4lb.tcp.tls.tls_failure_text}, imported
    only when TLS is used).
    """
    from l4lb.tcp.tls import tls_failure_text

    return tls_failure_text(reason)
