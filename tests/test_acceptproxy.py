"""
Tests for L{l4lb.tcp.acceptproxy}: an C{accept-proxy} bind reads the PROXY
header of trusted peers, driven in memory through a real relay session.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import globalLogPublisher
from zope.interface import implementer
from zope.interface.verify import verifyObject

from l4lb.config.model import BindSpec, Frontend
from l4lb.interfaces import IClientStage
from l4lb.proxyproto import preamble, v1_header, v2_header
from l4lb.tcp.acceptproxy import AcceptProxy, parse_networks
from l4lb.tcp.frontend import FrontendFactory
from l4lb.tcp.relay import ClientLeg
from l4lb.tcp.stagelist import bind_stages
from l4lb.tcp.stages import StageRejected
from tests.relaykit import HalfCloseTransport, Relay

TRUSTED = parse_networks(["127.0.0.0/16", "::1", "127.201.0.0/16"])
V1 = v1_header(("192.0.2.7", 33333), ("198.51.100.1", 443))
V2 = v2_header(("2001:db8::7", 44444), ("2001:db8::1", 8443), authority="a.example")


@implementer(IClientStage)
class Seen:
    """
    A frontend stage after accept-proxy: records the client address it is
    given, and lets the connection through.
    """

    def __init__(self) -> None:
        self.clients: List[Tuple[str, int]] = []

    def inspect(self, session: Any, data: bytearray) -> Optional[int]:
        self.clients.append((session.client_host, session.client_port))
        return 0

    def expired(self, session: Any, data: bytearray) -> Optional[int]:
        return 0


def _accept(relay: Relay, peer: str = "127.0.0.1") -> Tuple[ClientLeg, HalfCloseTransport]:
    """
    Accept a connection from C{peer} on an accept-proxy bind listening on
    127.0.0.1:8080.
    """
    factory = FrontendFactory(relay.frontend, [AcceptProxy(TRUSTED)])
    kind = IPv6Address if ":" in peer else IPv4Address
    address = kind("TCP", peer, 40000)
    leg = factory.buildProtocol(address)
    transport = HalfCloseTransport(
        peerAddress=address, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080)
    )
    leg.makeConnection(transport)
    return leg, transport


@pytest.fixture
def events() -> Any:
    """
    The log events emitted during a test.
    """
    seen: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def test_stage_provides_the_interface() -> None:
    """AcceptProxy implements IClientStage fully."""
    assert verifyObject(IClientStage, AcceptProxy(TRUSTED))


def test_trust_by_range_and_mapped_addresses() -> None:
    """Trusted peers are those in the ranges, IPv4-mapped IPv6 peers included."""
    stage = AcceptProxy(TRUSTED)
    assert stage.trusts("127.0.0.1") and stage.trusts("127.201.200.3") and stage.trusts("::1")
    assert stage.trusts("::ffff:127.201.0.9")
    assert not stage.trusts("127.202.0.1") and not stage.trusts("::2") and not stage.trusts("unix")


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
def test_header_split_at_every_offset_sets_the_client(header: bytes) -> None:
    """
    However the header is split, the session takes the client it carries,
    the header is not relayed, and the bytes after it reach the server.
    """
    for cut in range(1, len(header)):
        relay = Relay()
        leg, client = _accept(relay)
        leg.dataReceived(header[:cut])
        assert relay.attempts() == []
        leg.dataReceived(header[cut:] + b"hello")
        assert relay.attempts() == [("127.0.10.1", 80)], cut
        _, server = relay.complete()
        assert server.value() == b"hello"
        session = leg.session
        if header is V1:
            assert (session.client_host, session.client_port) == ("192.0.2.7", 33333)
            assert session.destination == ("198.51.100.1", 443)
        else:
            assert (session.client_host, session.client_port) == ("2001:db8::7", 44444)
        assert not client.aborted


def test_carried_address_is_logged_and_seen_by_later_stages() -> None:
    """The frontend's own stages and the log line see the carried client."""
    relay = Relay()
    seen = Seen()
    relay.frontend.stages = [seen]
    leg, _ = _accept(relay)
    leg.dataReceived(V1)
    assert seen.clients == [("192.0.2.7", 33333)]
    server_leg, _ = relay.complete()
    assert server_leg is not None
    leg.connectionLost()
    server_leg.connectionLost()
    assert relay.sink.lines[0].startswith("192.0.2.7:33333 ")


