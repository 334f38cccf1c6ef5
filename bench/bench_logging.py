"""
The CPU cost of one connection log line in l4lb, in process: building the
record of a session that ended, formatting it (C{tcplog} or C{json}) and
handing it to the sink, for a file (written once per reactor turn) and for
syslog over UDP to 127.0.0.1 (one datagram per line, as HAProxy sends).

    python bench/bench_logging.py                 # 100,000 lines per case, 3 rounds
    python bench/bench_logging.py --lines 20000 --rounds 1

The session is a stand-in carrying the attributes the record reads (a
finished connection's addresses, names, times and counters); everything
after it is the code a connection's end runs (L{l4lb.tcp.record.log_session}).
Reactor turns are simulated with a L{Clock}: four lines end in each turn,
about what the new-connection load of C{bench/run.py} gives.  A thread
drains the syslog socket so that no datagram is dropped; the report is
the CPU time (user + system) of the thread that logs, per line, the median
of the rounds.  On 127.0.0.1 the kernel delivers a datagram to the
receiving socket within the sender's C{sendto}, so that time is in the
figure, as it is in a proxy's CPU time when its syslog daemon runs on the
same host.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, List, Optional, Sequence, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor as global_reactor  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from l4lb.config.model import LogTarget  # noqa: E402
from l4lb.logs import LogSink  # noqa: E402
from l4lb.syslog import SyslogSink  # noqa: E402
from l4lb.tcp.record import log_session  # noqa: E402

#: Lines that end in one reactor turn.
LINES_PER_TURN = 4


def stand_in_session(sink: Any, style: str, clock: Clock) -> Any:
    """
    A finished session as the record reads it.
    """
    accepted = time.time()
    gate = SimpleNamespace(current=3, limiter=SimpleNamespace(current=5))
    return SimpleNamespace(
        sink=sink,
        spec=SimpleNamespace(dontlognull=False, log_format=style, sni_routes=None),
        bytes_in=64,
        bytes_out=2048,
        server=SimpleNamespace(name="s1", current=2),
        accepted=accepted,
        connected_at=accepted + 0.0004,
        dequeued_at=None,
        queued_at=None,
        seconds=lambda: accepted + 0.0021,
        sni=None,
        client_host="127.0.0.1",
        client_port=40123,
        frontend=SimpleNamespace(name="http", gate=gate),
        backend=SimpleNamespace(name="http_servers", current=2),
        dispatched=True,
        termination="--",
        retries=0,
        redispatched=False,
        queue_passed=0,
    )


def drain(sock: socket.socket, stop: threading.Event) -> None:
    """
    Read and discard datagrams until told to stop.
    """
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return


def thread_cpu() -> Tuple[float, float]:
    """
    The user and system CPU seconds of the calling thread.
    """
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime, usage.ru_stime


def one_case(target: str, style: str, lines: int) -> Tuple[float, float]:
    """
    Log C{lines} connections; return the thread's user and system CPU µs
    per line.
    """
    clock = Clock()
    stop = threading.Event()
    server: Optional[socket.socket] = None
    drainer: Optional[threading.Thread] = None
    sink: Any
    with tempfile.TemporaryDirectory() as tmp:
        if target == "file":
            sink = LogSink(LogTarget(kind="file", path=os.path.join(tmp, "l4lb.log")), clock)
        else:
            server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            server.bind(("127.0.0.1", 0))
            server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            drainer = threading.Thread(target=drain, args=(server, stop), daemon=True)
            drainer.start()
            log = LogTarget(kind="udp", host="127.0.0.1", port=server.getsockname()[1], facility="local0", level="info")
            sink = SyslogSink(log, global_reactor)
        session = stand_in_session(sink, style, clock)
        try:
            started = thread_cpu()
            for i in range(lines):
                log_session(session)
                if i % LINES_PER_TURN == LINES_PER_TURN - 1:
                    clock.advance(0)
            clock.advance(0)
            ended = thread_cpu()
        finally:
            sink.close()
            stop.set()
            if drainer is not None:
                drainer.join()
            if server is not None:
                server.close()
        if target == "syslog-udp" and sink.dropped:
            print(f"note: {sink.dropped} datagrams dropped", flush=True)
    return ((ended[0] - started[0]) / lines * 1e6, (ended[1] - started[1]) / lines * 1e6)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Run every case and print the table.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    cases = [(t, s) for s in ("tcplog", "json") for t in ("file", "syslog-udp")]
    results: dict = {case: [] for case in cases}
    for _ in range(args.rounds):
        for case in cases:
            results[case].append(one_case(case[0], case[1], args.lines))
    rows: List[str] = [
        "| log-format | to | µs CPU per line | of which user (Python) | of which system (kernel) |",
        "|---|---|---:|---:|---:|",
    ]
    for (target, style), values in results.items():
        user = statistics.median(u for u, _ in values)
        system = statistics.median(s for _, s in values)
        total = statistics.median(u + s for u, s in values)
        rows.append(f"| {style} | {target} | {total:.2f} | {user:.2f} | {system:.2f} |")
    print(f"{args.lines:,} lines per case, median of {args.rounds} rounds, {sys.implementation.name} {sys.version.split()[0]}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
