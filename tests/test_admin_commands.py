"""
Tests for L{l4lb.admin.commands}: the runtime API's commands against a
balancer held in memory.
"""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace
from typing import Any

import pytest

from l4lb.admin.commands import AdminCommands, CommandError
from l4lb.admin.fields import FIELDS
from l4lb.config.model import Config
from l4lb.tcp import lean

from tests.relaykit import Relay
from tests.runtimekit import stand_in


def make() -> "tuple[Relay, AdminCommands]":
    """
    A relay with backend C{be} (servers s1, s2) behind frontend C{fe}, and
    the commands over it.
    """
    relay = Relay()
    service: Any = stand_in(
        config=Config(frontends=(relay.frontend.spec,), backends=(relay.backend.spec,)),
        frontends={"fe": relay.frontend},
        udp_frontends={},
        backends={"be": relay.backend},
        limiter=relay.limiter,
        monitor=SimpleNamespace(find=_no_health),
    )
    return relay, AdminCommands(service, relay.reactor)


def _no_health(backend: str, server: str) -> Any:
    raise KeyError(f"{backend}/{server}")


def parse_stat(text: str) -> "list[dict[str, str]]":
    """
    Parse C{show stat} output as a tool would: the header names the columns.
    """
    lines = text.splitlines()
    assert lines[0].startswith("# ")
    reader = csv.reader(io.StringIO("\n".join(line for line in lines[1:] if line)))
    header = lines[0][2:].rstrip(",").split(",")
    return [dict(zip(header, row)) for row in reader]


def test_set_state_drain_changes_server_and_status() -> None:
    """
    C{set server be/s1 state drain} puts s1 in drain and C{show stat} says
    DRAIN for it.
    """
    relay, commands = make()
    assert commands.run("set server be/s1 state drain") == ""
    assert relay.backend.server("s1").admin == "drain"
    rows = {r["svname"]: r for r in parse_stat(commands.run("show stat"))}
    assert rows["s1"]["status"] == "DRAIN"
    assert rows["s2"]["status"] == "no check"


def test_drained_server_gets_no_new_connection() -> None:
    """
    After a drain through the API, new connections all go to the other
    server.
    """
    relay, commands = make()
    commands.run("set server be/s1 state drain")
    for _ in range(4):
        relay.accept()
    assert {host for host, _ in relay.attempts()} == {"127.0.10.2"}


@pytest.mark.parametrize(
    "line",
    [
        "set server be/nope state drain",
        "set server nope/s1 state drain",
        "set server be/s1 state sleepy",
        "set server be/s1 weight 300",
        "set server be/s1 weight x",
        "set server be/s1 colour blue",
        "set server be/s1",
        "set server s1 state drain",
        "enable server be/s1 extra",
        "set maxconn frontend nope 3",
        "set maxconn frontend fe -3",
        "disable health be/s1",
        "clear counters some",
        "frobnicate",
    ],
)
def test_bad_command_is_one_line_and_changes_nothing(line: str) -> None:
    """
    Every malformed command raises a one-line L{CommandError} and leaves
    every server and frontend as it was.
    """
    relay, commands = make()
    before = [(s.admin, s.weight, s.up) for s in relay.backend.servers]
    with pytest.raises(CommandError) as caught:
        commands.run(line)
    assert "\n" not in str(caught.value) and str(caught.value)
    assert [(s.admin, s.weight, s.up) for s in relay.backend.servers] == before
    assert relay.gate.maxconn == 0


def test_set_and_get_weight() -> None:
    """
    HAProxy's C{set weight B/S W} changes a weight as C{set server B/S
    weight W} does, and C{get weight B/S} answers HAProxy's
    C{CURRENT (initial CONFIGURED)}; unknown names get the usual errors.
    """
    relay, commands = make()
    assert commands.run("set weight be/s2 40") == ""
    assert relay.backend.server("s2").weight == 40
    assert commands.run("get weight be/s2") == "40 (initial 1)\n"
    with pytest.raises(CommandError, match="^Absolute weight can only be between 0 and 256"):
        commands.run("set weight be/s2 300")
    with pytest.raises(CommandError, match="^No such server"):
        commands.run("get weight be/nope")
    with pytest.raises(CommandError, match="^No such backend"):
        commands.run("set weight nope/s1 3")


def test_weight_absolute_and_percent() -> None:
    """
    C{set server ... weight} takes an absolute weight or a percentage of the
    configured one.
    """
    relay, commands = make()
    commands.run("set server be/s2 weight 40")
    assert relay.backend.server("s2").weight == 40
    commands.run("set server be/s2 weight 300%")
    assert relay.backend.server("s2").weight == 3


def test_enable_disable_server() -> None:
    """
    C{disable server} is maintenance and C{enable server} ready again.
    """
    relay, commands = make()
    commands.run("disable server be/s1")
    assert relay.backend.server("s1").status == "MAINT"
    commands.run("enable server be/s1")
    assert relay.backend.server("s1").admin == "ready"


def test_shutdown_sessions_kills_with_kd() -> None:
    """
    C{shutdown sessions server} closes the server's connections, logged
    with the admin's termination state C{KD}.
    """
    relay, commands = make()
    relay.accept()
    relay.complete()
    server = relay.backend.server("s1")
    assert len(server.sessions) == 1
    session = next(iter(server.sessions))
    commands.run("shutdown sessions server be/s1")
    assert session.termination == "KD"


def test_show_sess_lists_open_connections() -> None:
    """
    C{show sess} lists each open connection with its frontend, backend and
    server.
    """
    relay, commands = make()
    relay.accept()
    relay.complete()
    text = commands.run("show sess")
    assert "fe=fe be=be srv=s1 state=established" in text
    assert len(text.splitlines()) == 1


