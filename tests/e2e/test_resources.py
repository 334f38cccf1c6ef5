"""
What l4lb holds on to: memory while a client does not read, and file
descriptors and log lines after many connections of every kind.
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Counter, List, Tuple

import pytest

from .backends import CloseFirstServer, EchoServer, HashServer, StreamServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    Balancer,
    FrontendSection,
    ServerLine,
    TcpLogRecord,
    abort,
    connect,
    echo_once,
    free_port,
    hash_exchange,
    receive_until_eof,
    wait_until,
)

#: Every test here runs over both data paths.
pytestmark = pytest.mark.usefixtures("both_relays")

MiB = 1 << 20


def settled_fd_count(lb: Balancer, quiet: float = 0.5, timeout: float = 10.0) -> int:
    """
    The balancer's descriptor count once it stayed the same for C{quiet}
    seconds (or whatever it is after C{timeout}).
    """
    last = lb.fd_count()
    since = time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = lb.fd_count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def test_memory_bounded_when_client_stops_reading(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    While a client reads nothing and the server tries to send 256 MiB, the
    balancer stops reading from the server: its RSS grows by less than 16 MiB.
    """
    streamer = servers(StreamServer(total=256 * MiB))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", streamer.port)])
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be])

    # Warm the relay path up (imports, first buffers) before the baseline.
    warm = connect(fe.port)
    got = 0
    while got < 4 * MiB:
        got += len(warm.recv(1 << 16))
    abort(warm)
    lb.wait_for_records(1)
    baseline = lb.rss()
    sent_before = streamer.sent

    client = connect(fe.port)
    try:
        peak = baseline
        deadline = time.monotonic() + 30
        stalled = False
        while time.monotonic() < deadline:
            peak = max(peak, lb.rss())
            quiet = time.monotonic() - streamer.last_progress
            if streamer.sent >= streamer.total or (
                streamer.sent > sent_before and quiet >= 1.0
            ):
                stalled = True
                break
            time.sleep(0.02)
        peak = max(peak, lb.rss())
        through = streamer.sent - sent_before
        assert stalled, f"server still sending after 30s ({through} bytes)"
        assert peak - baseline < 16 * MiB, (
            f"RSS grew by {(peak - baseline) / MiB:.1f} MiB while the server"
            f" pushed {through / MiB:.1f} MiB at a client that does not read"
        )
    finally:
        abort(client)
    lb.wait_for_records(2)
    assert wait_until(lambda: streamer.finished == 2, 10)


def test_no_leak_after_1000_mixed_connections(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    After 1,000 connections (echo, half-close, server-closes-first and
    refused-then-redispatched), the balancer's descriptors are back where
    they began and every connection got exactly one log line.
    """
    e1, e2 = servers(EchoServer("e1")), servers(EchoServer("e2"))
    hasher = servers(HashServer(reply_size=4096, seed=9))
    closer = servers(CloseFirstServer(b"c" * 2048))
    live = servers(EchoServer("live"))
    backends = [
        BackendSection(
            "be_echo",
            [ServerLine("e1", "127.0.0.1", e1.port), ServerLine("e2", "127.0.0.1", e2.port)],
        ),
        BackendSection("be_half", [ServerLine("h1", "127.0.0.1", hasher.port)]),
        BackendSection("be_close", [ServerLine("c1", "127.0.0.1", closer.port)]),
        BackendSection(
            "be_retry",
            [
                ServerLine("dead", "127.0.0.1", free_port()),
                ServerLine("live", "127.0.0.1", live.port),
            ],
        ),
    ]
    frontends = [
        FrontendSection(f"fe_{kind}", "127.0.0.1", free_port(), f"be_{kind}")
        for kind in ("echo", "half", "close", "retry")
    ]
    ports = {fe.name: fe.port for fe in frontends}
    lb = balancers.start(
        frontends, backends, defaults={"retries": "1", "option redispatch": "true"}
    )

    def one(i: int) -> Tuple[str, int]:
        kind = ("echo", "half", "close", "retry")[i % 4]
        port = ports[f"fe_{kind}"]
        if kind == "echo":
            r = echo_once(port, b"m%d" % i)
            assert r.echoed == b"m%d" % i and r.server in ("e1", "e2")
            return "fe_echo", r.local_port
        if kind == "half":
            ex = hash_exchange(port, send_size=1000 + i, reply_size=4096, seed=i)
            assert ex.server_received_digest == ex.sent_digest
            assert ex.received_digest == ex.server_sent_digest
            return "fe_half", ex.local_port
        if kind == "close":
            data, local_port = receive_until_eof(port)
            assert data == b"c" * 2048
            return "fe_close", local_port
        r = echo_once(port, b"r%d" % i)
        assert (r.server, r.echoed) == ("live", b"r%d" % i)
        return "fe_retry", r.local_port

    warmup = [one(i) for i in range(4)]
    lb.wait_for_records(4)
    before = settled_fd_count(lb)
    targets_before = lb.fd_targets()

    total = 1000
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(one, i) for i in range(total)]
        clients = warmup + [f.result(timeout=120) for f in futures]

    records = lb.wait_for_records(total + 4, timeout=15)
    settled = wait_until(lambda: lb.fd_count() == before, 10)
    assert settled, (
        f"{lb.fd_count()} descriptors open, {before} before the run\n"
        + "\n".join(sorted(set(lb.fd_targets()) - set(targets_before)))
    )

    records = lb.log_records()
    count = len(records)
    assert count == total + 4, f"{count} log lines for {total + 4} connections"
    logged: Counter[Tuple[str, int]] = collections.Counter(
        (r.frontend, r.client_port) for r in records
    )
    assert logged == collections.Counter(clients)
    assert {r.termination for r in records} == {"--"}, collections.Counter(
        r.termination for r in records
    )
    retry: List[TcpLogRecord] = [r for r in records if r.frontend == "fe_retry"]
    assert {r.server for r in retry} == {"live"}
    assert any(r.redispatched for r in retry)
    for server in (e1, e2, hasher, closer, live):
        assert server.errors == [], server.errors[:3]
