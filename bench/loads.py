"""
The loads: each runs for a bounded time against one port on 127.0.0.1
and returns what it did as a dict of numbers.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import time
from typing import Callable, Dict, List, Sequence

from bench.contestants import HELPERS, find_program
from bench.procs import cpu_busy, cpu_seconds, fd_count, rss_bytes, system_seconds

Result = Dict[str, float]

GRACE = 30.0
"""Seconds a load may overrun its duration before it is killed."""

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _run(argv: Sequence[str], cpus: Sequence[int], timeout: float) -> str:
    cpuset = set(cpus)
    out = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: os.sched_setaffinity(0, cpuset),
    )
    if out.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if m is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> Result:
    """
    The numbers of a C{wrk --latency} report: C{requests}, C{seconds},
    C{rate}, C{p50} and C{p99} (seconds), C{errors} (socket errors and
    non-2xx answers).
    """
    m = re.search(r"(\d+) requests in ([\d.]+\w+),", output)
    if m is None:
        raise ValueError(f"no request count in wrk's output:\n{output}")
    result: Result = {"requests": float(m.group(1)), "seconds": _seconds(m.group(2))}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    result["rate"] = float(rate.group(1)) if rate else result["requests"] / result["seconds"]
    for pct in ("50", "99"):
        p = re.search(rf"^\s+{pct}%\s+([\d.]+\w+)\s*$", output, re.M)
        if p is not None:
            result[f"p{pct}"] = _seconds(p.group(1))
    errors = 0
    s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if s is not None:
        errors += sum(int(g) for g in s.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if n is not None:
        errors += int(n.group(1))
    result["errors"] = float(errors)
    return result


def wrk_available() -> bool:
    """
    Whether C{wrk} is installed.
    """
    return find_program("wrk") is not None


def wrk(port: int, seconds: float, connections: int, close: bool, cpus: Sequence[int]) -> Result:
    """
    C{wrk} with one thread against C{http://127.0.0.1:PORT/}; with
    C{close}, every request on a new connection (C{Connection: close}).
    """
    argv = [find_program("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}/")
    return parse_wrk(_run(argv, cpus, seconds + GRACE))


def bulk(python: str, port: int, seconds: float, cpus: Sequence[int]) -> Result:
    """
    One TCP stream from the source helper to the sink for C{seconds}:
    C{bytes}, C{seconds}, C{rate} (bytes per second).
    """
    out = _run([python, HELPERS, "source", str(port), f"{seconds:g}"], cpus, seconds + GRACE)
    result: Result = json.loads(out.strip().splitlines()[-1])
    if result["bytes"] <= 0:
        raise RuntimeError("the sink confirmed no byte")
    result["rate"] = result["bytes"] / result["seconds"]
    return result


def udp(python: str, port: int, size: int, seconds: float, cpus: Sequence[int]) -> Result:
    """
    UDP request/reply through an echo server for C{seconds}: C{received},
    C{sent}, C{seconds}, C{rate} (replies per second).
    """
    argv = [python, HELPERS, "udp-load", str(port), str(size), f"{seconds:g}"]
    result: Result = json.loads(_run(argv, cpus, seconds + GRACE).strip().splitlines()[-1])
    result["rate"] = result["received"] / result["seconds"]
    return result


def _wait(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def _connect_batch(port: int, count: int, timeout: float) -> List[socket.socket]:
    """
    Open C{count} connections at once; return those that succeeded.
    """
    pending: Dict[int, socket.socket] = {}
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        pending[s.fileno()] = s
    done: List[socket.socket] = []
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            s = pending.pop(fd)
            poller.unregister(fd)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done.append(s)
            else:
                s.close()
    for s in pending.values():
        s.close()
    return done


def _reset(sockets: List[socket.socket]) -> None:
    linger = (1).to_bytes(4, "little") + (0).to_bytes(4, "little")
    for s in sockets:
        try:
            # Reset rather than close, so no TIME_WAIT is left behind.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        s.close()


def idle(
    port: int,
    count: int,
    proxy_pids: Callable[[], List[int]],
    backend_fds: Callable[[], int],
    timeout: float = 60.0,
    batch: int = 40,
) -> Result:
    """
    Open C{count} connections through the proxy and leave them idle; the
    proxy's resident memory before and after gives the memory per relayed
    connection.  Returns C{connections} (opened), C{relayed} (that reached
    the backend), C{rss_before}, C{rss_after}, C{per_connection} (bytes).

    Connections are opened C{batch} at a time, each batch once the previous
    one reached the backend: a burst larger than a proxy's listen backlog
    (Twisted's default is 50) overflows it, the kernel answers with SYN
    cookies, and a connection whose client never speaks is then lost.
    """
    # Let connections of an earlier load finish closing at the backend.
    counts = [backend_fds()]

    def settled() -> bool:
        counts.append(backend_fds())
        return counts[-1] == counts[-2]

    _wait(settled, 5.0, 0.2)
    pids = proxy_pids()
    rss_before = rss_bytes(pids)
    fds_before = fd_count(pids)
    backend_before = backend_fds()
    deadline = time.monotonic() + timeout
    held: List[socket.socket] = []
    try:
        while len(held) < count and time.monotonic() < deadline:
            n = min(batch, count - len(held))
            held += _connect_batch(port, n, max(0.1, deadline - time.monotonic()))
            target = len(held)
            _wait(
                lambda: backend_fds() - backend_before >= target,
                min(5.0, max(0.1, deadline - time.monotonic())),
                0.002,
            )
        opened = len(held)
        # Every connection is relayed once the backend holds it and the
        # proxy holds both of its sockets.
        _wait(
            lambda: backend_fds() - backend_before >= opened
            and fd_count(proxy_pids()) - fds_before >= 2 * opened,
            max(1.0, deadline - time.monotonic()),
        )
        time.sleep(0.5)
        pids = proxy_pids()
        rss_after = rss_bytes(pids)
        relayed = min(backend_fds() - backend_before, (fd_count(pids) - fds_before) // 2)
    finally:
        _reset(held)
    _wait(lambda: fd_count(proxy_pids()) <= fds_before + 4, 30.0)
    per = (rss_after - rss_before) / opened if opened else 0.0
    return {
        "connections": float(opened),
        "relayed": float(relayed),
        "rss_before": float(rss_before),
        "rss_after": float(rss_after),
        "per_connection": per,
    }


def measure(pids: Callable[[], List[int]], load: Callable[[], Result], proxy_cpu: int) -> Result:
    """
    Run C{load} and add C{cpu}, the CPU seconds the proxy used meanwhile,
    C{system_cpu}, the kernel's part of them, and C{other_cpu}, the busy
    seconds of the proxy's CPU that were not the proxy's (other processes
    on the machine, interrupts).
    """
    before_pids = pids()
    before = cpu_seconds(before_pids)
    before_system = system_seconds(before_pids)
    busy = cpu_busy(proxy_cpu)
    result = load()
    after_pids = pids()
    cpu = cpu_seconds(after_pids) - before if before_pids else 0.0
    system = system_seconds(after_pids) - before_system if before_pids else 0.0
    result["other_cpu"] = max(0.0, cpu_busy(proxy_cpu) - busy - cpu)
    result["cpu"] = cpu if before_pids else float("nan")
    result["system_cpu"] = system if before_pids else float("nan")
    return result
