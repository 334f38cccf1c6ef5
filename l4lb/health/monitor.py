"""
The health monitor: a service that runs the checks of every server.

It is a child of L{l4lb.service.BalancerService}: it starts and stops with
it.  Each checked server gets a L{l4lb.health.server.ServerHealth} with one
L{l4lb.health.loop.CheckLoop} per check; the first checks are spread
evenly over the shortest interval, so that servers are not probed at the
same instant, and the very first one runs at once.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed

from l4lb.health.build import tcp_checks
from l4lb.health.server import ConnectFailure, Emit, ServerHealth, log_line
from l4lb.pool import BackendState, Server

#: Makes the checks of one server: C{(backend, server, reactor)} to a
#: list of L{l4lb.interfaces.IHealthCheck} providers.
CheckBuilder = Callable[[BackendState, Server, Any], Sequence[Any]]

#: The builders used when none are given, by backend C{mode}.  A backend
#: whose mode has no builder gets no checks.
DEFAULT_BUILDERS: Dict[str, CheckBuilder] = {"tcp": tcp_checks}


class HealthMonitor(Service):
    """
    Runs the health and agent checks of the servers of some backends.

    @ivar servers: A L{ServerHealth} per server that has checks, in file
        order.
    @ivar connect_failures: Told, in turn, when a health check could not
        connect to its server (C{L4CON}, C{L4TOUT}): DNS discovery resolves
        the server's name again early (L{l4lb.dns.discovery}).
    """

    def __init__(
        self,
        backends: Iterable[BackendState],
        reactor: Any,
        builders: Optional[Mapping[str, CheckBuilder]] = None,
        spread_checks: int = 0,
        rng: Optional[random.Random] = None,
        emit: Emit = log_line,
    ) -> None:
        """
        @param backends: The backends whose servers are checked.
        @param reactor: Time and connections for the checks.
        @param builders: What makes each server's checks, by the C{mode}
            of its backend; by default L{DEFAULT_BUILDERS}.  This is where
            another transport plugs in its own checks.
        @param spread_checks: C{spread-checks}: jitter in percent, 0-50.
        @param rng: The source of jitter (inject a seeded one in tests).
        @param emit: Where health log lines go.
        """
        self.setName("health")
        self.reactor = reactor
        source = rng or random.Random()
        self._spread = spread_checks
        self._rng = source
        self._emit = emit
        self.servers: List[ServerHealth] = []
        self.connect_failures: List[ConnectFailure] = []
        self.builders = dict(DEFAULT_BUILDERS if builders is None else builders)
        for backend in backends:
            build = self.builders.get(backend.spec.mode)
            if build is None:
                continue
            for server in backend.servers:
                checks = list(build(backend, server, reactor))
                if checks:
                    self.servers.append(
                        ServerHealth(
                            server, backend, reactor, checks, spread_checks, source, emit,
                            self._connect_failed,
                        )
                    )

    @property
    def spread_checks(self) -> int:
        """
        C{spread-checks}: the jitter, in percent, given to the checks of
        the servers watched from now on.
        """
        return self._spread

    @spread_checks.setter
    def spread_checks(self, percent: int) -> None:
        self._spread = percent

    def watch(
        self,
        backend: BackendState,
        server: Server,
        prepare: Optional[Callable[[ServerHealth], None]] = None,
    ) -> Optional[ServerHealth]:
        """
        Start checking C{server} of C{backend} (built by a reload): its
        initial state is set and, while the monitor runs, its loops start
        at once.

        @param prepare: Called with the new L{ServerHealth} before its
            initial state is set (a reload gives it the check history of
            the server it replaces there).
        @return: Its L{ServerHealth}, or C{None} when it has no checks.
        """
        build = self.builders.get(backend.spec.mode)
        checks = list(build(backend, server, self.reactor)) if build is not None else []
        if not checks:
            return None
        health = ServerHealth(
            server, backend, self.reactor, checks, self._spread, self._rng, self._emit,
            self._connect_failed,
        )
        self.servers.append(health)
        if prepare is not None:
            prepare(health)
        if self.running:
            health.begin()
            for loop in health.loops:
                loop.start(0.0)
        return health

    def unwatch(self, server: Server) -> "Deferred[Any]":
        """
        Stop checking C{server} (removed by a reload, or about to be
        watched again with new check settings).  Its state is left as it
        is.

        @return: A L{Deferred} that fires once no check of it is in
            progress.
        """
        stopping = [health.stop() for health in self.servers if health.server is server]
        self.servers = [health for health in self.servers if health.server is not server]
        return DeferredList(stopping, consumeErrors=True)

    def _connect_failed(self, backend: BackendState, server: Server) -> None:
        for listener in list(self.connect_failures):
            listener(backend, server)

    def find(self, backend: str, server: str) -> ServerHealth:
        """
        The L{ServerHealth} of C{backend/server}.

        @raise KeyError: When that server has no checks.
        """
        for health in self.servers:
            if health.backend.name == backend and health.server.name == server:
                return health
        raise KeyError(f"{backend}/{server}")

    def start_offsets(self) -> List[float]:
        """
        When each loop (in the order of L{ServerHealth.loops}, server by
        server) runs first: the shortest interval divided evenly among all
        of them, the first at once.
        """
        intervals: List[float] = []
        for health in self.servers:
            if health.check_loop is not None and health.check_enabled:
                intervals.append(health.base_check_interval())
            if health.agent_loop is not None:
                intervals.append(health.base_agent_interval())
        if not intervals:
            return []
        shortest = min(intervals)
        count = len(intervals)
        return [shortest * index / count for index in range(count)]

    def startService(self) -> None:
        """
        Set each server's initial state and start the checks.
        """
        super().startService()
        for health in self.servers:
            health.begin()
        offsets = iter(self.start_offsets())
        for health in self.servers:
            for loop in health.loops:
                loop.start(next(offsets))

    def stopService(self) -> "Deferred[Any]":
        """
        Stop every check, cancelling those in progress.

        @return: A L{Deferred} that fires once none is in progress.
        """
        super().stopService()
        if not self.servers:
            return succeed(None)
        return DeferredList([health.stop() for health in self.servers], consumeErrors=True)
