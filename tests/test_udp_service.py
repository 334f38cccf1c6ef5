"""
UDP frontends in the service tree: bound in C{privilegedStartService},
reading once the service is ready, closed (with their sessions) on stop.
"""

from __future__ import annotations

import pytest
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import capturedLogs

from l4lb.config.parser import parse_config
from l4lb.logs import MemorySink
from l4lb.service import BalancerService, BindError
from l4lb.udp.sockets import MAX_DATAGRAM

from tests.udpkit import FakeUdpReactor

CONFIG = """
[frontend dns]
mode = udp
bind = 127.0.0.1:5353, [::1]:5353
default_backend = ns

[backend ns]
mode = udp
udp-responses = 1
server a = 127.0.0.1:1053
"""


def test_udp_frontend_binds_and_starts() -> None:
    """Each UDP bind is opened for the largest datagrams, reads once ready, and the proxy logs that it started."""
    reactor = FakeUdpReactor()
    service = BalancerService(parse_config(CONFIG, "lb.ini"), reactor, MemorySink())
    service.privilegedStartService()
    ports = reactor.open_ports()
    assert [(p.interface, p.number, p.max_packet_size) for p in ports] == [
        ("127.0.0.1", 5353, MAX_DATAGRAM), ("::1", 5353, MAX_DATAGRAM),
    ]
    assert not any(p.reading for p in ports)
    with capturedLogs() as events:
        service.startService()
    assert all(p.reading for p in ports)
    assert any(e.get("log_format") == "Proxy {name} started." and e["name"] == "dns" for e in events)
    assert service.ready.called


def test_stop_closes_ports_and_sessions() -> None:
    """Stopping the service ends the UDP sessions (logged) and closes every UDP socket."""
    reactor = FakeUdpReactor()
    sink = MemorySink()
    service = BalancerService(parse_config(CONFIG, "lb.ini"), reactor, sink)
    service.startService()
    reactor.open_ports()[0].protocol.datagramReceived(b"q", ("127.0.0.1", 4000))
    assert len(reactor.open_ports()) == 3
    service.stopService()
    assert reactor.open_ports() == []
    assert len(sink.lines) == 1 and " KD stopped " in sink.lines[0]


def test_bind_failure_names_the_file_line_and_frontend() -> None:
    """A UDP bind that fails stops the start with the file, line, frontend and address, closing what was bound."""
    reactor = FakeUdpReactor()
    reactor.listenUDP(5353, DatagramProtocol(), "::1")
    service = BalancerService(parse_config(CONFIG, "lb.ini"), reactor, MemorySink())
    with pytest.raises(BindError) as e:
        service.privilegedStartService()
    assert "lb.ini:4: frontend 'dns' cannot listen on UDP '[::1]:5353'" in str(e.value)
    assert [p.number for p in reactor.open_ports()] == [5353]
