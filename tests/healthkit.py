"""
Building blocks for health check tests: a scripted check whose results the
test decides, and a backend with a monitor on a L{Clock}.
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Sequence, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from l4lb.balancers import find_factory
from l4lb.config.model import Backend, ServerSpec, Timeouts
from l4lb.health.monitor import HealthMonitor
from l4lb.health.status import L4CON, L4OK, CheckResult
from l4lb.interfaces import IHealthCheck
from l4lb.pool import BackendState, Server

PASS = CheckResult(L4OK, "", 0.0)
REFUSED = CheckResult(L4CON, "Connection refused", 0.0)


@implementer(IHealthCheck)
class ScriptedCheck:
    """
    A check whose outcome is chosen by the test.

    By default each run answers at once with L{outcome}; with C{manual}
    set, each run returns a pending L{Deferred} kept in L{pending}.

    @ivar outcome: The result (or an exception to raise) of the next runs.
    @ivar runs: The clock time of each run.
    @ivar pending: The unfinished runs (C{manual} mode).
    """

    timeout = 1.0

    def __init__(self, clock: Clock, kind: str = "check", manual: bool = False) -> None:
        self.clock = clock
        self.kind = kind
        self.manual = manual
        self.outcome: Any = PASS
        self.runs: List[float] = []
        self.pending: List[Deferred[CheckResult]] = []
        self.cancelled = 0

    def run(self) -> "Deferred[CheckResult]":
        self.runs.append(self.clock.seconds())
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if self.manual:
            d: Deferred[CheckResult] = Deferred(lambda _: self._cancelled())
            self.pending.append(d)
            return d
        return succeed(self.outcome)

    def _cancelled(self) -> None:
        self.cancelled += 1

    def answer(self, result: CheckResult = PASS) -> None:
        """
        Finish the oldest pending run with C{result}.
        """
        self.pending.pop(0).callback(result)


def spec(name: str = "s1", index: int = 1, **options: Any) -> ServerSpec:
    """
    A checked server on 127.0.10.N:80 (never connected to).
    """
    options.setdefault("check", True)
    return ServerSpec(
        name=name, host=f"127.0.10.{index}", port=80, address=f"127.0.10.{index}", **options
    )


class Checked:
    """
    A backend whose servers are checked by L{ScriptedCheck}s on a L{Clock}.

    @ivar clock: Drives time.
    @ivar backend: The L{BackendState}.
    @ivar checks: The health check of each server, by name.
    @ivar agents: The agent check of each server with C{agent_check}.
    @ivar lines: Every health log line as C{(level, text)}.
    @ivar monitor: The L{HealthMonitor} (not started).
    """

    def __init__(
        self,
        servers: Sequence[ServerSpec],
        manual: bool = False,
        spread_checks: int = 0,
        seed: int = 4,
        log_health_checks: bool = False,
        name: str = "be",
    ) -> None:
        self.clock = Clock()
        backend_spec = Backend(
            name=name,
            servers=tuple(servers),
            timeouts=Timeouts(connect=1.0),
            log_health_checks=log_health_checks,
        )
        self.backend = BackendState(backend_spec, find_factory("roundrobin"))
        self.checks: Dict[str, ScriptedCheck] = {}
        self.agents: Dict[str, ScriptedCheck] = {}
        self.lines: List[Tuple[str, str]] = []

        def build(backend: BackendState, server: Server, reactor: Any) -> List[Any]:
            made: List[Any] = []
            if server.spec.check:
                made.append(self.checks.setdefault(server.name, ScriptedCheck(self.clock, manual=manual)))
            if server.spec.agent_check:
                made.append(self.agents.setdefault(server.name, ScriptedCheck(self.clock, "agent")))
            return made

        self.monitor = HealthMonitor(
            [self.backend],
            self.clock,
            builders={"tcp": build},
            spread_checks=spread_checks,
            rng=random.Random(seed),
            emit=lambda level, text: self.lines.append((level, text)),
        )

    def server(self, name: str) -> Server:
        """
        The server called C{name}.
        """
        return self.backend.server(name)

    def start(self) -> "Checked":
        """
        Start the monitor.
        """
        self.monitor.startService()
        return self

    def advance_to(self, when: float) -> None:
        """
        Move the clock to C{when}, stopping at each timer on the way so that
        each fires at its own time.
        """
        for _ in range(1_000_000):
            due = [c.getTime() for c in self.clock.getDelayedCalls() if c.active()]
            if not due or min(due) > when:
                break
            self.clock.advance(max(0.0, min(due) - self.clock.seconds()))
        else:
            raise AssertionError("timers keep firing without time passing")
        if when > self.clock.seconds():
            self.clock.advance(when - self.clock.seconds())

    def record_changes(self) -> List[Tuple[float, str, bool]]:
        """
        Start recording each change of a server's health as C{(time,
        name, up)}; the returned list fills as time passes.
        """
        changes: List[Tuple[float, str, bool]] = []
        last = {s.name: s.up for s in self.backend.servers}

        def listener(server: Server) -> None:
            if last[server.name] != server.up:
                last[server.name] = server.up
                changes.append((self.clock.seconds(), server.name, server.up))

        self.backend.listeners.append(listener)
        return changes

    def texts(self) -> List[str]:
        """
        The log lines' texts.
        """
        return [text for _, text in self.lines]
