"""
TLS health checks (C{check-ssl}) in memory: a verified handshake passes
(C{L6OK}), a failed one fails (C{L6RSP}), a handshake that does not finish
in time is C{L6TOUT}.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import FakeTransport, IOPump, connect

from l4lb.config.model import ServerSpec
from l4lb.health.build import tcp_checks
from l4lb.health.status import CheckResult
from l4lb.health.tcp import TcpCheck
from l4lb.tcp.tls import client_creator, server_options
from tests.tlskit import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: Any) -> Pki:
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def tls_check(reactor: MemoryReactorClock, pki: Pki, inter: float = 2.0) -> TcpCheck:
    spec = ServerSpec("s1", "127.0.10.1", 443, "127.0.10.1", ca_file=pki.ca, sni="db.internal", check_ssl=True)
    return TcpCheck(reactor, lambda: "127.0.10.1", 443, inter, tls=client_creator(spec))


def run(reactor: MemoryReactorClock, check: TcpCheck) -> List[CheckResult]:
    results: List[CheckResult] = []
    check.run().addCallback(results.append)
    return results


def answer(reactor: MemoryReactorClock, server: Any) -> IOPump:
    """Connect the check's attempt to C{server} (a protocol) and exchange
    bytes until nothing moves."""
    host, port, factory = reactor.tcpClients[-1][:3]
    addr = IPv4Address("TCP", host, port)
    client = factory.buildProtocol(addr)
    pump = connect(server, FakeTransport(server, True), client, FakeTransport(client, False), greet=False, clock=reactor)
    for _ in range(50):
        reactor.advance(0)
        if not pump.pump():
            break
    return pump


def tls_server(reactor: MemoryReactorClock, crt: str) -> Any:
    return TLSMemoryBIOFactory(
        server_options(crt), False, Factory.forProtocol(Protocol), clock=reactor
    ).buildProtocol(None)


def test_verified_handshake_is_L6OK(pki: Pki) -> None:
    """A server with a valid certificate for the sni name passes with L6OK."""
    reactor = MemoryReactorClock()
    results = run(reactor, tls_check(reactor, pki))
    answer(reactor, tls_server(reactor, pki.server))
    assert [r.status for r in results] == ["L6OK"]


def test_wrong_name_is_L6RSP(pki: Pki) -> None:
    """A certificate for another name fails the check with L6RSP, saying why."""
    reactor = MemoryReactorClock()
    results = run(reactor, tls_check(reactor, pki))
    answer(reactor, tls_server(reactor, pki.wrong))
    assert [r.status for r in results] == ["L6RSP"]
    assert "certificate does not name db.internal" in results[0].description


def test_plain_server_is_L6RSP(pki: Pki) -> None:
    """A server that answers the ClientHello with plain text fails with
    L6RSP."""

    class Plain(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            self.transport.loseConnection()

    reactor = MemoryReactorClock()
    results = run(reactor, tls_check(reactor, pki))
    answer(reactor, Plain())
    assert [r.status for r in results] == ["L6RSP"]


def test_silent_server_is_L6TOUT(pki: Pki) -> None:
    """A server that accepts TCP but never answers the handshake fails with
    L6TOUT when inter passes, and the connection is aborted."""
    reactor = MemoryReactorClock()
    results = run(reactor, tls_check(reactor, pki, inter=1.0))
    host, port, factory = reactor.tcpClients[-1][:3]
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = FakeTransport(protocol, False)
    protocol.makeConnection(transport)
    reactor.advance(1.0)
    assert [r.status for r in results] == ["L6TOUT"]
    assert transport.disconnecting


def test_builder_gives_check_ssl_servers_a_tls_check(pki: Pki) -> None:
    """check-ssl makes the server's check a TLS one; without it the check
    is plain TCP."""
    from l4lb.balancers import find_factory
    from l4lb.config.model import Backend
    from l4lb.pool import BackendState

    specs = (
        ServerSpec("s1", "127.0.10.1", 443, "127.0.10.1", check=True, check_ssl=True, ca_file=pki.ca),
        ServerSpec("s2", "127.0.10.2", 443, "127.0.10.2", check=True),
    )
    backend = BackendState(Backend("be", specs), find_factory("roundrobin"))
    s1, s2 = backend.servers
    (c1,) = tcp_checks(backend, s1, MemoryReactorClock())
    (c2,) = tcp_checks(backend, s2, MemoryReactorClock())
    assert c1.tls is not None and c1.success.status == "L6OK"
    assert c2.tls is None and c2.success.status == "L4OK"
