"""
A periodic job that cannot die and never overlaps itself.

A L{twisted.internet.task.LoopingCall} stops for good the first time its
function raises, and starts the next run on schedule even if the previous
one has not finished.  L{CheckLoop} instead waits for each run to finish
(its L{Deferred} to fire) and only then schedules the next one, so a check
that outlasts its interval delays the next check rather than running
beside it; and it catches and logs whatever a run raises or fails with, so
that one broken check never stops a server's checks.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger(namespace="l4lb")

#: Seconds to wait before the next run when the interval itself cannot be
#: computed.
FALLBACK_INTERVAL = 2.0


class CheckLoop:
    """
    Runs C{job} on C{clock}, waiting C{interval()} after each run ends.

    @ivar name: Used in log messages (C{"check of be/s1"}).
    @ivar runs: Runs started so far.
    @ivar errors: Runs that raised or failed.
    """

    def __init__(
        self,
        clock: IReactorTime,
        job: Callable[[], Any],
        interval: Callable[[], float],
        name: str = "job",
    ) -> None:
        """
        @param job: Called for each run; may return a L{Deferred}, and the
            next run waits for it.
        @param interval: Called after each run for the seconds until the
            next one.
        """
        self.clock = clock
        self.job = job
        self.interval = interval
        self.name = name
        self.runs = 0
        self.errors = 0
        self._call: Optional[IDelayedCall] = None
        self._current: Optional[Deferred[Any]] = None
        self._stopped = True
        self._soon: Optional[float] = None
        self._waiting: List[Deferred[None]] = []

    @property
    def running(self) -> bool:
        """
        Whether the loop is started (and not stopped).
        """
        return not self._stopped

    @property
    def busy(self) -> bool:
        """
        Whether a run is in progress now.
        """
        return self._current is not None

    def next_run(self) -> Optional[float]:
        """
        When the next run is due (clock seconds), or C{None} while a run is
        in progress or the loop is stopped.
        """
        if self._call is None or not self._call.active():
            return None
        return float(self._call.getTime())

    def start(self, delay: float = 0.0) -> None:
        """
        Start: the first run happens after C{delay} seconds.
        """
        if not self._stopped:
            return
        self._stopped = False
        self._schedule(delay)

    def _schedule(self, delay: float) -> None:
        self._call = self.clock.callLater(max(0.0, delay), self._fire)

    def _fire(self) -> None:
        self._call = None
        self.runs += 1
        d = maybeDeferred(self.job)
        self._current = d
        d.addErrback(self._failed)
        d.addBoth(self._finished)

    def _failed(self, failure: Failure) -> None:
        if failure.check(CancelledError) and self._stopped:
            return
        self.errors += 1
        _log.failure("l4lb: the {name} failed; it runs again as scheduled", failure, name=self.name)

    def _finished(self, _: object) -> None:
        self._current = None
        if self._stopped:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)
            return
        try:
            delay = float(self.interval())
        except Exception:
            _log.failure("l4lb: cannot compute the interval of the {name}", name=self.name)
            delay = FALLBACK_INTERVAL
        if self._soon is not None:
            delay = min(delay, self._soon)
            self._soon = None
        self._schedule(delay)

    def run_within(self, delay: float) -> None:
        """
        Make the next run happen no later than C{delay} seconds from now
        (or from the end of the run in progress).
        """
        if self._stopped:
            return
        call = self._call
        if call is not None and call.active():
            if call.getTime() > self.clock.seconds() + delay:
                call.reset(max(0.0, delay))
        else:
            self._soon = delay if self._soon is None else min(self._soon, delay)

    def stop(self) -> "Deferred[None]":
        """
        Stop: cancel the next run and the run in progress.

        @return: A L{Deferred} that fires once no run is in progress.
        """
        self._stopped = True
        self._soon = None
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        current = self._current
        if current is None:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._waiting.append(waiting)
        current.cancel()
        return waiting
