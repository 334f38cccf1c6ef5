"""
Tests for TLS towards servers in L{l4lb.tcp.relay}: the session counts a
TLS server as connected only after a verified handshake, and a failed
handshake is a failed connection attempt, retried and counted.  The TLS
peers talk in memory (L{twisted.test.iosim}), driven by a L{Clock}.
"""

from __future__ import annotations

from typing import Any, Iterator, List, Tuple

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import FakeTransport, IOPump, connect

from l4lb.config.model import ServerSpec, Timeouts
from l4lb.tcp.relay import Session, TlsServerLeg
from l4lb.tcp.tls import attach_tls, server_options
from tests.relaykit import Relay
from tests.tlskit import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: Any) -> Pki:
    return make_pki(str(tmp_path_factory.mktemp("pki")))


class Collect(Protocol):
    """
    A server that keeps what it receives.
    """

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def tls_relay(pki: Pki, **kwargs: Any) -> Relay:
    """
    A relay over two TLS servers that must present a certificate for
    db.internal signed by the test CA.
    """
    specs = tuple(
        ServerSpec(
            name=name,
            host=f"127.0.10.{i}",
            port=443,
            address=f"127.0.10.{i}",
            ssl=True,
            ca_file=pki.ca,
            sni="db.internal",
        )
        for i, name in enumerate(("s1", "s2"), 1)
    )
    relay = Relay(specs, **kwargs)
    attach_tls(relay.backend.servers)
    return relay


def answer(relay: Relay, crt: str, attempt: int = -1) -> Tuple[IOPump, Collect, Any]:
    """
    Let a connection attempt reach a TLS server presenting C{crt}; return
    the pump between them, the server and the session's leg.
    """
    host, port, factory = relay.reactor.tcpClients[attempt][:3]
    assert isinstance(factory, TLSMemoryBIOFactory)
    addr = IPv4Address("TCP", host, port)
    client = factory.buildProtocol(addr)
    server = Collect()
    server_side = TLSMemoryBIOFactory(
        server_options(crt), False, Factory.forProtocol(lambda: server), clock=relay.reactor
    ).buildProtocol(addr)
    pump = connect(
        server_side,
        FakeTransport(server_side, True),
        client,
        FakeTransport(client, False),
        greet=False,
        clock=relay.reactor,
    )
    return pump, server, client.wrappedProtocol


def settle(pump: IOPump, relay: Relay) -> None:
    """
    Exchange bytes until nothing moves (bounded), letting the TLS layers'
    write coalescing run.
    """
    for _ in range(50):
        relay.reactor.advance(0)
        if not pump.pump():
            relay.reactor.advance(0)
            if not pump.pump():
                return


def session(relay: Relay) -> Session:
    return next(iter(relay.backend.servers[0].sessions | relay.backend.servers[1].sessions))


def test_verified_server_connects_after_the_handshake(pki: Pki) -> None:
    """A server with a valid certificate for the sni name is connected once
    the handshake completes, and the client's bytes reach it decrypted."""
    relay = tls_relay(pki)
    client, ct = relay.accept()
    pump, server, leg = answer(relay, pki.server)
    assert isinstance(leg, TlsServerLeg)
    assert session(relay).state == "connecting"
    settle(pump, relay)
    assert session(relay).state == "established"
    client.dataReceived(b"hello over TLS")
    settle(pump, relay)
    assert server.received == b"hello over TLS"
    assert relay.backend.servers[0].failed_connects == 0


def test_wrong_name_is_a_failed_connect_and_redispatched(pki: Pki) -> None:
    """A certificate for another name fails verification: the attempt is
    counted as a failed connect of that server and the retry goes to the
    other server, which serves the client."""
    relay = tls_relay(pki, retries=1, redispatch=-1)
    client, ct = relay.accept()
    pump, server, leg = answer(relay, pki.wrong)
    settle(pump, relay)
    s1, s2 = relay.backend.servers
    assert s1.failed_connects == 1
    assert len(relay.reactor.tcpClients) == 2
    assert relay.reactor.tcpClients[-1][0] == "127.0.10.2"
    pump, server, leg = answer(relay, pki.server)
    settle(pump, relay)
    client.dataReceived(b"served")
    settle(pump, relay)
    assert server.received == b"served"
    assert s2.failed_connects == 0 and not ct.aborted


def test_untrusted_ca_fails_and_ends_with_SC(pki: Pki) -> None:
    """A certificate from a CA that is not in ca-file fails every attempt;
    once retries are used up the client is closed and SC logged."""
    relay = tls_relay(pki, retries=1, redispatch=-1)
    client, ct = relay.accept()
    for _ in range(2):
        pump, server, leg = answer(relay, pki.stranger)
        settle(pump, relay)
    assert sum(s.failed_connects for s in relay.backend.servers) == 2
    assert ct.aborted
    client.connectionLost(Exception("gone"))  # type: ignore[arg-type]
    assert " SC " in relay.sink.lines[-1]


def test_connect_timeout_covers_the_handshake(pki: Pki) -> None:
    """A server that accepts TCP but never answers the handshake fails the
    attempt when timeout connect passes, and its connection is aborted."""
    relay = tls_relay(pki, timeouts=Timeouts(connect=2.0), retries=1, redispatch=-1)
    client, ct = relay.accept()
    host, port, factory = relay.reactor.tcpClients[-1][:3]
    leg_transport = FakeTransport(None, False)
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    leg_transport.protocol = protocol
    protocol.makeConnection(leg_transport)
    assert session(relay).state == "connecting"
    relay.reactor.advance(2.0)
    assert relay.backend.servers[0].failed_connects == 1
    assert leg_transport.disconnecting
    assert relay.reactor.tcpClients[-1][0] == "127.0.10.2"


def test_client_leaving_during_handshake_aborts_it(pki: Pki) -> None:
    """A client that leaves while the server's handshake runs ends the
    session (CC) and the half-made TLS connection is aborted."""
    relay = tls_relay(pki)
    client, ct = relay.accept()
    host, port, factory = relay.reactor.tcpClients[-1][:3]
    leg_transport = FakeTransport(None, False)
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    leg_transport.protocol = protocol
    protocol.makeConnection(leg_transport)
    client.connectionLost(Exception("gone"))  # type: ignore[arg-type]
    assert leg_transport.disconnecting
    protocol.connectionLost(Exception("aborted"))  # type: ignore[arg-type]
    assert relay.backend.servers[0].failed_connects == 0
    assert " CC " in relay.sink.lines[-1]