def test_send_proxy_passes_the_carried_addresses_on() -> None:
    """A send-proxy server receives the client and destination the accepted header carried."""
    relay = Relay()
    for server in relay.backend.servers:
        server.preamble = preamble(1)
    leg, _ = _accept(relay)
    leg.dataReceived(V1 + b"x")
    _, server = relay.complete()
    assert server.value() == V1 + b"x"


def test_untrusted_peer_is_not_read() -> None:
    """
    From an untrusted peer the header is not read: the connection goes to a
    server at once, keeps the peer's address, and the header is relayed as
    data.
    """
    relay = Relay()
    leg, _ = _accept(relay, "127.202.0.1")
    assert relay.attempts() == [("127.0.10.1", 80)]
    _, server = relay.complete()
    leg.dataReceived(V1)
    assert server.value() == V1
    assert leg.session.client_host == "127.202.0.1"


def test_malformed_header_closes_with_a_reason(events: List[Dict[str, Any]]) -> None:
    """
    A trusted peer sending no valid header is closed, logged PR (the proxy
    refused what it cannot read; the client did not abort), not counted as
    denied, with a line saying why.
    """
    relay = Relay()
    leg, client = _accept(relay)
    leg.dataReceived(b"GET / HTTP/1.1\r\n")
    assert client.aborted
    leg.connectionLost()
    assert relay.attempts() == []
    (line,) = relay.sink.lines
    assert line.startswith("127.0.0.1:40000 ") and " fe be/<NOSRV> " in line and " PR " in line
    assert relay.frontend.denied == 0
    messages = [e.get("message", "") for e in events if e.get("frontend") == "fe"]
    assert any("no PROXY protocol header" in m for m in messages)
    # The next connection is served as usual.
    leg, client = _accept(relay)
    leg.dataReceived(V2)
    assert relay.attempts() == [("127.0.10.1", 80)]


def test_incomplete_header_times_out() -> None:
    """A header that is not finished within the inspect delay closes the connection cR."""
    relay = Relay()
    relay.frontend.inspect_delay = 3.0
    leg, client = _accept(relay)
    leg.dataReceived(V1[:10])
    relay.reactor.advance(2.9)
    assert not client.aborted
    relay.reactor.advance(0.2)
    assert client.aborted
    leg.connectionLost()
    assert " cR " in relay.sink.lines[0]


def test_local_header_keeps_the_peer_address() -> None:
    """A LOCAL v2 header (another proxy's health check) is consumed and changes nothing."""
    relay = Relay()
    leg, _ = _accept(relay)
    leg.dataReceived(v2_header(None, None, local=True) + b"ping")
    _, server = relay.complete()
    assert server.value() == b"ping"
    assert leg.session.client_host == "127.0.0.1" and leg.session.destination is None


def test_bind_stages_only_for_accept_proxy_binds() -> None:
    """Only a bind with accept-proxy gets the stage, trusting the frontend's ranges."""
    spec = Frontend(name="fe", binds=(), default_backend="be", accept_proxy_from=("127.192.0.0/10",))
    assert bind_stages(spec, BindSpec("tcp:80")) == []
    (stage,) = bind_stages(spec, BindSpec("tcp:81", accept_proxy=True))
    assert isinstance(stage, AcceptProxy) and stage.trusts("127.201.9.9") and not stage.trusts("127.0.0.1")


class _Session:
    client_host = "127.0.0.1"
    client_port = 1
    destination: Optional[Tuple[str, int]] = None


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.sampled_from([V1, V2, b"PROXY UNKNOWN\r\n"]), st.binary(max_size=40), st.integers(0, 200))
def test_stage_outcomes_are_clean(header: bytes, noise: bytes, position: int) -> None:
    """
    With random bytes inserted into a header, the stage consumes a header,
    waits, or refuses with PR; no other exception escapes.
    """
    data = bytearray(header[:position] + noise + header[position:])
    stage = AcceptProxy(TRUSTED)
    session = _Session()
    try:
        used = stage.inspect(session, data)
    except StageRejected as e:
        assert e.termination == "PR" and e.message and not e.denied
        return
    assert used is None or 0 < used <= len(data)
