"""
Tests for L{l4lb.reload}: a changed configuration applied to a running
L{l4lb.service.BalancerService} on a memory reactor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple

import pytest
from twisted.internet.testing import MemoryReactorClock

from l4lb.admin.commands import AdminCommands
from l4lb.config import parse_config
from l4lb.logs import MemorySink
from l4lb.reload import apply_config, reload_file
from l4lb.service import BalancerService

HEAD = """\
[global]
maxconn = 100
hard-stop-after = 5s
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s
"""

BASE = (
    HEAD
    + """\
[backend be]
server s1 = 127.0.10.1:80
server s2 = 127.0.10.2:80
[frontend fe]
bind = 127.0.0.1:8001
default_backend = be
"""
)


class Port:
    """
    A listening port that records whether it reads and whether it closed.
    """

    def __init__(self, number: int) -> None:
        self.number = number
        self.reading = True
        self.closed = False

    def doRead(self) -> None:
        """
        Nothing to accept.
        """

    def startReading(self) -> None:
        """
        Read.
        """
        self.reading = True

    def stopReading(self) -> None:
        """
        Stop reading.
        """
        self.reading = False

    def stopListening(self) -> None:
        """
        Close.
        """
        self.closed = True
        self.reading = False


class Reactor(MemoryReactorClock):
    """
    A memory reactor whose TCP and UDP ports are L{Port}s.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ports: List[Port] = []

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        """
        Record the listen and return a L{Port}.
        """
        super().listenTCP(port, factory, backlog, interface)
        self.ports.append(Port(port))
        return self.ports[-1]

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> Any:
        """
        Return a L{Port} for a UDP bind.
        """
        self.ports.append(Port(port))
        return self.ports[-1]

    def open_ports(self) -> List[int]:
        """
        The port numbers listened on and not closed.
        """
        return sorted(p.number for p in self.ports if not p.closed)


class Session:
    """
    An established connection to a server, as the relay counts it.
    """

    def __init__(self, backend: Any, server: Any) -> None:
        self.backend, self.server = backend, server
        self.killed: List[str] = []
        backend.take(server, self)

    def kill(self, termination: str) -> None:
        self.killed.append(termination)
        self.end()

    def end(self) -> None:
        self.backend.drop(self.server, self)


def start(text: str = BASE) -> Tuple[BalancerService, Reactor]:
    """
    A started service running C{text}.
    """
    reactor = Reactor()
    service = BalancerService(parse_config(text, "lb.ini"), reactor, sink=MemorySink())
    service.startService()
    assert service.ready.called
    return service, reactor


def test_invalid_file_keeps_old_config(tmp_path: Path) -> None:
    """
    A file with errors changes nothing and returns each error with its
    file and line.
    """
    service, reactor = start()
    path = tmp_path / "lb.ini"
    path.write_text(BASE + "[frontend bad]\nbind = 127.0.0.1:9\ndefault_backend = nowhere\n")
    before = service.config
    result = reload_file(service, str(path))
    assert not result.applied
    assert result.errors and all(str(path) in e for e in result.errors)
    assert "nowhere" in "".join(result.errors)
    assert service.config is before and set(service.frontends) == {"fe"}
    assert reactor.open_ports() == [8001]


@pytest.mark.parametrize(
    "text",
    [
        "",
        HEAD,
        BASE[: BASE.index("[frontend fe]")],
        BASE[: BASE.index("bind = ")],
    ],
    ids=["empty", "globals-only", "cut-before-frontend", "cut-inside-frontend"],
)
def test_file_without_listener_is_rejected(tmp_path: Path, text: str) -> None:
    """
    An empty or truncated file (no frontend with a bind) is rejected like
    a file with errors, in HAProxy's words: the running configuration
    stays and its port keeps listening and accepting.
    """
    service, reactor = start()
    path = tmp_path / "lb.ini"
    path.write_text(text)
    before = service.config
    result = reload_file(service, str(path))
    assert not result.applied
    assert result.summary().startswith("Reload rejected: ")
    assert all(e.startswith(f"{path}:") for e in result.errors)
    if "[frontend fe]" in text:
        # The frontend cut before its bind has errors of its own.
        assert "needs at least one bind" in "".join(result.errors)
    else:
        (error,) = result.errors
        assert "Configuration file has no error but will not start (no listener)" in error
    assert service.config is before and set(service.frontends) == {"fe"}
    assert reactor.open_ports() == [8001]
    assert all(p.reading for p in reactor.ports)


