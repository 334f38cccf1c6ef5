"""
The health of one server: its check loops, its state machine, and what
a change of state does to the server, its sessions and the log.

Every change of the server's health goes through
L{l4lb.pool.Server.set_health}, so the balancer and the backend's listeners
hear of it; administrative changes asked by an agent go through
L{l4lb.pool.Server.set_admin}, weights through C{set_weight}.
"""

from __future__ import annotations

import random
from typing import Any, Callable, List, Optional, Sequence, Tuple

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from l4lb.health import messages
from l4lb.health.actions import in_service, marked
from l4lb.health.loop import CheckLoop
from l4lb.health.observe import PassiveObserver
from l4lb.health.state import HealthState
from l4lb.health.status import HANA, INI, L4CON, L4TOUT, UNK, CheckResult
from l4lb.interfaces import IHealthCheck
from l4lb.pool import BackendState, Server
from l4lb.tcp.phases import kill as kill_session

_log = Logger(namespace="l4lb")

#: Emits one health log line: C{(level, text)} with level C{"info"},
#: C{"warn"} or C{"critical"}.
Emit = Callable[[str, str], None]

#: Told that a health check of C{(backend, server)} could not connect.
ConnectFailure = Callable[[BackendState, Server], None]

#: The check statuses of a connection that could not be made: the server's
#: address may have moved (HAProxy then asks its resolvers again).
CONNECT_FAILURES = frozenset({L4CON, L4TOUT})


def log_line(level: str, text: str) -> None:
    """
    Send a health log line to L{twisted.logger}, in the C{l4lb} namespace.
    """
    getattr(_log, level)("{message}", message=text)


def shutdown_sessions(server: Server, first: str) -> int:
    """
    Close every open session of C{server} at once, logged with C{first}
    as the first character of the termination state (C{D}: the server
    went down, C{U}: an active server came back, C{K}: an administrator
    shut them) and the phase as the second (L{l4lb.tcp.phases.killed}).

    @return: How many sessions were closed.
    """
    sessions = list(server.sessions)
    for session in sessions:
        kill_session(session, first)
    return len(sessions)


