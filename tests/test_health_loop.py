"""
The check loop: never overlaps, never dies, waits its interval after each
run, and can be hurried and stopped.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from l4lb.health.loop import FALLBACK_INTERVAL, CheckLoop


def test_next_run_waits_for_the_previous_one() -> None:
    """A run that outlasts the interval delays the next one: the next starts an interval after it ends."""
    clock = Clock()
    started: List[float] = []
    pending: List[Deferred[None]] = []

    def job() -> Deferred[None]:
        started.append(clock.seconds())
        d: Deferred[None] = Deferred()
        pending.append(d)
        return d

    loop = CheckLoop(clock, job, lambda: 2.0)
    loop.start(0)
    clock.advance(0)
    for _ in range(10):
        clock.advance(1)
    assert started == [0.0] and loop.busy
    pending[0].callback(None)
    clock.advance(2)
    assert started == [0.0, 12.0]


def test_a_raising_job_does_not_stop_the_loop() -> None:
    """A job that raises, or whose Deferred fails, is logged and the loop keeps its schedule."""
    clock = Clock()
    runs: List[float] = []

    def job() -> Any:
        runs.append(clock.seconds())
        if len(runs) % 2:
            raise RuntimeError("boom")
        d: Deferred[None] = Deferred()
        d.errback(ValueError("bad"))
        return d

    loop = CheckLoop(clock, job, lambda: 1.0)
    loop.start(0)
    clock.advance(0)
    for _ in range(5):
        clock.advance(1)
    assert runs == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert loop.errors == 6


def test_a_raising_interval_falls_back() -> None:
    """When the interval cannot be computed the loop still runs again, after the fallback interval."""
    clock = Clock()
    runs: List[float] = []

    def interval() -> float:
        raise ZeroDivisionError()

    loop = CheckLoop(clock, lambda: runs.append(clock.seconds()), interval)
    loop.start(0)
    clock.advance(0)
    clock.advance(FALLBACK_INTERVAL)
    assert runs == [0.0, FALLBACK_INTERVAL]


def test_run_within_hurries_the_next_run() -> None:
    """run_within brings the next run forward, but never pushes it back."""
    clock = Clock()
    runs: List[float] = []
    loop = CheckLoop(clock, lambda: runs.append(clock.seconds()), lambda: 10.0)
    loop.start(0)
    clock.advance(0)
    clock.advance(1)
    loop.run_within(0.5)
    loop.run_within(20)
    clock.advance(0.5)
    assert runs == [0.0, 1.5]


def test_run_within_during_a_run() -> None:
    """run_within while a run is in progress shortens the wait after it."""
    clock = Clock()
    runs: List[float] = []
    pending: List[Deferred[None]] = []

    def job() -> Deferred[None]:
        runs.append(clock.seconds())
        d: Deferred[None] = Deferred()
        pending.append(d)
        return d

    loop = CheckLoop(clock, job, lambda: 10.0)
    loop.start(0)
    clock.advance(0)
    loop.run_within(1.0)
    pending[0].callback(None)
    clock.advance(1.0)
    assert runs == [0.0, 1.0]


def test_stop_cancels_the_run_in_progress() -> None:
    """stop cancels the pending run, waits for the one in progress (cancelled, not logged) and schedules nothing more."""
    clock = Clock()
    cancelled: List[bool] = []
    loop = CheckLoop(clock, lambda: Deferred(lambda d: cancelled.append(True)), lambda: 1.0)
    loop.start(0)
    clock.advance(0)
    stopped: List[object] = []
    loop.stop().addCallback(stopped.append)
    assert cancelled == [True] and stopped == [None]
    assert loop.errors == 0
    assert clock.getDelayedCalls() == []
    assert not loop.running


def test_stop_before_the_first_run() -> None:
    """A loop stopped before its first run never runs."""
    clock = Clock()
    runs: List[float] = []
    loop = CheckLoop(clock, lambda: runs.append(1.0), lambda: 1.0)
    loop.start(5)
    loop.stop()
    clock.advance(10)
    assert runs == [] and loop.next_run() is None
