"""
The source stage inside a frontend held in memory: refused connections are
closed, logged C{PR} and counted in C{dcon} (C{show stat}, Prometheus), and
the stick table's open-connection count is released when a session ends
(C{show table}).
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from l4lb.admin.commands import AdminCommands, CommandError
from l4lb.admin.metrics import registry_for
from l4lb.config.model import Config
from l4lb.config.protect import parse_rule
from l4lb.protect.stage import SourceStage
from l4lb.protect.table import StickTable
from tests.relaykit import Relay
from tests.runtimekit import stand_in


def make(*rules: str, table: bool = False) -> "tuple[Relay, AdminCommands, Any]":
    """
    A frontend C{fe} whose only stage is a source stage with C{rules}, the
    commands over it, and its service.
    """
    relay = Relay()
    stage = SourceStage(
        [parse_rule(rule) for rule in rules], StickTable(100, 30.0, 10.0) if table else None
    )
    relay.frontend.stages = [stage]
    service: Any = stand_in(
        config=Config(frontends=(relay.frontend.spec,), backends=(relay.backend.spec,)),
        frontends={"fe": relay.frontend},
        udp_frontends={},
        backends={"be": relay.backend},
        limiter=relay.limiter,
        monitor=None,
    )
    return relay, AdminCommands(service, relay.reactor), service


def test_refused_source_is_closed_logged_and_counted() -> None:
    """
    A refused client is aborted without a connection attempt, logged with
    C{<NOSRV>} and C{PR}, and counted in the frontend row's C{dcon} and in
    C{l4lb_frontend_denied_connections_total}.
    """
    relay, commands, service = make("reject if src 127.0.0.0/8")
    leg, transport = relay.accept()
    assert transport.aborted
    leg.connectionLost(Exception("reset"))  # type: ignore[arg-type]
    assert relay.attempts() == []
    assert len(relay.sink.lines) == 1
    assert " fe be/<NOSRV> " in relay.sink.lines[0] and " PR " in relay.sink.lines[0]
    assert relay.frontend.denied == 1
    stat = commands.run("show stat").splitlines()
    header = stat[0][2:].split(",")
    row = dict(zip(header, stat[1].split(",")))
    assert row["svname"] == "FRONTEND" and row["dcon"] == "1"
    metrics = generate_latest(registry_for(service, relay.reactor)).decode()
    assert 'l4lb_frontend_denied_connections_total{proxy="fe"} 1.0' in metrics
    commands.run("clear counters")
    assert relay.frontend.denied == 0


def test_open_connection_count_is_released_when_the_session_ends() -> None:
    """
    With C{reject if { src_conn_cur ge 1 }}, a second connection from the
    source is refused while the first is open, and accepted once it ended;
    C{show table} shows the source and its counters.
    """
    relay, commands, _ = make("reject if { src_conn_cur ge 1 }", table=True)
    leg, transport = relay.accept()
    assert not transport.aborted and len(relay.attempts()) == 1
    server_leg, _ = relay.complete()
    assert server_leg is not None
    refused_leg, refused = relay.accept()
    assert refused.aborted
    refused_leg.connectionLost(Exception("reset"))  # type: ignore[arg-type]
    assert commands.run("show table") == (
        "# table: fe, type: ip, size:100, used:1, evicted:0, untracked:0\n"
    )
    assert "key=127.0.0.1 use=1 exp=30000 conn_cnt=2 conn_cur=1" in commands.run("show table fe")
    leg.connectionLost(Exception("gone"))  # type: ignore[arg-type]
    server_leg.connectionLost(Exception("gone"))  # type: ignore[arg-type]
    assert "conn_cur=0" in commands.run("show table fe")
    _, third = relay.accept()
    assert not third.aborted


def test_show_table_of_a_frontend_without_one_is_an_error() -> None:
    """
    C{show table NAME} for a frontend without a stick table answers with an
    error line.
    """
    _, commands, _ = make("reject if src 127.200.0.0/16")
    assert commands.run("show table") == ""
    with pytest.raises(CommandError, match="No stick table on frontend 'fe'"):
        commands.run("show table fe")
