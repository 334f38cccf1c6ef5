"""
The TLS half of L{l4lb._twistedcompat}: Twisted's buffering TLS transport,
with the private parts L{l4lb.tcp._tlsclose} uses under names of l4lb's own.

Apart from L{l4lb._twistedcompat}, since it imports Twisted's TLS (and so
pyOpenSSL and C{cryptography}), which a configuration without TLS does
not load (L{l4lb.lazytls}).  At import it checks every part of Twisted's
private API l4lb relies on (L{l4lb._twistedcompat.check}), the TLS
transport's included.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

from l4lb._twistedcompat import check

# Before Twisted 23.10 there is no BufferingTLSTransport: this says so
# rather than the import below failing without saying why.
check()

from twisted.protocols.tls import BufferingTLSTransport  # noqa: E402

__all__ = ["TLSTransportInternals"]


class TLSTransportInternals(BufferingTLSTransport):
    """
    Twisted's buffering TLS transport, with the internal state and steps
    L{l4lb.tcp._tlsclose} uses under names of l4lb's own, and its receive
    and send steps routed through L{receive_plaintext} and
    L{send_tls_output}, which a subclass may override.
    """

    @property
    def tls_connection(self) -> Any:
        """
        The OpenSSL connection, or C{None} once the TCP connection is gone.
        """
        return self._tlsConnection

    @property
    def handshake_done(self) -> bool:
        """
        Whether the TLS handshake completed.
        """
        return bool(self._handshakeDone)

    @property
    def tls_lost(self) -> bool:
        """
        Whether the TLS session ended (or failed).
        """
        return bool(self._lostTLSConnection)

    @property
    def tls_aborted(self) -> bool:
        """
        Whether the connection was aborted.
        """
        return bool(self._aborted)

    @property
    def plaintext_waiting(self) -> bool:
        """
        Whether written plaintext waits for the handshake (or a
        renegotiation) before it can be encrypted.
        """
        return bool(self._appSendBuffer)

    def flush_small_writes(self) -> None:
        """
        Encrypt the small writes gathered for this turn now.
        """
        self._aggregator.flush()

    def tls_failed(self, reason: Failure) -> None:
        """
        End the connection for a TLS error, as Twisted does.
        """
        self._tlsShutdownFinished(reason)

    def receive_plaintext(self) -> None:
        """
        Hand the plaintext OpenSSL has to the wrapped protocol (Twisted's
        receive loop unless overridden).
        """
        super()._flushReceiveBIO()

    def send_tls_output(self) -> None:
        """
        Write what OpenSSL has to send to the TCP connection.
        """
        super()._flushSendBIO()  # type: ignore[no-untyped-call]

    def _flushReceiveBIO(self) -> None:
        self.receive_plaintext()

    def _flushSendBIO(self) -> None:
        self.send_tls_output()
