"""
C{slowstart}: a server that comes back is given a growing share of its
weight and C{maxconn} instead of its full share at once.

As in HAProxy, the share grows linearly from 1% to 100% over the
C{slowstart} time, in steps of at least a second (a twentieth of the
time when that is longer); it starts when a server goes UP after being
DOWN or leaves maintenance, never when l4lb starts.  The share is applied
by L{l4lb.pool.Server.set_throttle}, so the balancer and the backend's
listeners (queues, workers, statistics) hear of every step.

L{SlowStart} follows a backend's servers (as one of its listeners) and
runs a L{Warmup} for each that comes back.  Only the process that checks
the servers does: C{nbproc} workers are sent the throttled weights.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.internet.interfaces import IDelayedCall

from l4lb.pool import BackendState, Server

#: The shortest time between two steps, in seconds.
MIN_STEP = 1.0
#: The most steps over a C{slowstart} time.
STEPS = 20


class Warmup:
    """
    The C{slowstart} of one server.

    @ivar server: The server.
    @ivar duration: The C{slowstart} time, in seconds (more than 0).
    @ivar clock: An L{IReactorTime} for the steps.
    @ivar started: When the current warm-up began, or C{None} when the
        server is not warming up.
    """

    def __init__(self, server: Server, duration: float, clock: Any) -> None:
        self.server = server
        self.duration = duration
        self.clock = clock
        self.started: Optional[float] = None
        self._call: Optional[IDelayedCall] = None

    @property
    def step(self) -> float:
        """
        Seconds between two steps.
        """
        return max(MIN_STEP, self.duration / STEPS)

    def start(self) -> None:
        """
        Begin (or begin again) at 1% of the server's weight and C{maxconn}.
        """
        self._cancel()
        self.started = self.clock.seconds()
        self._apply()

    def stop(self) -> None:
        """
        End the warm-up: the server has its full share again (used when it
        goes down or into maintenance, and when l4lb stops).
        """
        self._cancel()
        if self.started is not None:
            self.started = None
            if self.server.throttle != 100:
                self.server.set_throttle(100)

    def _apply(self) -> None:
        self._call = None
        started = self.started
        if started is None:
            return
        elapsed = self.clock.seconds() - started
        if elapsed >= self.duration or elapsed < 0:
            self.stop()
            return
        percent = max(1, int(100 * elapsed / self.duration))
        if self.server.throttle != percent:
            self.server.set_throttle(percent)
        delay = min(self.step, self.duration - elapsed)
        self._call = self.clock.callLater(delay, self._apply)

    def _cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()


class SlowStart:
    """
    Starts and stops the warm-ups of the servers of the backends it
    watches, on their transitions: into service (UP and not in
    maintenance) starts one when the server has a C{slowstart}, out of
    service ends it.

    @ivar clock: An L{IReactorTime} for the warm-ups.
    @ivar warmups: The L{Warmup} of each server that warmed up once.
    """

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.warmups: Dict[Server, Warmup] = {}
        self._in_service: Dict[Server, bool] = {}

    def watch(self, backend: BackendState) -> None:
        """
        Follow C{backend}'s servers from their current state on.
        """
        for server in backend.servers:
            self._in_service[server] = _in_service(server)
        backend.listeners.append(self.changed)

    def unwatch(self, backend: BackendState) -> None:
        """
        Stop following C{backend} (a reload replaced it) and end the
        warm-ups of its servers.
        """
        if self.changed in backend.listeners:
            backend.listeners.remove(self.changed)
        for server in backend.servers:
            self._in_service.pop(server, None)
            warmup = self.warmups.pop(server, None)
            if warmup is not None:
                warmup.stop()

    def follow(self, server: Server) -> None:
        """
        Follow C{server}, added at run time to a watched backend, from its
        current state on.
        """
        self._in_service[server] = _in_service(server)

    def forget(self, server: Server) -> None:
        """
        Stop following C{server}, removed at run time, and end its warm-up.
        """
        self._in_service.pop(server, None)
        warmup = self.warmups.pop(server, None)
        if warmup is not None:
            warmup.stop()

    def changed(self, server: Server) -> None:
        """
        A server of a watched backend changed (a backend listener).
        """
        now = _in_service(server)
        # A server added by a reload is first seen here: not a transition.
        before = self._in_service.get(server, now)
        self._in_service[server] = now
        if now == before:
            return
        warmup = self.warmups.get(server)
        if not now:
            if warmup is not None:
                warmup.stop()
            return
        duration = server.spec.slowstart
        if duration <= 0:
            return
        if warmup is None:
            warmup = self.warmups[server] = Warmup(server, duration, self.clock)
        warmup.duration = duration
        warmup.start()


def _in_service(server: Server) -> bool:
    """
    Whether C{server} counts as in service for C{slowstart}: UP and not in
    maintenance (a drained server that is made ready again does not warm
    up, as in HAProxy).
    """
    return server.up and server.admin != "maint"
