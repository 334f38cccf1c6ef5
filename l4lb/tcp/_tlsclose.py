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
promise: its receive loop, which is replaced here, and a few of its
attributes.  They are reached through
L{l4lb._twistedcompat.TLSTransportInternals}, which checks them when it is
imported, so that a Twisted release that changes them stops l4lb at
start-up instead of breaking live connections.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from l4lb._twistedcompat import check
from l4lb._twistedcompat_tls import TLSTransportInternals

__all__ = ["HalfCloseTLSTransport", "check_twisted"]

# The most plaintext taken from OpenSSL at once (one TLS record is 16 kB).
_READ_SIZE = 1 << 15


def check_twisted() -> None:
    """
    Check that Twisted still has what L{HalfCloseTLSTransport} (and the
    rest of l4lb) relies on; see L{l4lb._twistedcompat.check}.

    @raise ImportError: Naming what is missing, when something is.
    """
    check()


@implementer(IHalfCloseableProtocol)
class HalfCloseTLSTransport(TLSTransportInternals):
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

    def receive_plaintext(self) -> None:
        """
        Hand over the plaintext OpenSSL has; unlike Twisted's loop, the
        peer's C{close_notify} ends the read direction only.
        """
        connection = self.tls_connection
        while not (self.tls_lost or self.read_ended):
            try:
                data = connection.recv(_READ_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._end_of_stream()
            except SSL.Error:
                # A broken record or a failed renegotiation: the connection
                # is unusable, and is closed with this reason.
                self.tls_failed(Failure())
            else:
                if not self.tls_aborted:
                    self.wrappedProtocol.dataReceived(data)
        # An alert or a handshake message may wait to be sent.
        self.send_tls_output()

    def readConnectionLost(self) -> None:
        """
        The peer shut its TCP write half.  After the handshake it is an end
        of stream even without C{close_notify} (as in HAProxy); before, the
        connection is closed as Twisted does.
        """
        if self.read_ended:
            return
        if not self.handshake_done:
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
        connection = self.tls_connection
        # A FIN without close_notify counts as one: OpenSSL then takes our
        # own close_notify as the end of the whole TLS session.
        connection.set_shutdown(connection.get_shutdown() | SSL.RECEIVED_SHUTDOWN)
        if not IHalfCloseableProtocol.providedBy(self.wrappedProtocol):
            # As Twisted does for such a protocol: answer and close.
            self.loseConnection()
            return
        self.wrappedProtocol.readConnectionLost()
        connection = self.tls_connection
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
        self.flush_small_writes()
        if not self.handshake_done or self.plaintext_waiting or self.tls_lost:
            self.loseConnection()
            return
        try:
            both_ended = self.tls_connection.shutdown()
        except SSL.Error:
            self.loseConnection()
            return
        self.send_tls_output()
        transport: Any = self.transport
        if both_ended:
            transport.loseConnection()
        else:
            transport.loseWriteConnection()

    def send_tls_output(self) -> None:
        """
        Write what OpenSSL has to send, if the TCP connection is still
        there: it may be gone when this runs again (when both directions
        end, it is closed from within the TLS layer's own handling of
        incoming bytes).
        """
        if self.tls_connection is not None:
            super().send_tls_output()
