"""
C{slowstart}: a server that comes back warms up from 1% to its full weight
and C{maxconn} over the configured time, driven by a L{Clock}.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attr
import pytest
from twisted.internet.task import Clock

from l4lb.admin.commands import AdminCommands
from l4lb.admin.stats import stat_rows
from l4lb.config import parse_config
from l4lb.health.warmup import SlowStart, Warmup
from l4lb.pool import BackendState, Server
from l4lb.service import BalancerService

from tests.balancerkit import backend, spec, take


def warming(
    algorithm: str = "roundrobin",
    weight: int = 100,
    maxconn: int = 0,
    slowstart: float = 10.0,
    **settings: Any,
) -> tuple:
    """
    A backend of s1 (with C{slowstart}) and s2 (weight 100, none), watched
    by a L{SlowStart} on a L{Clock}.
    """
    s1 = attr.evolve(spec("s1", weight=weight, maxconn=maxconn), slowstart=slowstart)
    s2 = spec("s2", weight=100)
    state = backend(algorithm, [s1, s2], **settings)
    clock = Clock()
    slow = SlowStart(clock)
    slow.watch(state)
    return state, state.server("s1"), clock, slow


def bounce(server: Server) -> None:
    """Take C{server} down and bring it back UP."""
    server.set_health(False)
    server.set_health(True)


def test_nothing_warms_up_at_start() -> None:
    """Servers have their full weight from the start: slowstart only applies to a server that comes back."""
    _, s1, clock, _ = warming()
    assert (s1.weight, s1.throttle) == (100, 100)
    assert clock.getDelayedCalls() == []


def test_weight_ramps_linearly_from_one_percent() -> None:
    """A server back UP starts at 1% of its weight and gains a step a second (10 s: 20 steps would be shorter than a second) until it is at 100% and nothing is left scheduled."""
    _, s1, clock, _ = warming(slowstart=10.0)
    bounce(s1)
    assert (s1.throttle, s1.weight, s1.user_weight) == (1, 1, 100)
    seen = []
    for _ in range(10):
        clock.advance(1.0)
        seen.append((s1.throttle, s1.weight))
    assert seen[:3] == [(10, 10), (20, 20), (30, 30)]
    assert seen[-1] == (100, 100)
    assert clock.getDelayedCalls() == []


def test_long_slowstart_takes_twenty_steps() -> None:
    """Over 100 s the share grows in 20 steps of 5 s."""
    _, s1, clock, _ = warming(slowstart=100.0)
    bounce(s1)
    clock.advance(4.9)
    assert s1.throttle == 1
    clock.advance(0.1)
    assert s1.throttle == 5
    clock.advance(45.0)
    assert s1.throttle == 50
    clock.advance(50.0)
    assert (s1.throttle, s1.weight) == (100, 100)


def test_weight_rounds_up_and_maxconn_down_with_at_least_one() -> None:
    """As HAProxy: the weight share rounds up, the connection limit down, neither below 1."""
    _, s1, clock, _ = warming(weight=3, maxconn=50, slowstart=10.0)
    bounce(s1)
    assert (s1.weight, s1.maxconn, s1.user_maxconn) == (1, 1, 50)
    clock.advance(5.0)
    assert (s1.throttle, s1.weight, s1.maxconn) == (50, 2, 25)
    clock.advance(5.0)
    assert (s1.weight, s1.maxconn) == (3, 50)


def test_warming_server_gets_its_share_of_round_robin() -> None:
    """While s1 is at 1% it gets about one connection in a hundred; at 50%, one in three; then half."""
    state, s1, clock, _ = warming(slowstart=10.0)
    bounce(s1)

    def share(picks: int) -> int:
        counts: Counter = Counter()
        for _ in range(picks):
            server = take(state)
            assert server is not None
            counts[server.name] += 1
            state.drop(server)
        return counts["s1"]

    assert share(1010) == 10
    clock.advance(5.0)
    assert share(1500) == 500
    clock.advance(5.0)
    assert share(1000) == 500


def test_static_algorithms_keep_the_weight_and_ramp_maxconn() -> None:
    """static-rr and map-based source hashing cannot change weights without reshuffling: only maxconn ramps there; consistent hashing ramps the weight."""
    for algorithm in ("static-rr", "source"):
        _, s1, clock, _ = warming(algorithm, weight=100, maxconn=40)
        bounce(s1)
        assert (s1.throttle, s1.weight, s1.maxconn) == (1, 100, 1), algorithm
        clock.advance(5.0)
        assert (s1.weight, s1.maxconn) == (100, 20), algorithm
    _, s1, _, _ = warming("source", weight=100, hash_type="consistent")
    bounce(s1)
    assert s1.weight == 1


def test_down_again_ends_the_warm_up_and_up_starts_over() -> None:
    """A server that fails while warming up loses its throttle and its pending step; coming back starts at 1% again."""
    _, s1, clock, _ = warming(slowstart=10.0)
    bounce(s1)
    clock.advance(6.0)
    s1.set_health(False)
    assert s1.throttle == 100 and clock.getDelayedCalls() == []
    s1.set_health(True)
    assert s1.throttle == 1


def test_leaving_maintenance_warms_up_but_leaving_drain_does_not() -> None:
    """maint -> ready starts a warm-up, as in HAProxy; drain -> ready does not (the server never left service); going into maintenance ends one."""
    _, s1, clock, _ = warming()
    s1.set_admin("drain")
    s1.set_admin("ready")
    assert s1.throttle == 100
    s1.set_admin("maint")
    s1.set_admin("ready")
    assert s1.throttle == 1
    s1.set_admin("maint")
    assert s1.throttle == 100 and clock.getDelayedCalls() == []


def test_no_slowstart_no_warm_up() -> None:
    """A server without slowstart comes back at full weight."""
    state, _, clock, _ = warming()
    s2 = state.server("s2")
    bounce(s2)
    assert s2.throttle == 100 and clock.getDelayedCalls() == []


def test_weight_set_while_warming_is_throttled_too() -> None:
    """A weight set at run time (runtime API, agent) is the user weight; the effective weight stays throttled until the end."""
    _, s1, clock, _ = warming(slowstart=10.0)
    bounce(s1)
    clock.advance(5.0)
    s1.set_weight(40)
    assert (s1.user_weight, s1.weight) == (40, 20)
    clock.advance(5.0)
    assert s1.weight == 40


def test_throttle_out_of_range_is_refused() -> None:
    """The throttle is a percentage from 1 to 100."""
    _, s1, _, _ = warming()
    for bad in (0, 101):
        with pytest.raises(ValueError):
            s1.set_throttle(bad)


def test_warmup_stop_when_idle_changes_nothing() -> None:
    """Stopping a warm-up that is not running leaves the server alone."""
    _, s1, clock, _ = warming()
    Warmup(s1, 10.0, clock).stop()
    assert s1.throttle == 100


CONFIG = """\
[global]
stats socket = /tmp/unused.sock

