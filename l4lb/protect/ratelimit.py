"""
C{rate-limit sessions N}: a frontend accepts at most N new connections in
each second of the clock.

As in HAProxy, connections over the rate are not refused: the frontend's
listening ports stop accepting until the next second begins, and the
connections wait in the kernel's accept backlog meanwhile.  The limit plugs
into the frontend's L{l4lb.tcp.limits.Gate}, which pauses and resumes the
ports.
"""

from __future__ import annotations

import math
from typing import Any, Callable


class SessionRate:
    """
    Counts a frontend's new connections per second of the clock.

    @ivar limit: New connections allowed per second.
    @ivar clock: What tells the time and schedules the wake-up
        (C{seconds}, C{callLater}).
    @ivar wake: Called when a new second begins after the limit was
        reached (the gate's C{update}).
    """

    def __init__(self, clock: Any, limit: int, wake: Callable[[], None]) -> None:
        self.clock = clock
        self.limit = limit
        self.wake = wake
        self._second = -1
        self._count = 0
        self._timer: Any = None

    def free(self) -> int:
        """
        Connections that may still be accepted in the current second.
        """
        second = math.floor(self.clock.seconds())
        if second != self._second:
            self._second = second
            self._count = 0
        return self.limit - self._count

    def count(self) -> None:
        """
        Count one accepted connection; at the limit, schedule the wake-up
        for the start of the next second.
        """
        self.free()
        self._count += 1
        if self._count >= self.limit and self._timer is None:
            delay = max(0.0, self._second + 1 - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._next_second)

    def stop(self) -> None:
        """
        Cancel the pending wake-up (the frontend stops).
        """
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _next_second(self) -> None:
        self._timer = None
        if self.free() <= 0:
            # The timer fired a hair early for the clock: wait a little more.
            self._timer = self.clock.callLater(0.001, self._next_second)
            return
        self.wake()
