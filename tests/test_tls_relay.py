"""
Tests for TLS towards servers in L{l4lb.tcp.relay}: the session counts a
TLS server as connected only after a verified handshake, and a failed
handshake is a failed connection attempt, retried and counted; and TLS
legs (on a bind with C{ssl crt}, and towards servers) half-close in each
direction as TCP legs do.  The TLS peers talk in memory
(L{twisted.test.iosim}, and Python's C{ssl} through L{tests.tlspeerkit}),
driven by a L{Clock}.
"""

from __future__ import annotations

import ssl
from typing import Any, List, Tuple

import pytest
from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

from l4lb.config.model import ServerSpec, Timeouts
from l4lb.tcp.relay import Session, TlsServerLeg
from l4lb.tcp.tls import attach_tls, server_options, tls_factory
from tests.relaykit import Relay
from tests.tlskit import Pki, make_pki
from tests.tlspeerkit import TlsPeer, Wire, client_context, server_context, exchange


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
    """A certificate for another name fails verification: the retry goes
    to the other server, which serves the client; the first server counts
    a redispatch, not a connection error (as HAProxy's econ, which counts
    only connections that could not be connected at all)."""
    relay = tls_relay(pki, retries=1, redispatch=-1)
    client, ct = relay.accept()
    pump, server, leg = answer(relay, pki.wrong)
    settle(pump, relay)
    s1, s2 = relay.backend.servers
    assert (s1.failed_connects, s1.redispatches) == (0, 1)
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
    # One connection that could not be connected: one error.
    assert sum(s.failed_connects for s in relay.backend.servers) == 1
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
    assert relay.backend.servers[0].redispatches == 1
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


# -- half-close over TLS --------------------------------------------------------

DONE = Failure(error.ConnectionDone())


def fields(line: str) -> List[str]:
    return line.split(" ")


def tls_client(
    relay: Relay, pki: Pki, version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED
) -> Tuple[TlsPeer, Any]:
    """
    Accept a TLS client on a bind with C{ssl crt}; return the client and
    the session's client leg.

    @param version: The highest TLS version the client offers.
    """
    factory = tls_factory(server_options(pki.server), False, relay.factory, relay.reactor)
    addr = IPv4Address("TCP", "127.0.0.1", 40001)
    protocol = factory.buildProtocol(addr)
    wire = Wire(relay.reactor, addr)
    wire.attach(protocol)
    context = client_context(pki.ca)
    context.maximum_version = version
    return TlsPeer(wire, context, server_hostname="db.internal"), protocol.wrappedProtocol


def tls_server(relay: Relay, pki: Pki) -> Tuple[TlsPeer, Any]:
    """
    Let the last connection attempt reach a TLS server; return the server
    and the session's server leg.
    """
    host, port, factory = relay.reactor.tcpClients[-1][:3]
    addr = IPv4Address("TCP", host, port)
    protocol = factory.buildProtocol(addr)
    wire = Wire(relay.reactor, addr)
    wire.attach(protocol)
    return TlsPeer(wire, server_context(pki.server), server_side=True), protocol.wrappedProtocol


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_client_close_notify_shuts_the_server_write_half_and_the_reply_follows(
    pki: Pki, version: ssl.TLSVersion
) -> None:
    """A TLS client's close_notify is an end of stream (with TLS 1.2 as
    with 1.3): the plain server gets a FIN, the client gets no
    close_notify yet, the server's reply reaches the client, and only the
    server's own end brings l4lb's close_notify and the close; the log
    counts the reply and says --."""
    relay = Relay()
    client, leg = tls_client(relay, pki, version)
    server, st = relay.complete()
    exchange(relay.reactor, client)
    assert client.handshaken and client.tls.version() == version.name.replace("_", ".")
    client.send(b"hello-tls\n")
    client.shut()
    exchange(relay.reactor, client)
    assert st.value() == b"hello-tls\n"
    assert st.write_closed and not st.disconnecting
    assert not client.close_notify and not client.fin_received
    assert leg.session.state == "established"
    server.dataReceived(b"hello-tls\n")
    exchange(relay.reactor, client)
    assert client.received == b"hello-tls\n"
    assert not client.close_notify
    server.readConnectionLost()
    exchange(relay.reactor, client)
    assert client.close_notify and client.wire.lost and client.error is None
    assert st.disconnecting
    server.connectionLost(DONE)
    (line,) = relay.sink.lines
    assert fields(line)[5:7] == ["10", "--"], line