def test_reload_command_rejects_file_without_listener(tmp_path: Path) -> None:
    """
    The runtime API's C{reload} with an empty file answers HAProxy's
    message and the rejection, and changes nothing.
    """
    service, reactor = start()
    path = tmp_path / "lb.ini"
    path.write_text("")
    service.config_path = str(path)
    answer = AdminCommands(service, reactor).run("reload")
    assert answer.splitlines() == [
        f"{path}: Configuration file has no error but will not start (no listener):"
        " no frontend has a 'bind'; add a section such as [frontend web] with"
        " 'bind = ADDRESS:PORT' and 'default_backend = NAME'",
        "Reload rejected: 1 error(s); the running configuration stays.",
    ]
    assert set(service.frontends) == {"fe"} and reactor.open_ports() == [8001]


def test_new_frontend_is_bound_and_opened() -> None:
    """
    A frontend added to the file listens and accepts right away.
    """
    service, reactor = start()
    text = BASE + "[frontend fe2]\nbind = 127.0.0.1:8002\ndefault_backend = be\n"
    result = apply_config(service, parse_config(text, "lb.ini"))
    assert result.summary() == "Reload: 1 frontend added."
    assert reactor.open_ports() == [8001, 8002]
    assert not service.frontends["fe2"].gate.held
    assert reactor.ports[-1].reading


def test_removed_frontend_is_closed_its_connections_stay() -> None:
    """
    A frontend gone from the file stops listening; its connections (held
    by the servers) are not touched.
    """
    extra = "[frontend fe2]\nbind = 127.0.0.1:8002\ndefault_backend = be\n"
    service, reactor = start(BASE + extra)
    backend = service.backends["be"]
    session = Session(backend, backend.server("s1"))
    result = apply_config(service, parse_config(BASE, "lb.ini"))
    assert result.counts == {"frontend removed": 1}
    assert reactor.open_ports() == [8001] and "fe2" not in service.frontends
    now = service.backends["be"]
    assert session.killed == [] and now.server("s1").sessions == {session}


def test_changed_frontend_binds_maxconn_backend() -> None:
    """
    A changed frontend is built afresh: it keeps the ports of binds that
    stay, closes the dropped ones, binds the new ones and takes its new
    backend, limit and timeouts for new connections; its counters stay.
    """
    text = BASE + "[backend other]\nserver o1 = 127.0.10.9:80\n"
    service, reactor = start(
        text.replace("bind = 127.0.0.1:8001", "bind = 127.0.0.1:8001, 127.0.0.1:8003")
    )
    state = service.frontends["fe"]
    state.total = 7
    kept = reactor.ports[0]
    changed = text.replace(
        "bind = 127.0.0.1:8001\ndefault_backend = be\n",
        "bind = 127.0.0.1:8001, 127.0.0.1:8004\ndefault_backend = other\nmaxconn = 5\n"
        "timeout client = 9s\n",
    )
    apply_config(service, parse_config(changed, "lb.ini"))
    state = service.frontends["fe"]
    assert state.total == 7
    assert reactor.open_ports() == [8001, 8004] and not kept.closed
    assert service.ports["fe"][0] is kept
    assert state.backend is service.backends["other"] and state.gate.maxconn == 5
    assert state.spec.timeouts.client == 9.0


def test_servers_added_removed_reweighted_moved() -> None:
    """
    Servers are added, removed, reweighted and moved to a new address;
    the balancer then picks among the new set only.
    """
    service, _ = start()
    backend = service.backends["be"]
    s1 = backend.server("s1")
    text = BASE.replace("server s1 = 127.0.10.1:80", "server s1 = 127.0.10.11:81 weight 3").replace(
        "server s2 = 127.0.10.2:80", "server s3 = 127.0.10.3:80"
    )
    result = apply_config(service, parse_config(text, "lb.ini"))
    assert result.counts == {
        "backend changed": 1,
        "server changed": 1,
        "server added": 1,
        "server removed": 1,
    }
    backend = service.backends["be"]
    assert [s.name for s in backend.servers] == ["s1", "s3"]
    s1 = backend.server("s1")
    assert (s1.address, s1.port, s1.weight) == ("127.0.10.11", 81, 3)
    picked = {backend.pick("192.0.2.1").name for _ in range(8)}
    assert picked == {"s1", "s3"}


def test_drain_and_counters_kept_across_reload() -> None:
    """
    A server drained through the runtime API stays drained, with its
    counters, when a reload changes something else of its backend.
    """
    service, _ = start()
    backend = service.backends["be"]
    s1 = backend.server("s1")
    s1.set_admin("drain")
    s1.total = 42
    text = BASE.replace("127.0.10.2:80", "127.0.10.2:80 weight 5")
    apply_config(service, parse_config(text, "lb.ini"))
    backend = service.backends["be"]
    s1 = backend.server("s1")
    assert s1.admin == "drain" and s1.total == 42
    assert all(backend.pick("192.0.2.1").name == "s2" for _ in range(4))


