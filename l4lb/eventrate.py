"""
Events per second, as HAProxy's statistics count new sessions: the
C{rate} column is the number of events over the last elapsed second, the
C{rate_max} column the most ever counted within one second of the clock.

The count is kept per whole second of the clock: the current second's
events and the previous second's.  Reading it mid-second weighs the
previous second by the part of it still inside the last elapsed second, so
that the rate does not drop to zero at each second's start.
"""

from __future__ import annotations

import math


class EventRate:
    """
    Counts events per second of the clock.

    @ivar max: The most events counted within one second of the clock.
    """

    __slots__ = ("_second", "_current", "_previous", "max")

    def __init__(self) -> None:
        self._second = -1
        self._current = 0
        self._previous = 0
        self.max = 0

    def _roll(self, second: int) -> None:
        # The second before the one starting now: what was counted, or
        # nothing when more than a second passed without an event.
        self._previous = self._current if second == self._second + 1 else 0
        self._current = 0
        self._second = second

    def hit(self, now: float) -> None:
        """
        Count one event at clock time C{now}.
        """
        second = math.floor(now)
        if second != self._second:
            self._roll(second)
        self._current += 1
        if self._current > self.max:
            self.max = self._current

    def rate(self, now: float) -> int:
        """
        Events over the last elapsed second at clock time C{now}: this
        second's, and the share of the previous second's that falls within
        the last second (rounded up, so that a single event still shows).
        """
        second = math.floor(now)
        if second == self._second:
            previous, current = self._previous, self._current
        elif second == self._second + 1:
            previous, current = self._current, 0
        else:
            return 0
        remaining = 1.0 - (now - second)
        return current + math.ceil(previous * remaining - 1e-9)

    def clear(self) -> None:
        """
        Forget the maximum (C{clear counters}).
        """
        self.max = 0
