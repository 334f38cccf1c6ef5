"""
Tests for L{l4lb.gcfreeze}: freezing the start-up heap once the service
runs under twistd.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Iterator, List

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, globalLogPublisher

from l4lb import tap
from l4lb.gcfreeze import freeze_heap, freeze_when_running


@pytest.fixture
def logged() -> Iterator[List[LogEvent]]:
    """
    Every event logged through C{twisted.logger} during the test.
    """
    events: List[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_collects_before_freezing(logged: List[LogEvent]) -> None:
    """
    L{freeze_heap} collects first (so start-up garbage is not frozen for
    good), then freezes, and logs and returns how many objects are frozen.
    """
    calls: List[str] = []

    def collect() -> int:
        calls.append("collect")
        return 0

    def freeze() -> None:
        calls.append("freeze")

    assert freeze_heap(collect, freeze, lambda: 1234) == 1234
    assert calls == ["collect", "freeze"]
    [event] = [e for e in logged if e.get("log_namespace") == "l4lb"]
    assert event["count"] == 1234


def test_really_freezes() -> None:
    """
    With the real C{gc} functions, the objects alive are frozen afterwards
    (the test process is unfrozen again after); on PyPy, whose C{gc} cannot
    freeze, it still collects and reports nothing frozen.
    """
    if not hasattr(gc, "freeze"):
        assert freeze_heap() == 0
        return
    before = gc.get_freeze_count()
    try:
        count = freeze_heap()
        assert count == gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


def test_scheduled_when_running() -> None:
    """
    L{freeze_when_running} does nothing at once and freezes once the
    reactor runs.
    """
    reactor = MemoryReactorClock()
    freeze_when_running(reactor)
    assert [hook[0] for hook in reactor.whenRunningHooks] == [freeze_heap]


def test_make_service_freezes_after_start(tmp_path: Path) -> None:
    """
    twistd's C{makeService} schedules the freeze for when the reactor runs,
    after the signal handlers: that is after twistd started the service.
    """
    config = tmp_path / "lb.ini"
    config.write_text(
        "[global]\nlog = none\n\n[defaults]\nmode = tcp\n\n"
        "[frontend fe]\nbind = 127.0.0.1:18099\ndefault_backend = be\n\n"
        "[backend be]\nserver s1 = 127.0.0.1:9\n"
    )
    options = tap.Options()
    options.parseOptions(["--config", str(config)])
    reactor = MemoryReactorClock()
    tap.makeService(options, reactor)
    hooks = [hook[0] for hook in reactor.whenRunningHooks]
    assert hooks[-1] is freeze_heap
    assert hooks.count(freeze_heap) == 1