def test_removed_server_connections_continue_until_hard_stop_after() -> None:
    """
    A removed server's connections go on, count on it alone, and are
    closed C{hard-stop-after} seconds after the reload.
    """
    service, reactor = start()
    backend = service.backends["be"]
    s2 = backend.server("s2")
    session = Session(backend, s2)
    apply_config(service, parse_config(BASE.replace("server s2 = 127.0.10.2:80\n", ""), "lb.ini"))
    assert [s.name for s in service.backends["be"].servers] == ["s1"]
    assert service.retired == [s2]
    assert session in service.open_sessions()
    reactor.advance(4.9)
    assert session.killed == []
    reactor.advance(0.2)
    assert session.killed == ["KD"] and s2.current == 0 and not s2.sessions


def test_removed_backend_dropped_sessions_end_cleanly() -> None:
    """
    A removed backend disappears from the service; a connection of its
    still ends with its counts consistent.
    """
    text = BASE + "[backend old]\nserver o1 = 127.0.10.9:80\n"
    service, _ = start(text)
    old = service.backends["old"]
    session = Session(old, old.server("o1"))
    result = apply_config(service, parse_config(BASE, "lb.ini"))
    assert result.counts == {"backend removed": 1, "server removed": 1}
    assert "old" not in service.backends
    session.end()
    assert old.server("o1").current == 0 and not old.server("o1").sessions


def test_balance_change_rebuilds_balancer_with_open_connections() -> None:
    """
    A new C{balance} gets a new balancer, told of the connections already
    open, so that its own load count returns to zero when they end.
    """
    service, _ = start()
    backend = service.backends["be"]
    old_balancer = backend.balancer
    session = Session(backend, backend.server("s1"))
    text = BASE.replace("[backend be]\n", "[backend be]\nbalance = source\n")
    apply_config(service, parse_config(text, "lb.ini"))
    balancer: Any = service.backends["be"].balancer
    assert balancer is not old_balancer and balancer.name == "source"
    assert balancer._load == [1, 0]
    session.end()
    assert balancer._load == [0, 0]


def test_check_settings_restart_checks_and_new_servers_get_checked() -> None:
    """
    Checks start for an added server with C{check}, restart when a
    server's check settings change, and stop for a removed server.
    """
    service, _ = start(BASE.replace("127.0.10.1:80", "127.0.10.1:80 check"))
    monitor = service.monitor
    first = monitor.find("be", "s1")
    text = BASE.replace("127.0.10.1:80", "127.0.10.1:80 check inter 5s").replace(
        "server s2 = 127.0.10.2:80", "server s3 = 127.0.10.3:80 check"
    )
    apply_config(service, parse_config(text, "lb.ini"))
    assert monitor.find("be", "s1") is not first and first.check_loop is not None
    assert monitor.find("be", "s3").check_loop is not None
    assert [h.server.name for h in monitor.servers] == ["s1", "s3"]
    apply_config(service, parse_config(BASE, "lb.ini"))
    assert monitor.servers == []


def test_restart_only_settings_are_warned_about() -> None:
    """
    A changed C{stats socket} is not applied and the reload says it needs
    a restart; C{maxconn} is applied.
    """
    service, _ = start()
    text = BASE.replace("maxconn = 100", "maxconn = 50\nstats socket = /nonexistent/admin.sock")
    result = apply_config(service, parse_config(text, "lb.ini"))
    assert any("stats-socket" in w and "restart" in w for w in result.warnings)
    assert service.limiter.maxconn == 50 and service.admin_port is None


def test_udp_frontend_added_and_removed() -> None:
    """
    A C{mode udp} frontend is bound and reading after a reload adds it,
    and closed after a reload removes it.
    """
    service, reactor = start()
    text = BASE + (
        "[backend dns]\nmode = udp\nserver d1 = 127.0.10.5:53\n"
        "[frontend udp]\nmode = udp\nbind = 127.0.0.1:5353\ndefault_backend = dns\n"
    )
    apply_config(service, parse_config(text, "lb.ini"))
    assert "udp" in service.udp_frontends and reactor.ports[-1].reading
    apply_config(service, parse_config(BASE, "lb.ini"))
    assert "udp" not in service.udp_frontends and reactor.open_ports() == [8001]


