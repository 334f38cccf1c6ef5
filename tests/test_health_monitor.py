"""
The monitor and each server's health, driven by a L{Clock}: exact
transition times, consequences (balancer, backups, sessions) and the log
in HAProxy's words.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet import error
from twisted.python.failure import Failure

from l4lb.health.server import ServerHealth
from l4lb.health.status import L7OK, L7STS, CheckResult
from l4lb.health.agent import reply_result
from tests.healthkit import PASS, REFUSED, Checked, spec
from tests.relaykit import Relay

DOWN_LINE = (
    'Server be/s1 is DOWN, reason: Layer4 connection problem, info: "Connection refused",'
    " check duration: 0ms. 1 active and 0 backup servers left. 0 sessions active,"
    " 0 requeued, 0 remaining in queue."
)


def test_fall_and_rise_with_fastinter_and_downinter() -> None:
    """With inter 2, fastinter 0.5, downinter 5, fall 3, rise 2, a fully-up server that starts failing at t=1 is DOWN at exactly t=3.0, and back UP at exactly t=8.5 once it passes from t=4."""
    lab = Checked(
        [spec(inter=2.0, fastinter=0.5, downinter=5.0, rise=2, fall=3, init_state="fully-up")]
    ).start()
    changes = lab.record_changes()
    check = lab.checks["s1"]
    lab.advance_to(1.0)
    check.outcome = REFUSED
    lab.advance_to(4.0)
    check.outcome = PASS
    lab.advance_to(11.0)
    assert changes == [(3.0, "s1", False), (8.5, "s1", True)]
    assert check.runs == [0.0, 2.0, 2.5, 3.0, 8.0, 8.5, 10.5]


def test_inter_alone_paces_every_state() -> None:
    """Without fastinter and downinter every check is inter apart: fall 2 at inter 0.2 takes a fully-up server DOWN 0.4s after its first failure."""
    lab = Checked([spec(inter=0.2, rise=2, fall=2, init_state="fully-up")]).start()
    changes = lab.record_changes()
    lab.advance_to(0.1)
    lab.checks["s1"].outcome = REFUSED
    lab.advance_to(1.0)
    assert changes[0][1:] == ("s1", False)
    assert changes[0][0] == pytest.approx(0.4)
    assert lab.checks["s1"].runs == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_default_init_state_checks_at_once_and_falls_at_first_failure() -> None:
    """By default a server starts UP, is checked at t=0, and one failure marks it DOWN (HAProxy 3.1 'up')."""
    lab = Checked([spec(), spec("s2", 2)])
    assert lab.server("s1").up
    lab.checks  # built
    lab.start()
    assert lab.server("s1").health_text == "UP 1/3"
    assert lab.server("s1").check_status == "INI"
    lab.checks["s1"].outcome = REFUSED
    lab.clock.advance(0)
    assert not lab.server("s1").up
    assert lab.texts()[0] == DOWN_LINE


def test_init_state_down_starts_down_and_rises_at_first_success() -> None:
    """init-state down: the server starts DOWN (no traffic) and one passed check brings it UP."""
    lab = Checked([spec(init_state="down", rise=3)])
    lab.start()
    assert not lab.server("s1").up
    assert lab.backend.pick(None) is None
    assert lab.server("s1").health_text == "DOWN 2/3"
    lab.clock.advance(0)
    assert lab.server("s1").up
    assert lab.backend.pick(None) is lab.server("s1")


def test_checks_never_overlap() -> None:
    """A check that outlasts inter is not started again until it finishes; the next starts inter after it ends."""
    lab = Checked([spec(inter=1.0)], manual=True).start()
    check = lab.checks["s1"]
    lab.advance_to(5.0)
    assert check.runs == [0.0] and len(check.pending) == 1
    check.answer(PASS)
    lab.advance_to(6.0)
    assert check.runs == [0.0, 6.0]


def test_a_raising_check_counts_as_failed_and_the_loop_goes_on() -> None:
    """A check that raises is counted as a failed check (status UNK) and checks continue on schedule."""
    lab = Checked([spec(inter=1.0, init_state="fully-up", fall=2)]).start()
    check = lab.checks["s1"]
    check.outcome = RuntimeError("broken probe")
    lab.advance_to(3.0)
    server = lab.server("s1")
    assert check.runs == [0.0, 1.0, 2.0, 3.0]
    assert not server.up
    assert server.check_status == "UNK"
    assert "RuntimeError: broken probe" in server.check_desc
    assert server.failed_checks == 2


def test_an_error_applying_a_result_does_not_stop_the_loop() -> None:
    """Even when recording a result raises (here the log), the next check still runs."""
    lab = Checked([spec(inter=1.0)]).start()
    health = lab.monitor.find("be", "s1")

    def broken(level: str, text: str) -> None:
        raise OSError("log full")

    health.emit = broken
    lab.checks["s1"].outcome = REFUSED
    lab.advance_to(3.0)
    assert lab.checks["s1"].runs == [0.0, 1.0, 2.0, 3.0]
    assert health.check_loop is not None and health.check_loop.errors == 1


def test_first_checks_are_staggered() -> None:
    """The first checks are spread evenly over the shortest interval, the first at once."""
    lab = Checked([spec(f"s{i}", i, inter=2.0) for i in range(1, 5)]).start()
    lab.advance_to(1.9)
    assert [lab.checks[f"s{i}"].runs[0] for i in range(1, 5)] == [0.0, 0.5, 1.0, 1.5]


def test_spread_checks_jitter_is_bounded() -> None:
    """spread-checks 10 keeps every interval within 10% of inter, and varies it."""
    lab = Checked([spec(inter=1.0, init_state="fully-up")], spread_checks=10, seed=7).start()
    lab.advance_to(300.0)
    runs = lab.checks["s1"].runs
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert len(gaps) > 250
    assert all(0.9 - 1e-9 <= g <= 1.1 + 1e-9 for g in gaps)
    assert max(gaps) - min(gaps) > 0.1


def test_log_lines_and_no_server_available() -> None:
    """Each transition is logged in HAProxy's words; losing the last server adds 'backend be has no server available!'."""
    lab = Checked([spec(inter=1.0, rise=1), spec("s2", 2, inter=1.0, rise=1)]).start()
    lab.checks["s1"].outcome = REFUSED
    lab.checks["s2"].outcome = REFUSED
    lab.advance_to(0.5)
    assert lab.lines == [
        ("warn", DOWN_LINE),
        (
            "warn",
            'Server be/s2 is DOWN, reason: Layer4 connection problem, info: "Connection refused",'
            " check duration: 0ms. 0 active and 0 backup servers left. 0 sessions active,"
            " 0 requeued, 0 remaining in queue.",
        ),
        ("critical", "backend be has no server available!"),
    ]
    lab.checks["s1"].outcome = PASS
    lab.advance_to(1.0)
    assert lab.lines[-1] == (
        "warn",
        "Server be/s1 is UP, reason: Layer4 check passed, check duration: 0ms."
        " 1 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.",
    )


