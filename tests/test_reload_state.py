"""
Tests for the runtime state a reload carries over (L{l4lb.runtime_state},
L{l4lb.reload}): a reload builds every object afresh, and what was set or
learnt at run time moves to the new objects by name.
"""

from __future__ import annotations

import attr
from twisted.internet.address import IPv4Address

from l4lb.admin.commands import AdminCommands
from l4lb.config import parse_config
from l4lb.logs import MemorySink
from l4lb.protect.stage import SourceStage
from l4lb.reload import apply_config
from l4lb.runtime_state import ServerState, capture_server
from l4lb.service import BalancerService
from l4lb.tcp.frontend import FrontendFactory
from tests.test_reload import BASE, start
from tests.udpkit import FakeUdpReactor

CHECKED = BASE.replace("127.0.10.1:80", "127.0.10.1:80 check")


def reload_text(service: BalancerService, text: str) -> None:
    """
    Reload C{service} into the configuration C{text}.
    """
    apply_config(service, parse_config(text, "lb.ini"))


def test_weight_set_at_run_time_stays_until_the_file_changes_it() -> None:
    """
    A weight set through the runtime API survives a reload that leaves
    that server's C{weight} as it was, and gives way to a reload that
    changes it.
    """
    service, _ = start()
    service.backends["be"].server("s1").set_weight(7)
    reload_text(service, BASE.replace("127.0.10.2:80", "127.0.10.2:80 weight 2"))
    assert service.backends["be"].server("s1").user_weight == 7
    reload_text(service, BASE.replace("127.0.10.1:80", "127.0.10.1:80 weight 3"))
    assert service.backends["be"].server("s1").user_weight == 3


def test_drain_stays_until_the_file_changes_disabled() -> None:
    """
    A server drained at run time stays drained through reloads that do
    not touch its C{disabled}; a file that adds C{disabled} puts it in
    maintenance.
    """
    service, _ = start()
    service.backends["be"].server("s2").set_admin("drain")
    reload_text(service, BASE.replace("[frontend fe]\n", "[frontend fe]\nmaxconn = 9\n"))
    assert service.backends["be"].server("s2").admin == "drain"
    reload_text(service, BASE.replace("127.0.10.2:80", "127.0.10.2:80 disabled"))
    assert service.backends["be"].server("s2").admin == "maint"


def test_frontend_maxconn_set_at_run_time_stays_until_the_file_changes_it() -> None:
    """
    C{set maxconn frontend} survives a reload that changes something else
    of that frontend, and gives way to one that changes its C{maxconn}.
    """
    service, _ = start()
    AdminCommands(service, service.reactor).run("set maxconn frontend fe 3")
    fe = "default_backend = be\n"
    reload_text(service, BASE.replace(fe, fe + "timeout client = 9s\n"))
    assert service.frontends["fe"].gate.maxconn == 3
    reload_text(service, BASE.replace(fe, fe + "maxconn = 5\n"))
    assert service.frontends["fe"].gate.maxconn == 5


def test_down_server_stays_down_until_its_checks_say_otherwise() -> None:
    """
    A server its checks marked DOWN is DOWN after a reload that leaves its
    checks as they were (with its check history); one whose check settings
    changed restarts from its C{init-state}.
    """
    service, _ = start(CHECKED)
    health = service.monitor.find("be", "s1")
    assert health.state is not None
    health.state.health = 0
    health.server.set_health(False)
    health.server.health_text = "DOWN"
    reload_text(service, CHECKED.replace("127.0.10.2:80", "127.0.10.2:80 weight 2"))
    s1 = service.backends["be"].server("s1")
    fresh = service.monitor.find("be", "s1")
    assert fresh is not health and fresh.server is s1
    assert not s1.up and s1.health_text == "DOWN"
    assert fresh.state is not None and fresh.state.health == 0
    reload_text(service, CHECKED.replace("127.0.10.1:80 check", "127.0.10.1:80 check inter 5s"))
    assert service.backends["be"].server("s1").up


def test_stick_table_kept_while_its_definition_stays() -> None:
    """
    A frontend's stick table (with its entries) is the same after a reload
    that changes other settings of that frontend, and a new one after a
    reload that changes its definition.
    """
    table = "stick-table = type ip size 100 expire 30s\n"
    text = BASE + table
    service, _ = start(text)

    def stick() -> object:
        (stage,) = [s for s in service.frontends["fe"].stages if isinstance(s, SourceStage)]
        return stage.table

    before = stick()
    reload_text(service, text + "maxconn = 9\n")
    assert stick() is before
    reload_text(service, BASE + table.replace("100", "200"))
    assert stick() is not before