def test_set_maxconn_frontend() -> None:
    """
    C{set maxconn frontend} changes the frontend's limit.
    """
    relay, commands = make()
    commands.run("set maxconn frontend fe 7")
    assert relay.gate.maxconn == 7


@pytest.mark.parametrize(
    "value", ["99999999999999999999999", "2147483648", "-1", "9" * 5000]
)
def test_set_maxconn_frontend_out_of_range(value: str) -> None:
    """
    A count outside 0-2147483647 (HAProxy's range, a C int) is refused
    with HAProxy's reply, and the frontend keeps its limit.
    """
    relay, commands = make()
    commands.run("set maxconn frontend fe 7")
    with pytest.raises(CommandError) as caught:
        commands.run(f"set maxconn frontend fe {value}")
    assert str(caught.value) == "Value out of range."
    assert relay.gate.maxconn == 7


@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0662", "12x", "0x10", "1e3"])
def test_set_maxconn_frontend_takes_ascii_digits_only(value: str) -> None:
    """
    Only ASCII decimal digits make a count: a superscript, another
    script's digits or a hex or exponent form is refused with a one-line
    error (not an internal error), and the limit stays.
    """
    relay, commands = make()
    commands.run("set maxconn frontend fe 7")
    with pytest.raises(CommandError) as caught:
        commands.run(f"set maxconn frontend fe {value}")
    assert "0 to 2147483647" in str(caught.value)
    assert relay.gate.maxconn == 7


def test_set_maxconn_frontend_bounds() -> None:
    """
    0 (no limit of its own) and 2147483647 are accepted, leading zeros
    too.
    """
    relay, commands = make()
    commands.run("set maxconn frontend fe 2147483647")
    assert relay.gate.maxconn == 2147483647
    commands.run("set maxconn frontend fe 000012")
    assert relay.gate.maxconn == 12
    commands.run("set maxconn frontend fe 0")
    assert relay.gate.maxconn == 0


@pytest.mark.parametrize(
    "value, reply",
    [
        ("257", "Absolute weight can only be between 0 and 256 inclusive."),
        ("9" * 5000, "Absolute weight can only be between 0 and 256 inclusive."),
        ("9" * 5000 + "%", "above 256"),
        ("25700%", "above 256"),
        ("\u00b2", "is not a weight"),
        ("\u0661\u0662", "is not a weight"),
    ],
)
def test_set_weight_out_of_range(value: str, reply: str) -> None:
    """
    A weight above 256, however many digits it has, or written with
    digits that are not ASCII, is refused with a one-line error (HAProxy's
    reply for an absolute one) and the weight stays.
    """
    relay, commands = make()
    commands.run("set server be/s1 weight 5")
    with pytest.raises(CommandError) as caught:
        commands.run(f"set server be/s1 weight {value}")
    assert reply in str(caught.value)
    assert relay.backend.server("s1").weight == 5


def test_show_stat_columns_and_rows() -> None:
    """
    C{show stat} has HAProxy's header, one row per frontend, server and
    backend, every row as wide as the header, and counts connections.
    """
    relay, commands = make()
    relay.accept()
    relay.complete()
    text = commands.run("show stat")
    assert text.splitlines()[0] == "# " + ",".join(FIELDS) + ","
    rows = parse_stat(text)
    assert [(r["pxname"], r["svname"], r["type"]) for r in rows] == [
        ("fe", "FRONTEND", "0"),
        ("be", "s1", "2"),
        ("be", "s2", "2"),
        ("be", "BACKEND", "1"),
    ]
    for line in text.splitlines()[1:]:
        if line:
            assert len(next(csv.reader([line]))) == len(FIELDS) + 1
    byname = {r["svname"]: r for r in rows}
    assert byname["s1"]["scur"] == "1" and byname["s1"]["stot"] == "1"
    assert byname["FRONTEND"]["stot"] == "1"
    assert byname["s1"]["addr"] == "127.0.10.1:80"


def test_clear_counters() -> None:
    """
    C{clear counters} sets the cumulative counters back to zero and keeps
    the current ones.
    """
    relay, commands = make()
    relay.accept()
    relay.complete()
    commands.run("clear counters")
    server = relay.backend.server("s1")
    assert (server.total, server.current, relay.frontend.total) == (0, 1, 0)


def test_show_info_and_servers_state() -> None:
    """
    C{show info} is C{Key: value} lines; C{show servers state} has one line
    per server with HAProxy's admin-state code (8 = drain).
    """
    relay, commands = make()
    info = dict(line.split(": ", 1) for line in commands.run("show info").splitlines())
    assert info["Name"] == "l4lb"
    commands.run("set server be/s2 state drain")
    lines = commands.run("show servers state be").splitlines()
    assert lines[0] == "1"
    assert lines[3].split()[3:7] == ["s2", "127.0.10.2", "2", "8"]


def test_show_info_reports_the_splice_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    C{show info} has HAProxy's pipe lines: C{Maxpipes} (the C{maxpipes}
    limit), C{PipesUsed} (open now) and C{PipesFree} (none is kept idle).
    """
    pipes = lean.Pipes(64)
    pipes.open = 3
    monkeypatch.setattr(lean, "PIPES", pipes)
    _, commands = make()
    info = dict(line.split(": ", 1) for line in commands.run("show info").splitlines())
    assert (info["Maxpipes"], info["PipesUsed"], info["PipesFree"]) == ("64", "3", "0")


def test_help_lists_every_command() -> None:
    """
    C{help} names each command the issue lists.
    """
    _, commands = make()
    text = commands.run("help")
    for name in ("show stat", "set server", "shutdown sessions", "set maxconn", "clear counters"):
        assert name in text
