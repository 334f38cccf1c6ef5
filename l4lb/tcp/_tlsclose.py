"""
TLS connections that end one direction at a time, as TCP does.

Twisted's L{TLSMemoryBIOProtocol} ends a TLS connection as a whole: when the
peer sends its C{close_notify}, it answers with its own and closes the TCP
connection at once, and a TCP FIN from the peer closes it too.  Whatever
the application still had to send that peer is lost.  A relay needs what
TLS 1.3 says and OpenSSL does for every TLS version: C{close_notify} ends
the stream of the side that sends it, and the other side may go on sending
until it ends its own.  L{HalfCloseTLSTransport} behaves that way:

  - The peer's C{close_notify}, or a TCP FIN from the peer once the
    handshake completed, is an end of stream: the protocol it wraps is told
    with C{readConnectionLost} (as TCP tells it of a FIN), and it can still
    write.  HAProxy treats a FIN without C{close_notify} the same way.
  - C{loseWriteConnection} sends what is buffered, then C{close_notify},
    then shuts the TCP write half, and the connection keeps reading.
  - Once both directions have ended, the TCP connection is closed.

This relies on parts of Twisted's TLS transport that Twisted does not
promise: its receive loop (C{_flushReceiveBIO}), which is replaced here, and
a few of its attributes.  They are used in this module only, and checked
when it is imported (L{check_twisted}), so that a Twisted release that
changes them stops l4lb at start-up instead of breaking live connections.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, List

import twisted
from OpenSSL import SSL
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["HalfCloseTLSTransport", "check_twisted"]

# The most plaintext taken from OpenSSL at once (one TLS record is 16 kB).
_READ_SIZE = 1 << 15


def _names(function: Callable[..., Any]) -> Iterable[str]:
    """
    The global and attribute names a function's code uses.
    """
    code = getattr(function, "__code__", None)
    return code.co_names if code is not None else ()


def check_twisted() -> None:
    """
    Check that Twisted's TLS transport still has what
    L{HalfCloseTLSTransport} relies on.

    @raise ImportError: Naming what is missing, when something is.
    """
    missing: List[str] = []
    base = TLSMemoryBIOProtocol
    for name in ("_flushReceiveBIO", "_flushSendBIO", "_tlsShutdownFinished"):
        if not callable(getattr(base, name, None)):
            missing.append(f"TLSMemoryBIOProtocol.{name}()")
    for name in ("_handshakeDone", "_lostTLSConnection", "_aborted"):
        if not isinstance(getattr(base, name, None), bool):
            missing.append(f"TLSMemoryBIOProtocol.{name}")
    # The receive loop replaced here must be the one that hands the
    # plaintext over, both as bytes arrive and when the connection is lost.
    for caller in ("dataReceived", "connectionLost"):
        if "_flushReceiveBIO" not in _names(getattr(base, caller)):
            missing.append(f"TLSMemoryBIOProtocol.{caller}() calling _flushReceiveBIO()")
    for name in ("_tlsConnection", "_appSendBuffer"):
        if name not in _names(base.makeConnection):
            missing.append(f"TLSMemoryBIOProtocol.{name}")
    if "_aggregator" not in _names(BufferingTLSTransport.loseConnection):
        missing.append("BufferingTLSTransport._aggregator")
    if missing:
        raise ImportError(
            f"l4lb cannot half-close TLS connections with Twisted {twisted.__version__}:"
            f" its TLS transport lacks {', '.join(missing)}"
        )


check_twisted()


@implementer(IHalfCloseableProtocol)
class HalfCloseTLSTransport(BufferingTLSTransport):
    """
    Twisted's TLS transport, with each direction ended on its own (see the
    module's description).

    It is also the TCP connection's protocol, and half-closeable as one:
    a TCP FIN from the peer reaches L{readConnectionLost}.

    @ivar read_ended: Whether the peer ended its stream (C{close_notify}
        or a TCP FIN).
    """

    read_ended = False

    def dataReceived(self, data: bytes) -> None:
        """
        Bytes from the peer.  Nothing may follow its C{close_notify}: what
        does is dropped, rather than piling up unread in OpenSSL's buffer.
        """
        if self.read_ended:
            return
        super().dataReceived(data)

    def _flushReceiveBIO(self) -> None:
        # Hand over the plaintext OpenSSL has; unlike Twisted's loop, the
        # peer's close_notify ends the read direction only.
        connection = self._tlsConnection
        while not (self._lostTLSConnection or self.read_ended):
            try:
                data = connection.recv(_READ_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._end_of_stream()
            except SSL.Error:
                # A broken record or a failed renegotiation: the connection
                # is unusable, and is closed with this reason.
                self._tlsShutdownFinished(Failure())
            else:
                if not self._aborted:
                    self.wrappedProtocol.dataReceived(data)
        # An alert or a handshake message may wait to be sent.
        self._flushSendBIO()

    def readConnectionLost(self) -> None:
        """
        The peer shut its TCP write half.  After the handshake it is an end
        of stream even without C{close_notify} (as in HAProxy); before, the
        connection is closed as Twisted does.
        """
        if self.read_ended:
            return
        if not self._handshakeDone:
            transport: Any = self.transport
            transport.loseConnection()
            return
        self._end_of_stream()

    def writeConnectionLost(self) -> None:
        """
        The TCP write half is shut (after our C{close_notify}); nothing to
        do.
        """

    def _end_of_stream(self) -> None:
        """
        The peer ended its stream: tell the protocol, and close the TCP
        connection if our direction had ended already.
        """
        self.read_ended = True
        connection = self._tlsConnection
        # A FIN without close_notify counts as one: OpenSSL then takes our
        # own close_notify as the end of the whole TLS session.
        connection.set_shutdown(connection.get_shutdown() | SSL.RECEIVED_SHUTDOWN)
        if not IHalfCloseableProtocol.providedBy(self.wrappedProtocol):
            # As Twisted does for such a protocol: answer and close.
            self.loseConnection()
            return
        self.wrappedProtocol.readConnectionLost()
        connection = self._tlsConnection
        if connection is not None and connection.get_shutdown() & SSL.SENT_SHUTDOWN:
            # Our close_notify went first (or was sent by a close that now
            # waited for the peer's): nothing is left to exchange.
            transport: Any = self.transport
            transport.loseConnection()

    def loseWriteConnection(self) -> None:
        """
        End our direction: what is buffered, then C{close_notify}, then the
        TCP write half (or the whole TCP connection once the peer's
        direction has ended too).  Before the handshake completed there is
        nothing to end cleanly, and the whole connection is closed instead.
        """
        if self.disconnecting or not self.connected:
            return
        self._aggregator.flush()
        if not self._handshakeDone or self._appSendBuffer or self._lostTLSConnection:
            self.loseConnection()
            return
        try:
            both_ended = self._tlsConnection.shutdown()
        except SSL.Error:
            self.loseConnection()
            return
        self._flushSendBIO()
        transport: Any = self.transport
        if both_ended:
            transport.loseConnection()
        else:
            transport.loseWriteConnection()

    def _flushSendBIO(self) -> None:
        # The TCP connection may be gone when this runs again (when both
        # directions end, it is closed from within the TLS layer's own
        # handling of incoming bytes).
        if self._tlsConnection is not None:
            super()._flushSendBIO()  # type: ignore[no-untyped-call]