def test_backups_take_over_and_step_back() -> None:
    """When the only active server goes DOWN the backup gets the connections ('Running on backup.'); when it returns it gets them back."""
    lab = Checked([spec(inter=1.0, rise=1), spec("b1", 2, backup=True, check=False)]).start()
    lab.checks["s1"].outcome = REFUSED
    lab.clock.advance(0)
    assert lab.backend.pick(None) is lab.server("b1")
    assert "0 active and 1 backup servers left. Running on backup." in lab.texts()[-1]
    lab.checks["s1"].outcome = PASS
    lab.advance_to(1.0)
    assert lab.backend.pick(None) is lab.server("s1")


def test_log_health_checks_reports_each_status_change() -> None:
    """option log-health-checks logs every check whose status or counter changed, with HAProxy's 'status: N/M UP'."""
    lab = Checked([spec(inter=1.0, init_state="fully-up")], log_health_checks=True).start()
    lab.advance_to(0.5)
    lab.checks["s1"].outcome = REFUSED
    lab.advance_to(1.5)
    assert lab.texts() == [
        "Health check for server be/s1 succeeded, reason: Layer4 check passed,"
        " check duration: 0ms, status: 3/3 UP.",
        'Health check for server be/s1 failed, reason: Layer4 connection problem, info:'
        ' "Connection refused", check duration: 0ms, status: 2/3 UP.',
    ]


def test_stats_fields_follow_the_checks() -> None:
    """The server keeps the last status, description, duration, counters and health text."""
    lab = Checked([spec(inter=1.0, init_state="fully-up", fall=2)]).start()
    server = lab.server("s1")
    lab.checks["s1"].outcome = CheckResult("L4CON", "Connection refused", 0.003)
    lab.advance_to(0.0)
    assert (server.check_status, server.check_desc, server.check_duration) == (
        "L4CON",
        "Connection refused",
        0.003,
    )
    assert server.health_text == "UP 1/2" and server.status == "UP 1/2"
    lab.advance_to(1.0)
    assert server.health_text == "DOWN"
    assert (server.failed_checks, server.down_transitions, server.last_change) == (2, 1, 1.0)
    lab.checks["s1"].outcome = PASS
    lab.advance_to(2.0)
    assert server.health_text == "DOWN 1/2"
    lab.advance_to(3.0)
    assert server.health_text == "UP" and server.down_time == 2.0


def test_maintenance_pauses_health_checks() -> None:
    """A server in maintenance is not health-checked."""
    lab = Checked([spec(inter=1.0)])
    lab.server("s1").set_admin("maint")
    lab.start()
    lab.advance_to(5.0)
    assert lab.checks["s1"].runs == []