class ServerHealth:
    """
    Checks one server and applies the outcomes.

    @ivar server: The server.
    @ivar backend: Its backend.
    @ivar check: Its health check, or C{None}.
    @ivar agent: Its agent check, or C{None}.
    @ivar state: The health state machine (with a health check), or
        C{None}.
    @ivar agent_up: Whether the agent lets the server be UP (it said
        C{down} last, or not).
    @ivar check_loop: The loop of the health check, or C{None}.
    @ivar check_enabled: Whether the health check runs (C{disable health}
        stops it; the server then counts as UP unless its agent says
        DOWN).
    @ivar agent_loop: The loop of the agent check, or C{None}.
    @ivar on_connect_failure: Told when a health check could not connect
        (L{CONNECT_FAILURES}), or C{None}.
    """

    def __init__(
        self,
        server: Server,
        backend: BackendState,
        clock: IReactorTime,
        checks: Sequence[Any],
        spread_checks: int = 0,
        rng: Optional[random.Random] = None,
        emit: Emit = log_line,
        on_connect_failure: Optional[ConnectFailure] = None,
    ) -> None:
        """
        @param checks: The server's L{IHealthCheck} providers: at most one
            of each C{kind}.
        @param spread_checks: Up to this percentage of the interval is
            added or taken away at random before each check.
        @param rng: The source of that jitter.
        @param emit: Where log lines go.
        @param on_connect_failure: Told when a health check could not
            connect.
        """
        self.server = server
        self.backend = backend
        self.clock = clock
        self.spec = server.spec
        self.spread = spread_checks
        self.rng = rng or random.Random()
        self.emit = emit
        self.on_connect_failure = on_connect_failure
        self.log_checks = backend.spec.log_health_checks
        self.check: Optional[Any] = None
        self.agent: Optional[Any] = None
        for candidate in checks:
            if not IHealthCheck.providedBy(candidate):
                raise TypeError(f"{candidate!r} does not provide IHealthCheck")
            if candidate.kind == "agent":
                self.agent = candidate
            else:
                self.check = candidate
        self.state: Optional[HealthState] = None
        self.agent_up = True
        self.check_loop: Optional[CheckLoop] = None
        self.agent_loop: Optional[CheckLoop] = None
        self.check_enabled = True
        self._stopping = False
        self._last_check = INI
        self._last_agent = INI
        label = f"{backend.name}/{server.name}"
        if self.check is not None:
            self.state = HealthState(self.spec.rise, self.spec.fall, self.spec.init_state)
            self.check_loop = CheckLoop(
                clock, self._run_check, self.check_interval, f"health check of server {label}"
            )
        if self.agent is not None:
            self.agent_loop = CheckLoop(
                clock, self._run_agent, self.agent_interval, f"agent check of server {label}"
            )

    @property
    def loops(self) -> List[CheckLoop]:
        """
        The server's check loops that run while the monitor runs (the
        health check's only while enabled).
        """
        check = self.check_loop if self.check_enabled else None
        return [loop for loop in (check, self.agent_loop) if loop is not None]

    def set_check_enabled(self, enabled: bool) -> None:
        """
        Resume (C{enable health}: at once) or stop (C{disable health}) the
        health check, and settle the server's health on what the checks in
        effect say: without the health check, UP unless the agent says
        DOWN; with it, its last verdict.

        @raise KeyError: When the server has no health check.
        """
        loop = self.check_loop
        if loop is None:
            raise KeyError(f"{self.backend.name}/{self.server.name}")
        if enabled == self.check_enabled:
            return
        self.check_enabled = enabled
        if enabled:
            if not self._stopping:
                loop.start(0.0)
        else:
            loop.stop()
        self.server.health_text = self.health_text()
        self._settle(None)

    def verdict(self) -> bool:
        """
        Whether the checks in effect let the server be UP: the health
        check's state (while enabled) and the agent's word.
        """
        checked = self.state is None or not self.check_enabled or self.state.up
        return checked and self.agent_up

    # -- life --------------------------------------------------------------

    def begin(self) -> None:
        """
        Put the server in its initial state (C{init-state}) and attach the
        passive observer; the loops are started by the monitor.
        """
        self._stopping = False
        server = self.server
        server.last_change = self.clock.seconds()
        if self.check is not None:
            server.check_status = INI
        if self.agent is not None:
            server.agent_status = INI
        server.health_text = self.health_text()
        if self.state is not None and self.spec.observe == "layer4":
            server.observer = PassiveObserver(
                self.spec.error_limit, self.clock, self.passive_limit_reached
            )
        if self.state is not None and self.check_enabled and not self.state.up and server.up:
            server.set_health(False)

    def stop(self) -> "Deferred[Any]":
        """
        Stop the loops (cancelling checks in progress) and detach the
        passive observer.
        """
        from twisted.internet.defer import DeferredList

        self._stopping = True
        if self.server.observer is not None:
            self.server.observer = None
        every = [loop for loop in (self.check_loop, self.agent_loop) if loop is not None]
        return DeferredList([loop.stop() for loop in every], consumeErrors=True)

    # -- intervals ---------------------------------------------------------

    def base_check_interval(self) -> float:
        """
        The health check interval for the current state, before jitter.
        """
        spec = self.spec
        if self.state is None:
            return spec.inter
        return self.state.interval(spec.inter, spec.fastinter, spec.downinter)

    def base_agent_interval(self) -> float:
        """
        The agent check interval, before jitter.
        """
        return self.spec.agent_inter or self.spec.inter

    def jitter(self, interval: float) -> float:
        """
        Add C{spread-checks} jitter: a uniform random amount within plus or
        minus C{spread_checks}% of C{interval}.
        """
        if self.spread <= 0:
            return interval
        spread = interval * self.spread / 100.0
        return interval + spread - 2.0 * spread * self.rng.random()

    def check_interval(self) -> float:
        """
        Seconds until the next health check.
        """
        return self.jitter(self.base_check_interval())

    def agent_interval(self) -> float:
        """
        Seconds until the next agent check.
        """
        return self.jitter(self.base_agent_interval())

    # -- running checks ----------------------------------------------------

    def _run(self, check: Any, addr: Optional[str], apply: Callable[[CheckResult], None]) -> Any:
        if self.server.address is None and addr is None:
            return None
        started = self.clock.seconds()
        d = maybeDeferred(check.run)
        d.addErrback(self._raised, check.kind, started)
        d.addCallback(apply)
        return d

    def _run_check(self) -> Any:
        if self.server.admin == "maint" or not self.check_enabled:
            return None
        assert self.check is not None
        return self._run(self.check, self.spec.check_addr, self.apply_check)

    def _run_agent(self) -> Any:
        assert self.agent is not None
        return self._run(self.agent, self.spec.agent_addr, self.apply_agent)

    def _raised(self, failure: Failure, kind: str, started: float) -> Any:
        if failure.check(CancelledError):
            return failure
        what = "agent check" if kind == "agent" else "health check"
        _log.failure(
            "l4lb: the {what} of server {backend}/{server} raised; it counts as failed",
            failure,
            what=what,
            backend=self.backend.name,
            server=self.server.name,
        )
        error = failure.value
        return CheckResult(
            UNK,
            f"the check raised {type(error).__name__}: {error}",
            self.clock.seconds() - started,
        )

    # -- outcomes ----------------------------------------------------------

    def health_text(self) -> str:
        """
        The health as the stats show it (see L{Server.health_text}).
        """
        if self.agent is not None and not self.agent_up:
            return "DOWN (agent)"
        if self.state is not None and not self.check_enabled:
            return "no check"
        if self.state is not None:
            return self.state.text()
        return "UP"

    def apply_check(self, result: CheckResult) -> None:
        """
        Record a health check's result and act on any change of state.
        """
        state = self.state
        assert state is not None
        server = self.server
        server.check_status = result.status
        server.check_duration = result.duration
        server.check_desc = result.description
        before = state.counts()
        if not result.ok and state.health > 0:
            server.failed_checks += 1
        state.record(result.ok)
        moved = state.counts() != before
        if self.log_checks and (moved or result.status != self._last_check):
            done, of, word = state.counts()
            self.emit(
                "info",
                messages.check_report(
                    "check", self.backend.name, server.name, self.spec.backup, result, done, of, word
                ),
            )
        self._last_check = result.status
        server.health_text = self.health_text()
        self._settle(result)
        if result.status in CONNECT_FAILURES and self.on_connect_failure is not None:
            self.on_connect_failure(self.backend, server)

    def apply_agent(self, result: CheckResult) -> None:
        """
        Record an agent check's result and apply what the agent said.
        """
        server = self.server
        server.agent_status = result.status
        server.agent_duration = result.duration
        server.agent_desc = result.description
        reply = result.agent
        was_up = self.agent_up
        if reply is not None and reply.health is not None:
            self.agent_up = reply.health == "up"
        if self.log_checks and (self.agent_up != was_up or result.status != self._last_agent):
            up = 1 if self.agent_up else 0
            self.emit(
                "info",
                messages.check_report(
                    "agent",
                    self.backend.name,
                    server.name,
                    self.spec.backup,
                    result,
                    up,
                    1,
                    "UP" if self.agent_up else "DOWN",
                ),
            )
        self._last_agent = result.status
        if reply is not None:
            if reply.weight_percent is not None:
                weight = (self.spec.weight * reply.weight_percent + 50) // 100
                server.set_weight(min(256, weight))
            if reply.weight is not None:
                server.set_weight(reply.weight)
            if reply.maxconn is not None:
                server.set_maxconn(reply.maxconn)
            if reply.admin is not None and reply.admin != server.admin:
                self._admin(reply.admin, "agent")
        server.health_text = self.health_text()
        self._settle(result)

    def passive_limit_reached(self, errors: int) -> None:
        """
        C{error-limit} consecutive connection errors on live traffic: act
        as C{on-error} says.
        """
        if self._stopping or self.state is None:
            return
        self.server.failed_hana += 1
        spec = self.spec
        if spec.fastinter is not None and self.check_loop is not None:
            self.check_loop.run_within(spec.fastinter)
        if spec.on_error == "fastinter":
            return
        if spec.on_error == "sudden-death":
            self.state.sudden_death()
        elif spec.on_error == "mark-down":
            self.state.mark_down()
        self.apply_check(
            CheckResult(
                HANA,
                f"Detected {errors} consecutive errors, last one was: L4 unsuccessful connection",
            )
        )

    # -- consequences ------------------------------------------------------

    def _usable(self) -> Tuple[int, int]:
        active = backup = 0
        for other in self.backend.servers:
            if other.eligible:
                if other.spec.backup:
                    backup += 1
                else:
                    active += 1
        return active, backup

    def _settle(self, result: Optional[CheckResult]) -> None:
        up = self.verdict()
        if up == self.server.up:
            return
        if up:
            self._mark_up(result)
        else:
            self._mark_down(result)

    def _mark_down(self, result: Optional[CheckResult]) -> None:
        server = self.server
        had_any = sum(self._usable()) > 0
        now = self.clock.seconds()
        before = in_service(server)
        server.set_health(False)
        server.down_transitions += 1
        server.last_change = now
        marked(server, before)
        active, backup = self._usable()
        self.emit(
            "warn",
            messages.server_down(
                self.backend.name, server.name, self.spec.backup, result, active, backup, server.current
            ),
        )
        if had_any and active + backup == 0:
            self.emit("critical", messages.no_server(self.backend.name))

    def _mark_up(self, result: Optional[CheckResult]) -> None:
        server = self.server
        now = self.clock.seconds()
        before = in_service(server)
        server.set_health(True)
        server.down_time += now - server.last_change
        server.last_change = now
        marked(server, before)
        active, backup = self._usable()
        self.emit(
            "warn",
            messages.server_up(self.backend.name, server.name, self.spec.backup, result, active, backup),
        )

    def _admin(self, admin: str, cause: str) -> None:
        server = self.server
        old = server.admin
        had_any = sum(self._usable()) > 0
        before = in_service(server)
        server.set_admin(admin, cause)
        marked(server, before)
        active, backup = self._usable()
        self.emit(
            "warn",
            messages.admin_change(
                self.backend.name,
                server.name,
                self.spec.backup,
                old,
                admin,
                cause,
                active,
                backup,
                server.current,
            ),
        )
        if had_any and active + backup == 0:
            self.emit("critical", messages.no_server(self.backend.name))
