"""
Servers added, removed and moved at run time (L{l4lb.runtime_servers}),
through the runtime API's commands on a started service over a memory
reactor.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import pytest
from twisted.logger import LogLevel, globalLogPublisher

from l4lb.admin.commands import AdminCommands, CommandError
from l4lb.balancers import ring
from l4lb.config import ConfigError, parse_config
from l4lb.reload import apply_config
from l4lb.runtime_servers import ServerChangeError
from l4lb.service import BalancerService
from tests.balancerkit import ALGORITHMS, backend, spec
from tests.runtimekit import stand_in
from tests.test_balancer_properties import KEYS, many_clients
from tests.test_reload import Session, start

BASE = """\
[defaults]
timeout connect = 5s
timeout client = 5s
timeout server = 5s
[backend be]
server s1 = 127.0.10.1:80
[backend dns]
mode = udp
server d1 = 127.0.10.5:53
[frontend fe]
bind = 127.0.0.1:8001
default_backend = be
"""


def running(text: str = BASE) -> Tuple[BalancerService, AdminCommands, Any]:
    """
    A started service, its runtime API's commands, and its reactor.
    """
    service, reactor = start(text)
    return service, AdminCommands(service, reactor), reactor


def picks(service: BalancerService, count: int = 8) -> List[str]:
    """
    The servers C{count} new connections of backend C{be} go to.
    """
    chosen = []
    for n in range(count):
        server = service.backends["be"].pick(f"127.0.1.{n}")
        chosen.append(server.name if server is not None else "-")
    return chosen


@pytest.fixture
def logged() -> Any:
    """
    The text of every log event while the test runs.
    """
    lines: List[str] = []

    def observe(event: Any) -> None:
        from twisted.logger import formatEvent

        lines.append((event.get("log_level", LogLevel.info).name, formatEvent(event)))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def test_add_server_starts_in_maintenance_until_enabled() -> None:
    """
    C{add server} answers HAProxy's C{New server registered.}; the server is
    in maintenance and takes no connection until C{enable server}, then it
    takes its share; C{show servers state} lists it like the others.
    """
    service, commands, _ = running()
    assert commands.run("add server be/s2 127.0.10.2:80 weight 2") == "New server registered.\n"
    s2 = service.find_server("be", "s2")
    assert (s2.admin, s2.user_weight) == ("maint", 2)
    assert set(picks(service)) == {"s1"}
    commands.run("enable server be/s2")
    assert set(picks(service, 30)) == {"s1", "s2"}
    rows = [line.split() for line in commands.run("show servers state be").splitlines()[2:]]
    assert [row[3] for row in rows if row[0] != "#"] == ["s1", "s2"]


def test_add_server_enabled_word_starts_ready() -> None:
    """
    The word C{enabled} in the line starts the server ready, as the
    C{enabled} argument of L{add_server} does.
    """
    service, commands, _ = running()
    commands.run("add server be/s2 127.0.10.2:80 enabled")
    assert service.find_server("be", "s2").admin == "ready"
    assert service.add_server("be", "s3", "127.0.10.3:80", enabled=True).admin == "ready"


def test_add_server_checks_begin_when_enabled() -> None:
    """
    A server added with C{check} is not probed while in maintenance; its
    checks begin once it is enabled.
    """
    service, commands, reactor = running()
    commands.run("add server be/s2 127.0.10.2:8080 check inter 1s")
    reactor.advance(5)
    probes = [c for c in reactor.tcpClients if c[1] == 8080]
    assert probes == []
    commands.run("enable server be/s2")
    reactor.advance(2)
    probes = [c for c in reactor.tcpClients if c[1] == 8080]
    assert probes and probes[0][0] == "127.0.10.2"


@pytest.mark.parametrize(
    "options",
    ["wieght 2", "weight 300", "check inter -1s", "agent-check", "maxconn x"],
)
def test_add_server_refuses_what_the_config_check_refuses(options: str) -> None:
    """
    An invalid line is refused with the very messages the configuration
    check gives for the same C{server} line, and nothing is added.
    """
    service, commands, _ = running()
    with pytest.raises(ConfigError) as checked:
        parse_config(BASE + f"[backend other]\nserver s2 = 127.0.10.2:80 {options}\n", "lb.ini")
    expected = "\n".join(p.message for p in checked.value.problems)
    with pytest.raises(CommandError) as refused:
        commands.run(f"add server be/s2 127.0.10.2:80 {options}")
    assert str(refused.value) == expected
    assert [s.name for s in service.backends["be"].servers] == ["s1"]


def test_add_server_udp_refuses_send_proxy() -> None:
    """
    A UDP backend refuses C{send-proxy} at run time as in the file.
    """
    _, commands, _ = running()
    with pytest.raises(CommandError, match="PROXY protocol is not sent to UDP servers"):
        commands.run("add server dns/d2 127.0.10.6:53 send-proxy")


@pytest.mark.parametrize(
    "line, reply",
    [
        ("add server nope/s2 127.0.10.2:80", "No such backend."),
        (
            "add server be/s1 127.0.10.2:80",
            "Already exists a server with the same name in backend.",
        ),
        ("add server be 127.0.10.2:80", "Require 'backend/server'."),
        ("add server", "Require 'backend/server'."),
        ("del server be/s9", "No such server."),
        ("del server nope/s1", "No such backend."),
        ("set server be/s1 addr db.example", "Could not understand IP address format."),
        ("set server be/s1 addr 127.0.0.2 port 70000", "provided port is not valid."),
        (
            "set server be/s1 addr",
            "set server <b>/<s> addr requires an address and optionally a port.",
        ),
    ],
)
def test_refusals_have_haproxys_replies(line: str, reply: str) -> None:
    """
    Each refusal is one line with HAProxy's reply, and changes nothing.
    """
    service, commands, _ = running()
    with pytest.raises(CommandError) as refused:
        commands.run(line)
    assert str(refused.value).startswith(reply)
    s1 = service.find_server("be", "s1")
    assert (s1.address, s1.port) == ("127.0.10.1", 80)
    assert [s.name for s in service.backends["be"].servers] == ["s1"]


def test_del_server_needs_maintenance_and_no_connection() -> None:
    """
    C{del server} is refused for a server in service, then for one in
    maintenance that still has a connection; after C{shutdown sessions
    server} it answers C{Server deleted.} and the server is gone from the
    backend, its balancer and the runtime state.
    """
    service, commands, _ = running()
    commands.run("add server be/s2 127.0.10.2:80 enabled")
    s2 = service.find_server("be", "s2")
    with pytest.raises(CommandError, match="Only servers in maintenance mode can be deleted."):
        commands.run("del server be/s2")
    Session(service.backends["be"], s2)
    commands.run("disable server be/s2")
    with pytest.raises(CommandError, match="Server still has connections attached to it"):
        commands.run("del server be/s2")
    commands.run("shutdown sessions server be/s2")
    assert commands.run("del server be/s2") == "Server deleted.\n"
    assert [s.name for s in service.backends["be"].servers] == ["s1"]
    assert service.added_servers == {}
    assert set(picks(service)) == {"s1"}


def test_set_server_addr_moves_new_connections_and_checks(logged: Any) -> None:
    """
    C{set server B/S addr IP port P} answers and logs HAProxy's words; new
    picks connect there, the health check follows, and an established
    session keeps its server object, counted as before.
    """
    service, commands, reactor = running(
        BASE.replace("127.0.10.1:80", "127.0.10.1:80 check inter 1s")
    )
    s1 = service.find_server("be", "s1")
    held = Session(service.backends["be"], s1)
    reply = commands.run("set server be/s1 addr 127.0.10.9 port 81")
    assert reply == (
        "IP changed from '127.0.10.1' to '127.0.10.9', port changed from '80' to '81'"
        " by 'stats socket command'\n"
    )
    assert (s1.address, s1.port) == ("127.0.10.9", 81)
    assert held in s1.sessions and s1.current == 1
    reactor.advance(3)
    assert ("127.0.10.9", 81) in [(c[0], c[1]) for c in reactor.tcpClients]
    assert (
        "warn",
        "be/s1 changed its IP from 127.0.10.1 to 127.0.10.9 and its port from 80 to 81"
        " by stats socket command.",
    ) in logged
    assert commands.run("set server be/s1 addr 127.0.10.9 port 81") == ""


def test_set_server_address_cause_words(logged: Any) -> None:
    """
    Another cause (DNS) is written as given: C{by DNS cache}.
    """
    service, _, _ = running()
    s1 = service.find_server("be", "s1")
    reply = service.set_server_address(s1, "127.0.10.7", cause="DNS cache")
    assert reply == "IP changed from '127.0.10.1' to '127.0.10.7' by 'DNS cache'"
    assert ("warn", "be/s1 changed its IP from 127.0.10.1 to 127.0.10.7 by DNS cache.") in logged


def test_nbproc_refuses_clearly() -> None:
    """
    With C{nbproc} workers, servers cannot change at run time: each
    command says so and why.
    """
    service, _, _ = running()
    with_workers = stand_in(backends=service.backends, workers=object(), added_servers={})
    for call in (
        lambda: with_workers.add_server("be", "s2", "127.0.10.2:80"),
        lambda: with_workers.remove_server("be", "s1"),
        lambda: with_workers.set_server_address(service.find_server("be", "s1"), "127.0.0.2"),
    ):
        with pytest.raises(ServerChangeError, match="nbproc"):
            call()


def test_reload_keeps_added_server_and_its_state() -> None:
    """
    A reload with the same file keeps a server added at run time, drained
    and re-weighted as it was, with its open connection.
    """
    service, commands, _ = running()
    commands.run("add server be/s2 127.0.10.2:80 weight 3")
    commands.run("set server be/s2 state drain")
    commands.run("set server be/s2 weight 5")
    Session(service.backends["be"], service.find_server("be", "s2"))
    result = apply_config(service, parse_config(BASE, "lb.ini"))
    assert result.summary() == "Reload: no change."
    s2 = service.find_server("be", "s2")
    assert (s2.admin, s2.user_weight, s2.current, s2.spec.weight) == ("drain", 5, 1, 3)


def test_reload_file_defining_the_name_wins(logged: Any) -> None:
    """
    When the new file defines a server of the added server's name, the
    file's definition (its address) wins, the runtime definition is
    forgotten, and that is logged.
    """
    service, commands, _ = running()
    commands.run("add server be/s2 127.0.10.2:80")
    text = BASE.replace(
        "server s1 = 127.0.10.1:80", "server s1 = 127.0.10.1:80\nserver s2 = 127.0.10.8:80"
    )
    apply_config(service, parse_config(text, "lb.ini"))
    s2 = service.find_server("be", "s2")
    assert (s2.address, s2.admin) == ("127.0.10.8", "ready")
    assert service.added_servers == {}
    assert any("be/s2 added at run time is dropped" in text for _, text in logged)


def test_reload_drops_added_server_of_removed_backend() -> None:
    """
    An added server whose backend the new file removes is forgotten.
    """
    service, commands, _ = running()
    commands.run("add server dns/d2 127.0.10.6:53")
    without_dns = BASE.replace("[backend dns]\nmode = udp\nserver d1 = 127.0.10.5:53\n", "")
    apply_config(service, parse_config(without_dns, "lb.ini"))
    assert service.added_servers == {}


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_balancer_takes_added_and_loses_removed(algorithm: str) -> None:
    """
    Every algorithm picks a server added (and enabled) at run time, and
    never one removed.
    """
    settings = dict(ALGORITHMS[algorithm])
    balance = settings.pop("balance", algorithm)
    args = settings.pop("balance_args", ())
    text = BASE.replace(
        "[backend be]\n",
        f"[backend be]\nbalance = {balance}{'(' + ','.join(args) + ')' if args else ''}\n"
        + "".join(f"{k.replace('_', '-')} = {v}\n" for k, v in settings.items()),
    )
    service, commands, _ = running(text)
    commands.run("add server be/s2 127.0.10.2:80 enabled")
    commands.run("add server be/s3 127.0.10.3:80 enabled")
    seen = set()
    taken = []
    for n in range(300):
        server = service.backends["be"].pick(f"127.{n % 7}.{n}.1")
        assert server is not None
        seen.add(server.name)
        # 'first' fills the first server before the next.
        taken.append(Session(service.backends["be"], server))
        if len(taken) > 1 and algorithm != "first":
            taken.pop(0).end()
    assert "s2" in seen or algorithm == "first"
    for session in taken:
        session.end()
    commands.run("disable server be/s1")
    assert service.backends["be"].pick("127.0.0.1").name in ("s2", "s3")
    commands.run("del server be/s1")
    for n in range(100):
        assert service.backends["be"].pick(f"127.0.{n}.2").name != "s1"


@pytest.mark.parametrize("algorithm", ["source-consistent", "maglev"])
@pytest.mark.parametrize("count", [5, 10])
def test_adding_or_removing_moves_only_that_servers_keys(
    algorithm: str, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Adding a server at run time (and enabling it) moves only the clients
    that now hash to it (with Maglev, at most 1/N + 1% of 100,000 clients
    in all); deleting it again brings every client back to its server;
    deleting a server of the file moves only its own clients (with
    Maglev, at most 1/N + 1%).
    """
    monkeypatch.setattr(ring, "RING_POINTS", 4096)
    settings = {"balance_args": ("65537",)} if algorithm == "maglev" else {}
    state = backend(algorithm, [spec(f"node-{i}") for i in range(count)], **settings)
    keys = many_clients()
    before = {c: state.pick(c) for c in keys}
    added = spec("node-new")
    from l4lb.pool import Server

    server = Server(added, state)
    server.set_admin("maint")
    state.set_servers([*state.servers, server])
    assert all(state.pick(c) is before[c] for c in keys[:2000])
    server.set_admin("ready")
    during = {c: state.pick(c) for c in keys}
    moved = [c for c in keys if during[c] is not before[c]]
    to_new = [c for c in keys if during[c] is server]
    assert to_new and len(moved) <= (1 / (count + 1) + 0.01) * KEYS
    if algorithm == "source-consistent":
        assert set(moved) == set(to_new)
    else:
        assert set(to_new) <= set(moved)
    server.set_admin("maint")
    state.set_servers([s for s in state.servers if s is not server])
    assert all(state.pick(c) is before[c] for c in keys)

    victim = state.server("node-3")
    victim.set_admin("maint")
    state.set_servers([s for s in state.servers if s is not victim])
    after = {c: state.pick(c) for c in keys}
    moved = [c for c in keys if after[c] is not before[c]]
    own = [c for c in keys if before[c] is victim]
    assert len(moved) <= (1 / count + 0.01) * KEYS and set(own) <= set(moved)
    if algorithm == "source-consistent":
        assert set(moved) == set(own)
