"""
Tests for L{l4lb.admin.history}: the bounded in-memory trends of the
statistics, sampled on an injected clock.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator, List

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from l4lb.admin.history import POINTS, SERIES, StatsHistory
from l4lb.admin.stats import Row


def row(svname: str, stot: int = 0, scur: int = 0, econ: int = 0, eresp: int = 0) -> Row:
    """
    A statistics row of proxy C{be} with the columns the history reads.
    """
    return {
        "pxname": "be",
        "svname": svname,
        "stot": str(stot),
        "scur": str(scur),
        "econ": str(econ),
        "eresp": str(eresp),
    }


class Fleet:
    """
    Rows of C{count} servers whose counters grow at each reading.
    """

    def __init__(self, count: int) -> None:
        self.names = [f"s{i}" for i in range(count)]
        self.readings = 0

    def __call__(self) -> List[Row]:
        self.readings += 1
        n = self.readings
        return [row(name, stot=10 * n, scur=n % 7, econ=n // 3) for name in self.names]


def started(read: object, interval: float = 5.0) -> "tuple[Clock, StatsHistory]":
    """
    A history sampling C{read} on a fresh clock, started.
    """
    clock = Clock()
    history = StatsHistory(clock, read, interval=interval)  # type: ignore[arg-type]
    history.startService()
    return clock, history


def test_one_sample_every_interval_on_the_clock() -> None:
    """
    The history takes a sample at start and one every interval of the
    injected clock, and none in between.
    """
    fleet = Fleet(2)
    clock, history = started(fleet)
    assert history.samples == 1
    clock.advance(4.9)
    assert history.samples == 1
    clock.advance(0.1)
    assert history.samples == 2
    for _ in range(10):
        clock.advance(5)
    assert history.samples == 12
    history.stopService()
    clock.advance(50)
    assert history.samples == 12


def test_missed_intervals_are_unknown() -> None:
    """
    When the reactor could not sample on time, the missed samples are
    unknown (NaN), so the time axis stays true, and the rate is taken over
    the whole time since the previous sample.
    """
    fleet = Fleet(1)
    clock, history = started(fleet)
    clock.advance(15)
    assert history.samples == 4
    rate = history.series("be", "s0")["rate"]
    assert len(rate) == 4
    assert all(math.isnan(v) for v in rate[:3])
    # stot went from 10 to 20 in 15 seconds.
    assert abs(rate[3] - 10 / 15) < 1e-6


def test_bounded_after_a_thousand_samples() -> None:
    """
    After 1,000 samples each series still holds 180 points, the latest
    ones in order, and the memory kept per server does not grow.
    """
    fleet = Fleet(3)
    clock, history = started(fleet)
    clock.advance(5)
    size = history.bytes_per_object()
    for _ in range(998):
        clock.advance(5)
    assert history.samples == 1000
    series = history.series("be", "s1")
    assert {name: len(values) for name, values in series.items()} == {n: POINTS for n in SERIES}
    # Reading n has scur n % 7: the last point is the 1000th reading's.
    assert series["scur"][-1] == 1000 % 7
    assert series["scur"][0] == (1000 - POINTS + 1) % 7
    assert history.bytes_per_object() == size


def test_memory_per_server_in_bytes() -> None:
    """
    The buffers of one server hold 2,176 bytes: 3 series of 180
    single-precision floats and two double counters, nothing per sample.
    """
    clock, history = started(Fleet(1))
    size = history.bytes_per_object()
    assert size == 3 * POINTS * 4 + 2 * 8
    values = history._values[("be", "s0")]
    assert len(values) * values.itemsize == 3 * POINTS * 4


def test_rate_and_errors_per_interval() -> None:
    """
    The session rate is the increase of C{stot} over the interval per
    second, the errors the increase of the request, connection and
    response errors; the first sample of an object knows neither.
    """
    readings = iter(
        [
            [row("s1", stot=100, scur=4, econ=1)],
            [row("s1", stot=150, scur=6, econ=3, eresp=2)],
        ]
    )
    clock, history = started(lambda: next(readings))
    clock.advance(5)
    series = history.series("be", "s1")
    assert math.isnan(series["rate"][0]) and math.isnan(series["errors"][0])
    assert series["rate"][1] == 10.0
    assert series["errors"][1] == 4.0
    assert series["scur"] == [4.0, 6.0]


def test_cleared_counters_do_not_go_negative() -> None:
    """
    After C{clear counters} a counter goes back: the sample counts what it
    counted since, never a negative rate.
    """
    readings = iter([[row("s1", stot=500)], [row("s1", stot=20)]])
    clock, history = started(lambda: next(readings))
    clock.advance(5)
    assert history.series("be", "s1")["rate"][1] == 4.0


def test_object_gone_is_forgotten() -> None:
    """
    A server no longer in the rows (a reload removed it) is forgotten at
    the next sample, its memory released; one added later has unknown
    (NaN) values before it appeared.
    """
    rows: Dict[str, List[Row]] = {"now": [row("old"), row("kept")]}
    clock, history = started(lambda: rows["now"])
    assert set(history.keys()) == {("be", "old"), ("be", "kept")}
    rows["now"] = [row("kept"), row("new")]
    clock.advance(5)
    assert set(history.keys()) == {("be", "kept"), ("be", "new")}
    assert history.series("be", "old") == {name: [] for name in SERIES}
    scur = history.series("be", "new")["scur"]
    assert len(scur) == 2 and math.isnan(scur[0]) and scur[1] == 0.0


def test_sampling_survives_errors() -> None:
    """
    A sample that raises is logged and the sampling goes on: a
    C{LoopingCall} whose function raises would stop for good.
    """
    calls: List[int] = []

    def read() -> Iterator[Row]:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return iter([row("s1", stot=len(calls))])

    logged: List[dict] = []  # type: ignore[type-arg]
    globalLogPublisher.addObserver(logged.append)
    try:
        clock, history = started(read)
        clock.advance(5)
        clock.advance(5)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert len(calls) == 3
    assert history.samples == 2
    failures = [e for e in logged if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)