[frontend fe]
bind = 127.0.0.1:8080
default_backend = be

[backend be]
server s1 = 127.0.0.1:9001 weight 10 slowstart 20s
server s2 = 127.0.0.1:9002
"""


def service(text: str = CONFIG) -> BalancerService:
    """A service of C{text} on a L{Clock} (never started)."""
    from twisted.internet.testing import MemoryReactorClock

    return BalancerService(parse_config(text, "lb.ini"), MemoryReactorClock())


def test_service_warms_up_configured_servers_and_reports_it() -> None:
    """In a running configuration, a server with slowstart that comes back warms up; show stat has HAProxy's throttle column and the weights, show servers state the user weight."""
    svc = service()
    s1 = svc.backends["be"].server("s1")
    bounce(s1)
    svc.reactor.advance(10.0)
    rows = {(r["pxname"], r["svname"]): r for r in stat_rows(svc, svc.reactor.seconds())}
    row = rows[("be", "s1")]
    assert (row["throttle"], row["weight"], row["uweight"]) == ("50", "5", "10")
    assert rows[("be", "s2")]["throttle"] == ""
    state = AdminCommands(svc, svc.reactor).run("show servers state be").splitlines()
    assert state[2].split()[7:9] == ["10", "10"]
    svc.reactor.advance(10.0)
    rows = {(r["pxname"], r["svname"]): r for r in stat_rows(svc, svc.reactor.seconds())}
    assert (rows[("be", "s1")]["throttle"], rows[("be", "s1")]["weight"]) == ("", "10")


def test_reload_added_server_is_not_warmed_up() -> None:
    """A backend built by a reload is watched too; its servers start at full weight."""
    svc = service()
    assert svc.slowstart is not None
    spec_ = svc.config.backends[0]
    rebuilt: BackendState = svc.build_backend(spec_)
    s1 = rebuilt.server("s1")
    assert s1.throttle == 100
    bounce(s1)
    assert s1.throttle == 1


def test_workers_do_not_warm_up() -> None:
    """An nbproc worker runs no warm-up of its own: it takes the throttled weight the main process sends."""
    from twisted.internet.testing import MemoryReactorClock

    from l4lb.workers import child

    worker = child.WorkerService(parse_config(CONFIG, "lb.ini"), MemoryReactorClock(), {})
    assert worker.slowstart is None
    s1 = worker.backends["be"].server("s1")
    bounce(s1)
    assert s1.throttle == 100
    child.apply_server_state(worker, "be", "s1", True, "ready", 3, 0)
    assert s1.weight == 3