def test_reload_command_replies_errors_or_summary(tmp_path: Path) -> None:
    """
    The runtime API's C{reload} answers the configuration's errors, or the
    summary of what changed.
    """
    path = tmp_path / "lb.ini"
    path.write_text(BASE)
    service, _ = start()
    service.config_path = str(path)
    commands = AdminCommands(service, service.reactor)
    path.write_text(BASE.replace("weight", "").replace("127.0.10.2:80", "127.0.10.2:80 weight x"))
    answer = commands.run("reload")
    assert "weight" in answer and "Reload rejected" in answer
    path.write_text(BASE.replace("127.0.10.2:80", "127.0.10.2:80 weight 4"))
    assert commands.run("reload").splitlines()[-1] == (
        "Reload: 1 backend changed, 1 server changed."
    )
    assert service.backends["be"].server("s2").weight == 4


WITHOUT_S2 = BASE.replace("server s2 = 127.0.10.2:80\n", "")


def test_server_back_before_hard_stop_after_keeps_its_connections() -> None:
    """
    A server removed and then added back (same name, same address) before
    C{hard-stop-after} takes its open connections back: none is closed at
    either reload's deadline, and they count on the server again.
    """
    service, reactor = start()
    backend = service.backends["be"]
    sessions = [Session(backend, backend.server("s2")) for _ in range(3)]
    apply_config(service, parse_config(WITHOUT_S2, "lb.ini"))
    reactor.advance(2)
    result = apply_config(service, parse_config(BASE, "lb.ini"))
    assert result.counts == {"backend changed": 1, "server added": 1}
    s2 = service.backends["be"].server("s2")
    assert service.retired == []
    assert s2.sessions == set(sessions) and s2.current == 3
    assert all(session.server is s2 for session in sessions)
    reactor.advance(10)
    assert [session.killed for session in sessions] == [[], [], []]
    for session in sessions:
        session.end()
    assert s2.current == 0 and not s2.sessions


def test_server_back_counts_its_connections_in_a_new_balancer() -> None:
    """
    The balancer rebuilt for a server that is back is told of the
    connections it took back, and its load returns to zero when they end.
    """
    text = BASE.replace("[backend be]\n", "[backend be]\nbalance = leastconn\n")
    service, reactor = start(text)
    backend = service.backends["be"]
    session = Session(backend, backend.server("s2"))
    apply_config(service, parse_config(text.replace("server s2 = 127.0.10.2:80\n", ""), "lb.ini"))
    apply_config(service, parse_config(text, "lb.ini"))
    backend = service.backends["be"]
    s2 = backend.server("s2")
    assert [backend.pick("192.0.2.1").name for _ in range(3)] == ["s1"] * 3
    session.end()
    assert s2.current == 0
    other = Session(backend, backend.server("s1"))
    assert [backend.pick("192.0.2.1").name for _ in range(3)] == ["s2"] * 3
    other.end()
    reactor.advance(10)
    assert session.killed == []


def test_server_back_at_another_address_is_another_server() -> None:
    """
    A server added back with the same name but another address is a new
    server: the connections to the removed one are still closed at
    C{hard-stop-after}.
    """
    service, reactor = start()
    backend = service.backends["be"]
    session = Session(backend, backend.server("s2"))
    apply_config(service, parse_config(WITHOUT_S2, "lb.ini"))
    reactor.advance(1)
    apply_config(service, parse_config(BASE.replace("127.0.10.2:80", "127.0.10.2:81"), "lb.ini"))
    assert service.backends["be"].server("s2").current == 0
    reactor.advance(4.1)
    assert session.killed == ["KD"]


def test_server_back_then_removed_again_counts_from_the_last_removal() -> None:
    """
    A server removed, added back and removed again has its connections
    closed C{hard-stop-after} after the last removal, not the first.
    """
    service, reactor = start()
    backend = service.backends["be"]
    session = Session(backend, backend.server("s2"))
    apply_config(service, parse_config(WITHOUT_S2, "lb.ini"))
    reactor.advance(2)
    apply_config(service, parse_config(BASE, "lb.ini"))
    reactor.advance(1)
    apply_config(service, parse_config(WITHOUT_S2, "lb.ini"))
    reactor.advance(4.9)
    assert session.killed == []
    reactor.advance(0.2)
    assert session.killed == ["KD"]


def test_removed_server_still_connecting_at_hard_stop_after_is_logged_KC() -> None:
    """
    A connection to a removed server still connecting when
    C{hard-stop-after} passes is closed with C{KC}, as a stop logs it; one
    in its data phase with C{KD}.
    """
    service, reactor = start()
    backend = service.backends["be"]
    connecting = Session(backend, backend.server("s2"))
    connecting.state = "connecting"  # type: ignore[attr-defined]
    established = Session(backend, backend.server("s2"))
    established.state = "established"  # type: ignore[attr-defined]
    apply_config(service, parse_config(WITHOUT_S2, "lb.ini"))
    reactor.advance(5.1)
    assert (connecting.killed, established.killed) == (["KC"], ["KD"])