def test_stop_cancels_checks_in_progress() -> None:
    """Stopping the monitor cancels the check in progress and nothing runs afterwards."""
    lab = Checked([spec(inter=1.0)], manual=True).start()
    lab.clock.advance(0)
    done: List[Any] = []
    lab.monitor.stopService().addCallback(done.append)
    assert done and lab.checks["s1"].cancelled == 1
    lab.advance_to(10.0)
    assert lab.checks["s1"].runs == [0.0]
    assert lab.lines == []


# -- agent ----------------------------------------------------------------


def agent_lab(**options: Any) -> Checked:
    """A server with an agent check only, every second."""
    return Checked(
        [spec(check=False, agent_check=True, agent_port=9, inter=1.0, **options), spec("s2", 2, check=False)]
    )


def test_agent_drain_drains_and_ready_restores() -> None:
    """An agent answering 'drain' drains the server (no new connections, logged); 'ready' restores it."""
    lab = agent_lab().start()
    agent = lab.agents["s1"]
    agent.outcome = reply_result("drain")
    lab.clock.advance(0)
    server = lab.server("s1")
    assert server.admin == "drain" and server.status == "DRAIN"
    assert all(lab.backend.pick(None) is lab.server("s2") for _ in range(4))
    assert lab.texts()[-1] == (
        "Server be/s1 enters drain state (agent). 1 active and 0 backup servers online."
        " 0 sessions requeued, 0 total in queue."
    )
    agent.outcome = reply_result("ready")
    lab.advance_to(1.0)
    assert server.admin == "ready"
    assert lab.texts()[-1].startswith("Server be/s1 is UP/READY (leaving drain, agent).")


def test_agent_down_and_up() -> None:
    """'down' marks the server DOWN at once whatever its checks say, with the agent's words; 'up' lifts it."""
    lab = agent_lab().start()
    agent = lab.agents["s1"]
    agent.outcome = reply_result("down # disk full")
    lab.clock.advance(0)
    server = lab.server("s1")
    assert not server.up and server.health_text == "DOWN (agent)"
    assert server.agent_status == L7STS
    assert lab.texts()[-1].startswith(
        'Server be/s1 is DOWN, reason: Layer7 wrong status, info: "down # disk full"'
    )
    agent.outcome = reply_result("up")
    lab.advance_to(1.0)
    assert server.up and server.agent_status == L7OK


def test_agent_weight_and_maxconn() -> None:
    """'50%' halves the configured weight, 'weight:N' sets it, 'maxconn:N' sets the limit."""
    lab = agent_lab(weight=10).start()
    agent = lab.agents["s1"]
    server = lab.server("s1")
    agent.outcome = reply_result("50%,maxconn:7")
    lab.clock.advance(0)
    assert (server.weight, server.maxconn) == (5, 7)
    agent.outcome = reply_result("weight:3 maxconn:0")
    lab.advance_to(1.0)
    assert (server.weight, server.maxconn) == (3, 0)


def test_unreachable_agent_changes_nothing() -> None:
    """An agent that cannot be reached leaves the server as it is."""
    lab = agent_lab().start()
    lab.agents["s1"].outcome = REFUSED
    lab.advance_to(3.0)
    server = lab.server("s1")
    assert server.up and server.admin == "ready" and server.agent_status == "L4CON"
    assert lab.lines == []


# -- consequences on live sessions -----------------------------------------


def relay_with_monitor(**options: Any) -> Any:
    """A memory relay whose servers are checked by scripted checks on the relay's clock."""
    from tests.healthkit import ScriptedCheck
    from l4lb.health.monitor import HealthMonitor

    relay = Relay(backend_servers=(spec("s1", 1, **options), spec("s2", 2, **options)))
    checks = {}
    lines: List[str] = []

    def build(backend: Any, server: Any, reactor: Any) -> List[Any]:
        return [checks.setdefault(server.name, ScriptedCheck(reactor))]

    monitor = HealthMonitor(
        [relay.backend], relay.reactor, builders={"tcp": build}, emit=lambda lv, t: lines.append(t)
    )
    return relay, monitor, checks, lines


def test_shutdown_sessions_closes_open_connections_with_D() -> None:
    """on-marked-down shutdown-sessions aborts the DOWN server's sessions at once; the log says DD (data) or DC (connecting)."""
    relay, monitor, checks, lines = relay_with_monitor(on_marked_down="shutdown-sessions", inter=1.0)
    client, ct = relay.accept()
    relay.complete()
    client2, ct2 = relay.accept()
    assert client.session.server.name == "s1" and client2.session.server.name == "s2"
    client3, ct3 = relay.accept()
    assert client3.session.server.name == "s1" and client3.session.state == "connecting"
    monitor.startService()
    checks["s1"].outcome = REFUSED
    relay.reactor.advance(0)
    assert ct.aborted and ct3.aborted and not ct2.aborted
    assert "2 sessions active" in lines[-1]
    for leg in (client, client3):
        leg.connectionLost(Failure(error.ConnectionLost()))
    client.session.server_leg.connectionLost(Failure(error.ConnectionLost()))
    terminations = [line.split(" ")[6] for line in relay.sink.lines]
    assert sorted(terminations) == ["DC", "DD"]


