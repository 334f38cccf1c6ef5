"""
The far end of a TLS connection, in memory, for driving l4lb's TLS legs with
a clock: Python's C{ssl} over memory BIOs (an implementation independent of
Twisted's), a TCP connection that can send a FIN or a reset, and a transport
for the leg under test that records what it does and closes as a reactor
would.
"""

from __future__ import annotations

import ssl
from typing import Any, Optional

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tests.relaykit import HalfCloseTransport

# Bounds every exchange between the two ends.
_ROUNDS = 200


class Wire(HalfCloseTransport):
    """
    The TCP transport of the protocol under test.  What it writes waits in
    its buffer for the peer (L{TlsPeer}); C{loseConnection} and
    C{abortConnection} call the protocol's C{connectionLost} on the next
    turn of the clock, as a reactor does.

    @ivar protocol: The protocol it carries.
    @ivar lost: Whether C{connectionLost} was called.
    """

    lost = False
    protocol: Any = None

    def __init__(self, clock: Clock, peer: IPv4Address) -> None:
        super().__init__(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 443))
        self.clock = clock

    def attach(self, protocol: Any) -> None:
        """
        Connect C{protocol} to this transport.
        """
        self.protocol = protocol
        protocol.makeConnection(self)

    def loseConnection(self) -> None:
        """
        Close after the clock's next turn (what was written stays readable).
        """
        if not self.disconnecting:
            self.disconnecting = True
            self.clock.callLater(0, self.close, Failure(error.ConnectionDone()))

    def abortConnection(self) -> None:
        """
        Close at once on the clock's next turn, as a reset.
        """
        self.aborted = True
        if not self.lost:
            self.disconnecting = True
            self.clock.callLater(0, self.close, Failure(error.ConnectionAborted()))

    def close(self, reason: Failure) -> None:
        """
        The socket is closed, for C{reason}.
        """
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(reason)


class TlsPeer:
    """
    A TLS client or server at the other end of a L{Wire}.

    @ivar received: The plaintext it received.
    @ivar close_notify: Whether it received C{close_notify}.
    @ivar handshaken: Whether its handshake completed.
    @ivar error: The TLS error it received (an alert), if any.
    """

    def __init__(
        self,
        wire: Wire,
        context: ssl.SSLContext,
        server_side: bool = False,
        server_hostname: Optional[str] = None,
    ) -> None:
        self.wire = wire
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self.pending = b""
        self.received = b""
        self.close_notify = False
        self.handshaken = False
        self.error: Optional[ssl.SSLError] = None

    @property
    def fin_received(self) -> bool:
        """
        Whether the leg under test ended its TCP stream (a FIN, or a close).
        """
        return self.wire.write_closed or self.wire.disconnecting

    def pump(self) -> bool:
        """
        Move bytes once each way; return whether any moved.
        """
        wire = self.wire
        data = wire.value()
        if data:
            wire.clear()
            self.incoming.write(data)
        if not self.handshaken and self.error is None:
            try:
                self.tls.do_handshake()
                self.handshaken = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                self.error = e
        while self.handshaken and not self.close_notify and self.error is None:
            try:
                chunk = self.tls.read(1 << 16)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.close_notify = True
                break
            except ssl.SSLError as e:
                self.error = e
                break
            if not chunk:
                self.close_notify = True
                break
            self.received += chunk
        self.pending += self.outgoing.read()
        sent = False
        if self.pending and not wire.lost and wire.producerState != "paused":
            out, self.pending = self.pending, b""
            wire.protocol.dataReceived(out)
            sent = True
        return bool(data) or sent

    def send(self, data: bytes) -> None:
        """
        Send C{data} (once the handshake completed).
        """
        self.tls.write(data)

    def shut(self) -> None:
        """
        Send C{close_notify}, without waiting for the other side's.
        """
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass

    def fin(self) -> None:
        """
        Shut the TCP write half (after what is pending went out).
        """
        self.pump()
        protocol = self.wire.protocol
        if IHalfCloseableProtocol.providedBy(protocol):
            protocol.readConnectionLost()
        else:
            self.wire.close(Failure(error.ConnectionDone()))

    def reset(self) -> None:
        """
        Reset the TCP connection.
        """
        self.wire.close(Failure(error.ConnectionLost()))


def exchange(clock: Clock, *peers: TlsPeer) -> None:
    """
    Let the clock's immediate calls run and exchange bytes until nothing
    moves (bounded).
    """
    for _ in range(_ROUNDS):
        clock.advance(0)
        moved = [peer.pump() for peer in peers]
        due = any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls())
        if not any(moved) and not due:
            return
    raise AssertionError("the TLS peers kept exchanging bytes")


def client_context(ca: str) -> ssl.SSLContext:
    """
    A TLS client context that trusts only C{ca}.
    """
    return ssl.create_default_context(cafile=ca)


def server_context(crt: str) -> ssl.SSLContext:
    """
    A TLS server context presenting the certificate file C{crt}.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt)
    return context
