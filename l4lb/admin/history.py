"""
A short history of the statistics, kept in memory for the HTML page's
trends: every L{INTERVAL} seconds, for each frontend, backend and server,
its session rate over the interval, its current sessions and its errors
in the interval.  The last L{POINTS} samples are kept (15 minutes).

Memory is bounded and small: each object has one C{array('f')} of
C{3 * POINTS} floats used as a ring (all objects share the write
position, since they are sampled together) and one C{array('d')} of the
two cumulative counters the next sample subtracts.  An object that is no
longer in the statistics (a reload removed it) is forgotten at the next
sample.  A value not known (before the object existed, or the first
sample of a counter) is C{NaN}, which the sparklines leave out.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from l4lb.admin.stats import Row

_log = Logger(namespace="l4lb")

#: Seconds between two samples.
INTERVAL = 5.0
#: Samples kept per series: 15 minutes.
POINTS = 180
#: The series of each object, in their order in its buffer.
SERIES = ("rate", "scur", "errors")

#: The columns whose increase counts as errors: request, connection and
#: response errors.
_ERRORS = ("ereq", "econ", "eresp")

Key = Tuple[str, str]


def _number(row: Row, name: str) -> float:
    text = row.get(name, "")
    return float(text) if text.isdigit() else 0.0


def _increase(now: float, before: float) -> float:
    """
    How much a cumulative counter grew; after C{clear counters} (it went
    back), what it counted since.
    """
    return now - before if now >= before else now


class StatsHistory(Service):
    """
    Samples statistics rows on a clock and keeps the last L{POINTS}
    samples of each object.

    @ivar clock: The clock sampling runs on (C{IReactorTime}).
    @ivar read_rows: Reads every statistics row now
        (L{l4lb.admin.stats.stat_rows}).
    @ivar interval: Seconds between samples.
    @ivar points: Samples kept per series.
    @ivar samples: Samples taken since start.
    """

    def __init__(
        self,
        clock: Any,
        read_rows: Callable[[], Iterable[Row]],
        interval: float = INTERVAL,
        points: int = POINTS,
    ) -> None:
        self.clock = clock
        self.read_rows = read_rows
        self.interval = interval
        self.points = points
        self.samples = 0
        self._head = 0
        self._values: Dict[Key, "array[float]"] = {}
        self._totals: Dict[Key, "array[float]"] = {}
        self._loop: Optional[LoopingCall] = None

    def startService(self) -> None:
        """
        Take a sample now and every L{interval} seconds.
        """
        super().startService()
        loop = LoopingCall.withCount(self.sample_safely)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.interval, now=True)

    def stopService(self) -> None:
        """
        Stop sampling; what was kept stays readable.
        """
        super().stopService()
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def sample_safely(self, intervals: int = 1) -> None:
        """
        Take a sample; an error is logged and the next sample still taken
        (a C{LoopingCall} whose function raises stops for good).

        @param intervals: Intervals since the previous sample (more than
            one when the reactor was too busy to sample on time).
        """
        try:
            self.sample(self.read_rows(), intervals)
        except Exception:
            _log.failure("Cannot sample the statistics for the trends")

    def _skip(self, intervals: int) -> None:
        """
        Mark C{intervals} samples as missed (unknown) for every object.
        """
        points = self.points
        for _ in range(min(intervals, points)):
            slot = self._head
            for values in self._values.values():
                for index in range(len(SERIES)):
                    values[index * points + slot] = math.nan
            self._head = (slot + 1) % points
        self.samples += intervals

    def sample(self, rows: Iterable[Row], intervals: int = 1) -> None:
        """
        Record one sample of C{rows}: for each, the sessions per second
        since the previous sample, the current sessions and the errors
        since the previous sample.  Objects not in C{rows} are forgotten.

        @param intervals: Intervals since the previous sample: those
            missed in between are recorded as unknown, and the rate is
            taken over the whole time.
        """
        if intervals > 1:
            self._skip(intervals - 1)
        elapsed = self.interval * max(1, intervals)
        slot = self._head
        points = self.points
        seen = set()
        for row in rows:
            key = (row.get("pxname", ""), row.get("svname", ""))
            seen.add(key)
            total = _number(row, "stot")
            errors = sum(_number(row, name) for name in _ERRORS)
            values = self._values.get(key)
            before = self._totals.get(key)
            if values is None or before is None:
                values = self._values[key] = array("f", [math.nan]) * (len(SERIES) * points)
                before = self._totals[key] = array("d", (total, errors))
                rate = lost = math.nan
            else:
                rate = _increase(total, before[0]) / elapsed
                lost = _increase(errors, before[1])
                before[0], before[1] = total, errors
            values[slot] = rate
            values[points + slot] = _number(row, "scur")
            values[2 * points + slot] = lost
        for key in [k for k in self._values if k not in seen]:
            del self._values[key]
            self._totals.pop(key, None)
        self._head = (slot + 1) % points
        self.samples += 1

    def keys(self) -> List[Key]:
        """
        The C{(pxname, svname)} of every object kept.
        """
        return list(self._values)

    def series(self, pxname: str, svname: str) -> Dict[str, List[float]]:
        """
        The kept samples of one object, oldest first, by series name
        (L{SERIES}); empty lists when it is not kept.  There are at most
        L{points} samples: fewer until that many were taken.
        """
        values = self._values.get((pxname, svname))
        kept = min(self.samples, self.points)
        if values is None or kept == 0:
            return {name: [] for name in SERIES}
        start = (self._head - kept) % self.points
        order = [(start + i) % self.points for i in range(kept)]
        return {
            name: [values[index * self.points + i] for i in order]
            for index, name in enumerate(SERIES)
        }

    def bytes_per_object(self) -> int:
        """
        The memory the buffers of one object hold, in bytes: its arrays'
        items (0 when none is kept).  Each array object adds its header
        (about 80 bytes on CPython).
        """
        for key, values in self._values.items():
            totals = self._totals[key]
            return len(values) * values.itemsize + len(totals) * totals.itemsize
        return 0
