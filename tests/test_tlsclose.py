"""
Tests for L{l4lb.tcp._tlsclose}: the check of the parts of Twisted's TLS
transport it relies on, and the ends of a TLS connection that are not
relayed (a FIN before the handshake, a protocol that cannot half-close).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOProtocol

from l4lb.tcp._tlsclose import HalfCloseTLSTransport, check_twisted
from l4lb.tcp.tls import server_options, tls_factory
from tests.tlskit import Pki, make_pki
from tests.tlspeerkit import TlsPeer, Wire, client_context, exchange


@pytest.fixture(scope="module")
def pki(tmp_path_factory: Any) -> Pki:
    return make_pki(str(tmp_path_factory.mktemp("pki")))


class Plain(Protocol):
    """
    A protocol that cannot half-close, keeping what it receives.
    """

    received = b""
    lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


def serve(pki: Pki, protocol: Protocol) -> TlsPeer:
    """
    Serve C{protocol} over TLS with the test certificate to a TLS client,
    in memory.
    """
    clock = Clock()
    wrapped = Factory.forProtocol(lambda: protocol)
    factory = tls_factory(server_options(pki.server), False, wrapped, clock)
    addr = IPv4Address("TCP", "127.0.0.1", 40001)
    tls = factory.buildProtocol(addr)
    assert isinstance(tls, HalfCloseTLSTransport)
    wire = Wire(clock, addr)
    wire.attach(tls)
    return TlsPeer(wire, client_context(pki.ca), server_hostname="db.internal")


def test_check_passes_with_this_twisted() -> None:
    """The installed Twisted has everything the half-closing transport
    relies on."""
    check_twisted()


def test_check_names_what_twisted_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Twisted whose TLS transport lacks the receive loop that is replaced
    is refused at import, with the missing part named."""
    monkeypatch.delattr(TLSMemoryBIOProtocol, "_flushReceiveBIO")
    with pytest.raises(ImportError, match="_flushReceiveBIO"):
        check_twisted()


def test_fin_before_the_handshake_closes_the_connection(pki: Pki) -> None:
    """A client that shuts its write half before the handshake completed
    has nothing to half-close: the connection is closed."""
    protocol = Plain()
    client = serve(pki, protocol)
    client.fin()
    exchange(client.wire.clock, client)
    assert client.wire.lost and protocol.lost


def test_protocol_that_cannot_half_close_is_closed_on_close_notify(pki: Pki) -> None:
    """Under a protocol that cannot half-close, the peer's close_notify is
    answered with close_notify and the connection closed, as Twisted does;
    what came before is delivered."""
    protocol = Plain()
    client = serve(pki, protocol)
    exchange(client.wire.clock, client)
    client.send(b"last words")
    client.shut()
    exchange(client.wire.clock, client)
    assert protocol.received == b"last words"
    assert client.close_notify and client.wire.lost and protocol.lost