def test_client_fin_without_close_notify_is_an_end_of_stream(pki: Pki) -> None:
    """A TLS client that shuts its TCP write half without close_notify
    (HAProxy takes it as an end of stream too) still gets the reply, then
    l4lb's close_notify."""
    relay = Relay()
    client, leg = tls_client(relay, pki)
    server, st = relay.complete()
    exchange(relay.reactor, client)
    client.send(b"request")
    client.fin()
    exchange(relay.reactor, client)
    assert st.value() == b"request" and st.write_closed
    server.dataReceived(b"reply")
    server.readConnectionLost()
    exchange(relay.reactor, client)
    assert client.received == b"reply" and client.close_notify and client.wire.lost
    server.connectionLost(DONE)
    (line,) = relay.sink.lines
    assert fields(line)[5:7] == ["5", "--"], line


def test_server_end_reaches_tls_client_as_close_notify_and_client_may_still_send(pki: Pki) -> None:
    """A plain server's FIN reaches the TLS client as close_notify and a
    TCP half-close; the client can still send, and its close_notify ends
    the session normally."""
    relay = Relay()
    client, leg = tls_client(relay, pki)
    server, st = relay.complete()
    exchange(relay.reactor, client)
    server.dataReceived(b"banner")
    server.readConnectionLost()
    exchange(relay.reactor, client)
    assert client.received == b"banner" and client.close_notify
    assert client.wire.write_closed and not client.wire.disconnecting
    client.send(b"late")
    exchange(relay.reactor, client)
    assert st.value() == b"late"
    client.shut()
    exchange(relay.reactor, client)
    assert client.wire.lost and st.disconnecting
    server.connectionLost(DONE)
    (line,) = relay.sink.lines
    assert fields(line)[5:7] == ["6", "--"], line


def test_client_reset_after_close_notify_is_logged_CD(pki: Pki) -> None:
    """A TLS client that resets after its close_notify, before the server
    answered, is not a normal end: the session is logged CD."""
    relay = Relay()
    client, leg = tls_client(relay, pki)
    server, st = relay.complete()
    exchange(relay.reactor, client)
    client.send(b"request")
    client.shut()
    exchange(relay.reactor, client)
    client.reset()
    exchange(relay.reactor, client)
    assert st.disconnecting
    server.connectionLost(DONE)
    (line,) = relay.sink.lines
    assert fields(line)[6] == "CD", line


def test_server_close_notify_shuts_the_client_write_half_and_the_client_may_still_send(
    pki: Pki,
) -> None:
    """A TLS server's close_notify is an end of stream: the plain client
    gets a FIN, what the client sends after still reaches the server, and
    the client's own end brings l4lb's close_notify to the server."""
    relay = tls_relay(pki)
    client, ct = relay.accept()
    server, leg = tls_server(relay, pki)
    exchange(relay.reactor, server)
    assert session(relay).state == "established"
    server.send(b"reply")
    server.shut()
    exchange(relay.reactor, server)
    assert ct.value() == b"reply" and ct.write_closed and not ct.disconnecting
    assert not server.close_notify and not server.fin_received
    client.dataReceived(b"more")
    exchange(relay.reactor, server)
    assert server.received == b"more"
    client.readConnectionLost()
    exchange(relay.reactor, server)
    assert server.close_notify and server.wire.lost
    assert ct.disconnecting
    client.connectionLost(DONE)
    (line,) = relay.sink.lines
    assert fields(line)[5:7] == ["5", "--"], line


def test_client_end_reaches_tls_server_as_close_notify_and_the_reply_follows(pki: Pki) -> None:
    """A plain client's FIN reaches the TLS server as close_notify and a
    TCP half-close; the server's reply and close_notify then end the
    session normally."""
    relay = tls_relay(pki)
    client, ct = relay.accept()
    server, leg = tls_server(relay, pki)
    exchange(relay.reactor, server)
    client.dataReceived(b"request")
    client.readConnectionLost()
    exchange(relay.reactor, server)
    assert server.received == b"request" and server.close_notify
    assert server.wire.write_closed and not server.wire.disconnecting
    server.send(b"reply")
    server.shut()
    exchange(relay.reactor, server)
    assert ct.value() == b"reply" and ct.write_closed and ct.disconnecting
    assert server.wire.lost
    client.connectionLost(DONE)
    (line,) = relay.sink.lines
    assert fields(line)[5:7] == ["5", "--"], line


def test_tls_server_bytes_after_the_client_left_are_not_counted(pki: Pki) -> None:
    """Once the client reset, what a TLS server still sends before it
    answers l4lb's close_notify reaches nobody and is not counted as sent
    to the client."""
    relay = tls_relay(pki)
    client, ct = relay.accept()
    server, leg = tls_server(relay, pki)
    exchange(relay.reactor, server)
    server.send(b"first")
    exchange(relay.reactor, server)
    client.connectionLost(Failure(error.ConnectionLost()))
    exchange(relay.reactor, server)
    server.send(b"lost in flight")
    server.shut()
    exchange(relay.reactor, server)
    (line,) = relay.sink.lines
    assert fields(line)[5:7] == ["5", "CD"], line