def test_connections_count_on_the_frontend_of_now_after_reloads() -> None:
    """
    A connection accepted before two reloads counts on the frontend's
    current gate, and its end frees the slot there.
    """
    service, _ = start()
    state = service.frontends["fe"]
    state.gate.acquire()
    reload_text(service, BASE.replace("[frontend fe]\n", "[frontend fe]\nmaxconn = 9\n"))
    reload_text(service, BASE.replace("[frontend fe]\n", "[frontend fe]\nmaxconn = 8\n"))
    now = service.frontends["fe"]
    assert now is not state and now.gate.current == 1 and service.limiter.current == 1
    state.gate.release()
    assert now.gate.current == 0 and service.limiter.current == 0


def test_unchanged_bind_port_is_handed_to_the_new_frontend() -> None:
    """
    The listening port of a bind that stays is not closed: its factory
    builds the connections of the new frontend, under the new gate.
    """
    service, reactor = start()
    (port,) = service.ports["fe"]
    limited = "[frontend fe]\nrate-limit sessions = 4\n"
    reload_text(service, BASE.replace("[frontend fe]\n", limited))
    assert service.ports["fe"] == [port] and not port.closed
    factory = service.port_factories[port]
    assert isinstance(factory, FrontendFactory)
    assert factory.frontend is service.frontends["fe"]
    assert service.frontends["fe"].gate.rate is not None
    leg = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
    assert leg.frontend is service.frontends["fe"]


UDP = """\
[global]
hard-stop-after = 5s
[backend dns]
mode = udp
server d1 = 127.0.10.5:53
[frontend udp]
mode = udp
bind = 127.0.0.1:5353
default_backend = dns
"""


def test_udp_sessions_handed_over_and_listed() -> None:
    """
    An open UDP session survives a reload that changes its frontend: the
    same port routes the client's next datagram through it to its server,
    it is listed by C{show sess}, and it idles out under the new
    C{timeout udp}.
    """
    reactor = FakeUdpReactor()
    service = BalancerService(parse_config(UDP, "lb.ini"), reactor, sink=MemorySink())
    service.startService()
    (port,) = service.ports["udp"]
    port.protocol.datagramReceived(b"q1", ("127.0.0.1", 4000))
    udp = service.udp_frontends["udp"]
    (session,) = list(udp.table)
    reload_text(service, UDP.replace("mode = udp\nbind", "mode = udp\ntimeout udp = 3s\nbind"))
    fresh = service.udp_frontends["udp"]
    assert fresh is not udp and service.ports["udp"] == [port] and not port.closed
    assert list(fresh.table) == [session] and session.frontend is fresh
    port.protocol.datagramReceived(b"q2", ("127.0.0.1", 4000))
    assert session.datagrams_in == 2 and session.server is service.backends["dns"].server("d1")
    listed = AdminCommands(service, reactor).run("show sess")
    assert "proto=udp src=127.0.0.1:4000 fe=udp be=dns srv=d1" in listed
    reactor.advance(3.5)
    assert session.ended and len(fresh.table) == 0


def test_server_state_is_plain_data() -> None:
    """
    A server's captured state has the C{show servers state} columns as
    plain values, and names its admin state.
    """
    service, _ = start(CHECKED)
    s1 = service.backends["be"].server("s1")
    s1.set_admin("drain")
    state = capture_server(s1, service.monitor.find("be", "s1"))
    assert isinstance(state, ServerState)
    row = attr.asdict(state)
    assert row["be_name"] == "be" and row["srv_name"] == "s1" and row["srv_admin_state"] == 8
    assert row["srv_op_state"] == 2 and row["srv_uweight"] == 1 and row["srv_port"] == 80
    assert state.admin == "drain"


def test_up_server_stays_up_without_warming_up_again() -> None:
    """
    A server UP after its checks passed (its C{init-state} is C{down}, it
    has a C{slowstart}) is UP at full weight right after a reload: it does
    not pass through its initial state, so no warm-up starts.
    """
    text = BASE.replace("127.0.10.1:80", "127.0.10.1:80 check init-state down slowstart 10s")
    service, reactor = start(text)
    health = service.monitor.find("be", "s1")
    assert health.state is not None and not health.server.up
    health.state.health = health.state.top
    health.server.set_health(True)
    reactor.advance(20)
    assert health.server.throttle == 100
    reload_text(service, text.replace("127.0.10.2:80", "127.0.10.2:80 weight 2"))
    s1 = service.backends["be"].server("s1")
    assert s1.up and s1.throttle == 100 and s1.weight == 1
    assert service.slowstart is not None and s1 not in service.slowstart.warmups
