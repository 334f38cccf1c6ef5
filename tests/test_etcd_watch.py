"""
Watching a prefix through outages (L{l4lb.etcd.PrefixWatch}): list, watch
from the next revision, keep the servers while etcd is away, resume from
the revision reached, list again only after a compaction.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from l4lb.config.model import ServersFrom
from l4lb.etcd import Event, PrefixWatch, ServerSync, WatchMessage
from l4lb.etcd._watch import default_backoff
from tests.etcdkit import RecordingRuntime, ScriptedGateway

PREFIX = "/l4lb/backends/web/"
SPEC = ServersFrom("etcd", ("http://127.0.0.1:2379", "http://127.0.0.1:22379"), PREFIX)


@pytest.fixture
def warnings() -> Any:
    """
    The warnings l4lb logs during the test, formatted.
    """
    lines: List[str] = []

    def observe(event: Any) -> None:
        if event.get("log_level") is not None and event["log_level"].name == "warn":
            lines.append(event["log_format"].format(**event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def make(backoff: Any = lambda attempt: 2.0 ** attempt) -> Any:
    """
    A watch of backend C{web} over two scripted endpoints.
    """
    runtime = RecordingRuntime("web")
    clock = Clock()
    gateways = [ScriptedGateway(url) for url in SPEC.endpoints]
    watch = PrefixWatch(SPEC, ServerSync(runtime, "web", clock), gateways, clock, backoff)
    return watch, runtime, clock, gateways


def put(key: str, value: str, revision: int) -> WatchMessage:
    """
    A watch message with one put.
    """
    return WatchMessage(revision, (Event("PUT", PREFIX + key, value, revision),))


def test_lists_then_watches_from_the_next_revision() -> None:
    """The listing's servers are added, then the watch starts after its revision."""
    watch, runtime, _, gateways = make()
    gateways[0].listing = (41, {PREFIX + "s1": "127.0.0.1:8081"})
    watch.start()
    assert list(runtime.servers) == [("web", "s1")]
    assert [s.start_revision for s in gateways[0].streams] == [42]
    assert watch.revision == 41


def test_events_become_changes() -> None:
    """Puts and deletes on the stream add and remove servers, and advance the revision."""
    watch, runtime, _, gateways = make()
    watch.start()
    stream = gateways[0].streams[0]
    stream.send(WatchMessage(1, created=True))
    stream.send(put("s1", "127.0.0.1:8081", 5))
    assert ("web", "s1") in runtime.servers
    stream.send(WatchMessage(6, (Event("DELETE", PREFIX + "s1", "", 6),)))
    assert ("web", "s1") not in runtime.servers
    assert watch.revision == 6


def test_outage_keeps_servers_logs_once_and_resumes_from_its_revision(warnings: List[str]) -> None:
    """
    When the stream is lost, the servers stay, one warning is logged however
    many retries fail, the retries back off over the endpoints in turn,
    and the watch resumes from the revision after the last one seen,
    without listing again.
    """
    watch, runtime, clock, gateways = make()
    gateways[0].listing = (10, {PREFIX + "s1": "127.0.0.1:8081"})
    watch.start()
    gateways[0].streams[0].send(put("s2", "127.0.0.1:8082", 12))
    runtime.calls.clear()
    for gateway in gateways:
        gateway.down = ConnectionRefusedError()
    clock.advance(3)
    gateways[0].streams[0].fail(ConnectionRefusedError())
    assert watch.unreachable_since == 3
    clock.advance(1)  # retry 0 after 1s: endpoint 2, fails
    clock.advance(2)  # retry 1 after 2s: endpoint 1, fails
    clock.advance(4)  # retry 2 after 4s: endpoint 2, fails
    assert len(gateways[1].streams) == 2 and len(gateways[0].streams) == 2
    assert runtime.calls == []
    assert sorted(runtime.servers) == [("web", "s1"), ("web", "s2")]
    assert len(warnings) == 1
    assert "http://127.0.0.1:2379 is unreachable" in warnings[0]
    assert "2 server(s) from etcd stay as last known" in warnings[0]
    for gateway in gateways:
        gateway.down = None
    clock.advance(8)
    resumed = gateways[0].streams[-1]
    assert resumed.start_revision == 13
    resumed.send(WatchMessage(20, created=True))
    assert watch.unreachable_since is None
    assert (gateways[0].lists, gateways[1].lists) == (1, 0)


def test_unreachable_at_start_keeps_listing() -> None:
    """With etcd away at start, the listing is retried until it answers."""
    watch, runtime, clock, gateways = make()
    gateways[0].down = gateways[1].down = ConnectionRefusedError()
    watch.start()
    clock.advance(1)
    assert watch.unreachable_since == 0
    gateways[0].down = gateways[1].down = None
    gateways[0].listing = (3, {PREFIX + "s1": "127.0.0.1:8081"})
    clock.advance(2)
    assert ("web", "s1") in runtime.servers
    assert watch.unreachable_since is None


def test_compaction_lists_again() -> None:
    """A watch refused because its revision is compacted lists the prefix again."""
    watch, runtime, clock, gateways = make()
    gateways[0].listing = (10, {PREFIX + "s1": "127.0.0.1:8081"})
    watch.start()
    gateways[0].streams[0].fail(ConnectionRefusedError())
    gateways[0].listing = (50, {PREFIX + "s2": "127.0.0.1:8082"})
    clock.advance(1)
    gateways[1].listing = gateways[0].listing
    gateways[1].streams[0].send(WatchMessage(0, compacted=30, canceled=True))
    assert gateways[1].streams[0].stopped
    assert gateways[1].lists == 1
    assert gateways[1].streams[1].start_revision == 51
    assert sorted(runtime.servers) == [("web", "s2")]


def test_progress_reports_advance_the_revision() -> None:
    """A progress report (no event) moves the resume point; a creation does not."""
    watch, _, _, gateways = make()
    watch.start()
    stream = gateways[0].streams[0]
    stream.send(WatchMessage(90, created=True))
    assert watch.revision == 1
    stream.send(WatchMessage(95))
    assert watch.revision == 95


def test_stop_ends_the_watch_and_the_retries() -> None:
    """Stopping ends the stream, cancels a pending retry and changes no server."""
    watch, runtime, clock, gateways = make()
    watch.start()
    gateways[0].streams[0].fail(ConnectionRefusedError())
    assert clock.getDelayedCalls()
    watch.stop()
    assert not clock.getDelayedCalls()
    clock.advance(100)
    assert len(gateways[1].streams) == 0


def test_default_backoff_grows_to_its_ceiling() -> None:
    """The default retry delays start at half a second and stay under 10.25s."""
    policy = default_backoff()
    delays = [policy(n) for n in range(10)]
    assert 0.5 <= delays[0] < 0.75
    assert all(d <= 10.25 for d in delays)
    assert delays[-1] >= 10
