"""
Do health checks slow the relay down?  Relay latency through l4lb with and
without 200 servers checked every 100 ms.

    python bench/bench_checks.py                 # 200 servers, inter 100ms, 3 rounds
    python bench/bench_checks.py --servers 50 --inter 20 --rounds 1

Each run starts C{twistd l4lb} (the one beside this interpreter) with a
frontend relaying to one echo server, plus a second backend of N servers
that nobody connects to but that l4lb health-checks (C{check inter I}); the
baseline run has the same servers without C{check}.  A client then
measures, one at a time, round trips of 64 bytes on one relayed connection
and whole short connections (connect, 64 bytes there and back, close).  The
report gives the medians and 99th percentiles of both runs and their
ratios, and the checks per second that the check targets actually saw.

Everything is bounded: every socket operation has a timeout, every loop a
count, and l4lb is killed if it does not stop.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

IO_TIMEOUT = 5.0
READY_TIMEOUT = 20.0
PAYLOAD = b"x" * 64


class Listeners:
    """
    Many listening sockets served by one thread: each accepted connection
    is echoed (the relay target) or closed at once (check targets), and
    counted.
    """

    def __init__(self, count: int, echo: bool) -> None:
        self.echo = echo
        self.accepted = 0
        self.selector = selectors.DefaultSelector()
        self.ports: List[int] = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(1024)
            sock.setblocking(False)
            self.ports.append(sock.getsockname()[1])
            self.selector.register(sock, selectors.EVENT_READ, "listen")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> "Listeners":
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "listen":
                    try:
                        conn, _ = sock.accept()
                    except OSError:
                        continue
                    self.accepted += 1
                    if self.echo:
                        conn.setblocking(False)
                        self.selector.register(conn, selectors.EVENT_READ, "echo")
                    else:
                        conn.close()
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    try:
                        sock.sendall(data)
                        continue
                    except OSError:
                        pass
                self.selector.unregister(sock)
                sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


class TargetProcess:
    """
    The check targets, in a process of their own so that accepting
    thousands of checks a second does not steal the measuring client's
    interpreter lock.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.ports: List[int] = []
        self._accepted = multiprocessing.Value("q", 0)
        self._stop = multiprocessing.Event()
        parent, child = multiprocessing.Pipe()
        self._process = multiprocessing.Process(
            target=self._main, args=(count, child, self._accepted, self._stop), daemon=True
        )
        self._process.start()
        if not parent.poll(READY_TIMEOUT):
            raise SystemExit("the check targets did not start")
        self.ports = parent.recv()

    @staticmethod
    def _main(count: int, pipe: object, accepted: object, stop: object) -> None:
        listeners = Listeners(count, echo=False).start()
        pipe.send(listeners.ports)  # type: ignore[attr-defined]
        while not stop.wait(0.05):  # type: ignore[attr-defined]
            accepted.value = listeners.accepted  # type: ignore[attr-defined]
        listeners.stop()

    @property
    def accepted(self) -> int:
        return int(self._accepted.value)  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