def test_without_shutdown_sessions_open_connections_stay() -> None:
    """Without on-marked-down, a DOWN server's established sessions continue; it only gets no new ones."""
    relay, monitor, checks, lines = relay_with_monitor(inter=1.0)
    client, ct = relay.accept()
    relay.complete()
    monitor.startService()
    checks["s1"].outcome = REFUSED
    relay.reactor.advance(0)
    assert not ct.aborted
    for _ in range(3):
        c, _ = relay.accept()
        assert c.session.server.name == "s2"


def test_passive_errors_mark_down() -> None:
    """observe layer4 with error-limit 2 and on-error mark-down: two refused connections in a row mark the server DOWN (reason Health analyze); a success in between resets the count."""
    relay, monitor, checks, lines = relay_with_monitor(
        inter=10.0, observe="layer4", error_limit=2, on_error="mark-down", init_state="fully-up"
    )
    monitor.startService()
    relay.reactor.advance(0)
    server = relay.backend.server("s1")
    server.observer.connect_failed()
    server.observer.connect_succeeded()
    server.observer.connect_failed()
    relay.reactor.advance(0)
    assert server.up
    for _ in range(2):
        c, _ = relay.accept()
        if c.session.server is server:
            relay.fail(error.ConnectionRefusedError())
        else:
            relay.complete()
    relay.accept()
    relay.fail(error.ConnectionRefusedError())
    relay.reactor.advance(0)
    assert not server.up
    assert server.check_status == "HANA" and server.failed_hana == 1
    assert lines[-1].startswith(
        'Server be/s1 is DOWN, reason: Health analyze, info: "Detected 2 consecutive errors,'
        ' last one was: L4 unsuccessful connection"'
    )


@pytest.mark.parametrize(
    "on_error, up_after, next_check",
    [("fastinter", True, 0.5), ("fail-check", True, 0.5), ("sudden-death", True, 0.5), ("mark-down", False, 0.5)],
)
def test_on_error_actions(on_error: str, up_after: bool, next_check: float) -> None:
    """Each on-error action: all force the next check within fastinter; fail-check counts one failure, sudden-death leaves one failure to go, mark-down marks DOWN."""
    lab = Checked(
        [spec(inter=10.0, fastinter=0.5, fall=3, init_state="fully-up", observe="layer4", error_limit=1, on_error=on_error)]
    ).start()
    lab.clock.advance(0)
    server = lab.server("s1")
    server.observer.connect_failed()
    lab.clock.advance(0)
    assert server.up is up_after
    health = lab.monitor.find("be", "s1")
    assert health.state is not None
    expected = {"fastinter": 4, "fail-check": 3, "sudden-death": 2, "mark-down": 0}[on_error]
    assert health.state.health == expected
    lab.advance_to(next_check)
    assert lab.checks["s1"].runs == [0.0, next_check]


def test_on_marked_up_shuts_backup_sessions() -> None:
    """on-marked-up shutdown-backup-sessions: when an active server comes back, sessions on backups are closed with U."""
    relay = Relay(
        backend_servers=(
            spec("s1", 1, inter=1.0, rise=1, on_marked_up="shutdown-backup-sessions"),
            spec("b1", 2, backup=True, check=False),
        )
    )
    from tests.healthkit import ScriptedCheck
    from l4lb.health.monitor import HealthMonitor

    check = ScriptedCheck(relay.reactor)
    check.outcome = REFUSED
    monitor = HealthMonitor(
        [relay.backend],
        relay.reactor,
        builders={"tcp": lambda b, s, r: [check] if s.spec.check else []},
        emit=lambda lv, t: None,
    )
    monitor.startService()
    relay.reactor.advance(0)
    client, ct = relay.accept()
    relay.complete()
    assert client.session.server.name == "b1"
    check.outcome = PASS
    relay.reactor.advance(1.0)
    assert ct.aborted
    client.connectionLost(Failure(error.ConnectionLost()))
    client.session.server_leg.connectionLost(Failure(error.ConnectionLost()))
    assert relay.sink.lines[-1].split(" ")[6] == "UD"


def test_server_health_refuses_non_checks() -> None:
    """Only IHealthCheck providers can be given to a server's health."""
    lab = Checked([spec()])
    with pytest.raises(TypeError):
        ServerHealth(lab.server("s1"), lab.backend, lab.clock, [object()])
