"""
The process summary the HTML statistics page shows above the proxies:
version, process ids, uptime, connections against C{maxconn}, the
session rate and the UDP sessions.
"""

from __future__ import annotations

import os
from typing import List, Sequence, Tuple

import attr

import l4lb
from l4lb.admin.fields import TYPE_FRONTEND
from l4lb.admin.stats import Row
from l4lb.interfaces import IBalancerRuntime


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ProcessSummary:
    """
    What the process is doing, as the page's summary shows it.

    @ivar version: l4lb's version.
    @ivar pid: This process's id.
    @ivar workers: The ids of the worker processes (C{nbproc}), if any.
    @ivar uptime: Seconds since the process started.
    @ivar current: TCP connections open now, over every process.
    @ivar maxconn: The global C{maxconn} (per process).
    @ivar rate: New TCP sessions over the last second.
    @ivar rate_max: The most new TCP sessions within one second (with
        workers, the sum of each frontend's busiest process's).
    @ivar udp_sessions: UDP sessions open now.
    @ivar udp_capacity: How many UDP sessions the frontends may hold.
    """

    version: str
    pid: int
    workers: Tuple[int, ...]
    uptime: int
    current: int
    maxconn: int
    rate: int
    rate_max: int
    udp_sessions: int
    udp_capacity: int


def _sum(rows: Sequence[Row], column: str) -> int:
    return sum(
        int(row.get(column, "0") or 0)
        for row in rows
        if row.get("type") == str(TYPE_FRONTEND) and row.get("mode") != "udp"
    )


def read_summary(service: IBalancerRuntime, now: float, started: float, rows: Sequence[Row]) -> ProcessSummary:
    """
    The summary of C{service} at clock time C{now}.

    @param started: When the process started (clock time).
    @param rows: The statistics rows read at C{now}
        (L{l4lb.admin.stats.stat_rows}), where the workers' counters are
        already added.
    """
    limiter = service.limiter
    workers = service.workers
    pids: Tuple[int, ...] = ()
    current = limiter.current
    if workers is not None:
        pids = tuple(w.pid for w in workers.live() if w.pid is not None)
        current += int(workers.reading().get("current", 0))
        # The workers accept the connections: their frontends' rates.
        rate, rate_max = _sum(rows, "rate"), _sum(rows, "rate_max")
    else:
        rate, rate_max = limiter.session_rate.rate(now), limiter.session_rate.max
    udp = list(service.udp_frontends.values())
    return ProcessSummary(
        version=l4lb.__version__,
        pid=os.getpid(),
        workers=pids,
        uptime=max(0, int(now - started)),
        current=current,
        maxconn=limiter.maxconn,
        rate=rate,
        rate_max=rate_max,
        udp_sessions=sum(f.current for f in udp),
        udp_capacity=sum(f.table.capacity for f in udp),
    )


def summary_items(summary: ProcessSummary) -> List[Tuple[str, str]]:
    """
    The summary as C{(label, value)} pairs, in the order shown.
    """
    pid = str(summary.pid)
    if summary.workers:
        pid += " (workers " + ", ".join(str(p) for p in summary.workers) + ")"
    maxconn = str(summary.maxconn) if summary.maxconn else "none"
    items = [
        ("Version", summary.version),
        ("Pid", pid),
        ("Uptime", _uptime(summary.uptime)),
        ("Connections", f"{summary.current} / maxconn {maxconn}"),
        ("Session rate", f"{summary.rate}/s (max {summary.rate_max}/s)"),
    ]
    if summary.udp_capacity:
        items.append(("UDP sessions", f"{summary.udp_sessions} / {summary.udp_capacity}"))
    return items


def _uptime(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days}d {rest // 3600}h{rest % 3600 // 60:02d}m{rest % 60:02d}s"