def cpu_seconds(pid: int) -> float:
    """
    User and system CPU seconds used by a process so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(front: int, echo_port: int, targets: Sequence[int], inter: int, checks: bool) -> str:
    """
    The lb.ini of one run.
    """
    option = f" check inter {inter}" if checks else ""
    lines = [
        "[global]",
        "maxconn = 20000",
        "log = none",
        "",
        "[defaults]",
        "mode = tcp",
        "timeout connect = 2s",
        "timeout client = 30s",
        "timeout server = 30s",
        "",
        "[frontend fe]",
        f"bind = 127.0.0.1:{front}",
        "default_backend = relay",
        "",
        "[backend relay]",
        f"server echo = 127.0.0.1:{echo_port}",
        "",
        "[backend checked]",
    ]
    lines += [f"server t{i} = 127.0.0.1:{port}{option}" for i, port in enumerate(targets)]
    return "\n".join(lines) + "\n"


def start_l4lb(path: str, workdir: str) -> subprocess.Popen[bytes]:
    """
    Start twistd l4lb and wait (bounded) until its frontend started.
    """
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        [twistd, "-n", "--pidfile=", "l4lb", "--config", path],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            chunk = proc.stdout.read() or b""
        except BlockingIOError:
            chunk = b""
        seen += chunk
        if b"Proxy fe started." in seen:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    raise SystemExit(f"l4lb did not start:\n{seen.decode(errors='replace')[-2000:]}")


def stop_l4lb(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return data


def round_trips(port: int, count: int) -> List[float]:
    """
    Seconds for each of C{count} 64-byte round trips on one connection.
    """
    times: List[float] = []
    with socket.create_connection(("127.0.0.1", port), IO_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(PAYLOAD)
            recv_exactly(sock, len(PAYLOAD))
            times.append(time.perf_counter() - started)
    return times


def connections(port: int, count: int) -> List[float]:
    """
    Seconds for each of C{count} short connections (connect, echo, close).
    """
    times: List[float] = []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), IO_TIMEOUT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(PAYLOAD)
            recv_exactly(sock, len(PAYLOAD))
        times.append(time.perf_counter() - started)
    return times


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(args: argparse.Namespace, checks: bool) -> Dict[str, float]:
    """
    One run: start the servers and l4lb, warm up, measure, stop.
    """
    echo = Listeners(1, echo=True).start()
    targets = TargetProcess(args.servers)
    front = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "lb.ini")
        with open(path, "w") as f:
            f.write(config(front, echo.ports[0], targets.ports, args.inter, checks))
        proc = start_l4lb(path, workdir)
        try:
            # Let every check loop pass its staggered start.
            time.sleep(max(1.0, 3 * args.inter / 1000.0))
            round_trips(front, min(200, args.requests))
            time.sleep(0.2)
            accepted_before, started = targets.accepted, time.monotonic()
            cpu_before = cpu_seconds(proc.pid)
            rtt = round_trips(front, args.requests)
            conn = connections(front, args.connections)
            time.sleep(0.2)
            elapsed = time.monotonic() - started
            cpu = (cpu_seconds(proc.pid) - cpu_before) / elapsed
            checks_per_second = (targets.accepted - accepted_before) / elapsed
        finally:
            stop_l4lb(proc)
            echo.stop()
            targets.stop()
    return {
        "rtt_p50": statistics.median(rtt) * 1e6,
        "rtt_p90": percentile(rtt, 0.90) * 1e6,
        "rtt_p99": percentile(rtt, 0.99) * 1e6,
        "conn_p50": statistics.median(conn) * 1e6,
        "conn_p99": percentile(conn, 0.99) * 1e6,
        "checks_per_second": checks_per_second,
        "cpu": cpu * 100,
    }


def report(base: Dict[str, float], loaded: Dict[str, float], args: argparse.Namespace) -> str:
    rows = [
        ("round trip p50 (us)", "rtt_p50"),
        ("round trip p90 (us)", "rtt_p90"),
        ("round trip p99 (us)", "rtt_p99"),
        ("short connection p50 (us)", "conn_p50"),
        ("short connection p99 (us)", "conn_p99"),
    ]
    lines = [
        f"{args.servers} servers checked every {args.inter} ms;"
        f" {args.requests} round trips, {args.connections} short connections per run;"
        f" medians of {args.rounds} alternating rounds",
        "",
        "| Relay latency | without checks | with checks | ratio |",
        "|---|---|---|---|",
    ]
    for label, key in rows:
        ratio = loaded[key] / base[key] if base[key] else float("nan")
        lines.append(f"| {label} | {base[key]:.0f} | {loaded[key]:.0f} | {ratio:.2f} |")
    lines.append(f"| l4lb CPU during the run (%) | {base['cpu']:.0f} | {loaded['cpu']:.0f} | |")
    lines.append(
        f"| checks/s seen by the servers | {base['checks_per_second']:.0f}"
        f" | {loaded['checks_per_second']:.0f} | |"
    )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--servers", type=int, default=200, help="checked servers (default 200)")
    parser.add_argument("--inter", type=int, default=100, help="check interval in ms (default 100)")
    parser.add_argument("--requests", type=int, default=3000, help="round trips per run (default 3000)")
    parser.add_argument("--connections", type=int, default=300, help="short connections per run (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each kind, alternating (default 3)")
    args = parser.parse_args(argv)
    runs: Dict[bool, List[Dict[str, float]]] = {False: [], True: []}
    for _ in range(max(1, args.rounds)):
        for checks in (False, True):
            runs[checks].append(run(args, checks))

    def medians(results: List[Dict[str, float]]) -> Dict[str, float]:
        return {key: statistics.median(r[key] for r in results) for key in results[0]}

    print(report(medians(runs[False]), medians(runs[True]), args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
