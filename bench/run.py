"""
Measure a direct connection, HAProxy, nginx's stream module and l4lb side
by side on 127.0.0.1, and write bench/results/latest.{md,json,png}.

    python bench/run.py            # 3 rounds of 5 s per load
    python bench/run.py --quick    # about 4 minutes with every contestant
    python bench/run.py --dry-run  # write and check the configurations only

See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loads, report  # noqa: E402
from bench.configs import Backends, Frontends  # noqa: E402
from bench.contestants import (  # noqa: E402
    INSTALL_HINT,
    BackendSet,
    DEFAULT_PYPY_BIN,
    Contestant,
    Running,
    all_contestants,
    default_l4lb_bin,
)
from bench.procs import choose_cpus, free_ports, raise_nofile  # noqa: E402

TESTS = ("idle", "newconn", "keepalive", "bulk", "udp64", "udp1400")
CONNECTIONS = 32
"""Concurrent connections of wrk in the new-connection and keep-alive loads."""


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """
    The command line.
    """
    p = argparse.ArgumentParser(
        prog="python bench/run.py",
        description=(
            "Benchmark l4lb against a direct connection, HAProxy and nginx (stream) on"
            " 127.0.0.1, the proxy pinned to one CPU, and write a Markdown table, JSON"
            f" and a PNG chart. Contestants are installed with: {INSTALL_HINT}"
        ),
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per load and round (default 5)")
    p.add_argument("--quick", action="store_true", help="2 rounds of 2 s and 2,000 idle connections (about 4 minutes with every contestant)")
    p.add_argument(
        "--idle-connections",
        type=int,
        default=10000,
        help="idle connections for the memory measure (default 10000, lowered to fit the open-file limit)",
    )
    p.add_argument("--only", default="", help="comma-separated contestants: direct,haproxy,nginx,l4lb,l4lb-twisted,l4lb-classic,l4lb-pypy")
    p.add_argument("--tests", default=",".join(TESTS), help=f"comma-separated loads (default {','.join(TESTS)})")
    p.add_argument("--l4lb-bin", default=default_l4lb_bin(), help="directory of the twistd running l4lb (default: this interpreter's)")
    p.add_argument(
        "--l4lb-pypy-bin",
        default=DEFAULT_PYPY_BIN,
        help=f"directory of the PyPy twistd running l4lb-pypy (default {DEFAULT_PYPY_BIN})",
    )
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output directory")
    p.add_argument("--name", default="latest", help="base name of the output files (default latest)")
    p.add_argument(
        "--logging",
        action="store_true",
        help="every proxy logs a line per connection (HAProxy and l4lb a tcplog line on standard output, to a file; nginx its access_log)",
    )
    p.add_argument("--keep", action="store_true", help="keep the working directory (configs, logs)")
    p.add_argument("--dry-run", action="store_true", help="write and validate the configurations, run nothing")
    p.add_argument("--from-json", metavar="JSON", help="only redraw the table and chart of an earlier run's JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 2, 2.0
        args.idle_connections = min(args.idle_connections, 2000)
    unknown = set(filter(None, args.tests.split(","))) - set(TESTS)
    if unknown:
        p.error(f"unknown tests: {', '.join(sorted(unknown))}")
    return args


class Bench:
    """
    One run: the backends, the contestants, the rounds.
    """

    def __init__(self, args: argparse.Namespace, workdir: str) -> None:
        self.args = args
        self.workdir = workdir
        self.tests = [t for t in TESTS if t in args.tests.split(",")]
        self.proxy_cpu, self.load_cpus = choose_cpus()
        self.nofile = raise_nofile()
        # HAProxy needs two descriptors per connection plus a few of its own
        # and refuses to start when maxconn does not fit the hard limit.
        self.maxconn = max(64, (self.nofile - 80) // 2)
        self.idle_count = max(1, min(args.idle_connections, self.maxconn - 20))
        ports = free_ports(6 + 3 * 4)
        self.backends = Backends(http=(ports[0], ports[1]), sink=(ports[2], ports[3]), udp=(ports[4], ports[5]))
        self.spare_ports = ports[6:]
        self.python = sys.executable
        self.rounds: report.Rounds = {t: {} for t in self.tests}
        self.notes: Dict[str, Dict[str, str]] = {}
        self.loadavg: List[float] = []
        self.contestants: List[Contestant] = []
        only = set(filter(None, args.only.split(",")))
        for c in all_contestants(args.l4lb_bin, args.l4lb_pypy_bin):
            if only and c.name not in only:
                continue
            c.logging = args.logging
            why = c.missing()
            if why is not None:
                print(f"note: skipping {c.label}: {why}", flush=True)
                continue
            self.contestants.append(c)
        if not loads.wrk_available():
            print(f"note: wrk is not installed ({INSTALL_HINT}); no HTTP loads", flush=True)
            self.tests = [t for t in self.tests if t not in ("newconn", "keepalive")]

    def frontends_for(self, contestant: Contestant) -> Frontends:
        """
        Fresh ports for a contestant's frontends in one round.
        """
        http, sink, udp = free_ports(3)
        return Frontends(http=http, sink=sink, udp=udp if contestant.udp else None)

    def dry_run(self) -> int:
        """
        Write every configuration and run each contestant's own check.
        """
        status = 0
        for c in self.contestants:
            if not c.is_proxy:
                continue
            config = c.write_config(self.workdir, self.frontends_for(c), self.backends, self.maxconn)
            check = c.check_argv(self.workdir, config)
            result = "written"
            if check is not None:
                out = subprocess.run(check, capture_output=True, text=True, timeout=60, env=c.env(), cwd=self.workdir)
                result = "valid" if out.returncode == 0 else f"INVALID: {(out.stdout + out.stderr).strip()}"
                status |= out.returncode != 0
            print(f"{c.label}: {config}: {result}", flush=True)
        return status

    def run(self) -> Dict[str, Any]:
        """
        Start the backends and run every round; return the metadata.
        """
        started = time.monotonic()
        self.loadavg = [os.getloadavg()[0]]
        backends = BackendSet(self.workdir, self.backends, self.maxconn, self.load_cpus, self.python)
        backends.start()
        if backends.http is None:
            print(f"note: nginx is not installed ({INSTALL_HINT}); no HTTP backend, no HTTP or idle loads", flush=True)
            self.tests = [t for t in self.tests if t not in ("newconn", "keepalive", "idle")]
        try:
            for n in range(self.args.rounds):
                shift = n % max(1, len(self.contestants))
                order = self.contestants[shift:] + self.contestants[:shift]
                for contestant in order:
                    print(f"round {n + 1}/{self.args.rounds}: {contestant.label}", flush=True)
                    self.one_round(contestant, backends)
        finally:
            backends.stop()
        self.loadavg.append(os.getloadavg()[0])
        return self.meta(time.monotonic() - started)

    def one_round(self, contestant: Contestant, backends: BackendSet) -> None:
        """
        Start the contestant fresh, run every load once, stop it.
        """
        frontends = self.frontends_for(contestant)
        cpus = [self.proxy_cpu]
        try:
            running = contestant.start(self.workdir, frontends, self.backends, self.maxconn, cpus)
        except (OSError, RuntimeError) as e:
            print(f"note: {contestant.label} did not start, skipped this round: {e}", flush=True)
            return
        try:
            for test in self.tests:
                try:
                    result = self.one_load(test, running, backends)
                except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
                    print(f"  {test}: FAILED: {e}", flush=True)
                    self.notes.setdefault(test, {})[contestant.name] = "failed"
                    continue
                if result is not None:
                    self.rounds[test].setdefault(contestant.name, []).append(result)
                    print(f"  {test}: {_brief(result)}", flush=True)
        finally:
            running.stop()

    def one_load(self, test: str, running: Running, backends: BackendSet) -> Optional[report.Result]:
        """
        One load against one contestant, with the proxy's CPU time; C{None}
        when it does not apply.
        """
        c = running.contestant
        fe = running.frontends
        seconds = self.args.seconds
        load_cpus = self.load_cpus
        load: Callable[[], report.Result]
        if test == "idle":
            if not c.is_proxy:
                return None
            load = lambda: loads.idle(fe.http, self.idle_count, running.pids, backends.http_fds)  # noqa: E731
            result = loads.measure(running.pids, load, self.proxy_cpu)
            # Warm up before the timed loads (a JIT, caches, pools).
            loads.wrk(fe.http, min(1.0, seconds), CONNECTIONS, False, load_cpus)
            return result
        if test in ("newconn", "keepalive"):
            close = test == "newconn"
            load = lambda: loads.wrk(fe.http, seconds, CONNECTIONS, close, load_cpus)  # noqa: E731
        elif test == "bulk":
            load = lambda: loads.bulk(self.python, fe.sink, seconds, load_cpus)  # noqa: E731
        else:
            if fe.udp is None:
                self.notes.setdefault(test, {})[c.name] = c.udp_note
                return None
            size = int(test[3:])
            port = fe.udp
            load = lambda: loads.udp(self.python, port, size, seconds, load_cpus)  # noqa: E731
        return loads.measure(running.pids, load, self.proxy_cpu)

    def meta(self, elapsed: float) -> Dict[str, Any]:
        """
        What ran where, for the JSON and the README.
        """
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]),
            "rounds": self.args.rounds,
            "seconds": self.args.seconds,
            "elapsed": round(elapsed, 1),
            "idle_connections": self.idle_count,
            "nofile": self.nofile,
            "proxy_cpu": self.proxy_cpu,
            "load_cpus": self.load_cpus,
            "wrk_connections": CONNECTIONS,
            "logging": self.args.logging,
            "machine": _machine(),
            "loadavg_start_end": self.loadavg,
            "versions": {c.name: c.version() for c in self.contestants if c.is_proxy},
            "contestants": [c.name for c in self.contestants],
            "tests": self.tests,
            "columns": self.columns(),
            "notes": self.notes,
        }

    def columns(self) -> List[tuple[str, str]]:
        """
        (name, label) of the contestants that ran, in table order.
        """
        return [(c.name, c.label) for c in self.contestants]


def _brief(result: report.Result) -> str:
    keys = ("rate", "p99", "per_connection", "connections", "relayed", "cpu", "other_cpu", "errors")
    return ", ".join(f"{k}={result[k]:.4g}" for k in keys if k in result)


def _machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {model}, Linux {platform.release()}"


def write_outputs(out_dir: str, name: str, meta: Dict[str, Any], rounds: report.Rounds) -> None:
    """
    Write the Markdown table, the JSON and the chart, and print the table.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = [(n, label) for n, label in meta["columns"]]
    summary = report.summarize(rounds, [n for n, _ in columns])
    table = report.markdown(summary, columns, meta["notes"], meta)
    versions = "; ".join(f"{k}: {v}" for k, v in meta["versions"].items() if v)
    shares = [
        r["other_cpu"] / r["seconds"]
        for per_test in rounds.values()
        for results in per_test.values()
        for r in results
        if r.get("seconds") and not math.isnan(r.get("other_cpu", report.NAN))
    ]
    busy = report.median(shares)
    header = (
        f"`{meta['command']}` on {meta['date']} ({meta['machine']}); proxy pinned to CPU"
        f" {meta['proxy_cpu']}, load generators and backends on CPU"
        f" {','.join(map(str, meta['load_cpus']))}; {meta['idle_connections']:,} idle connections;"
        f" {versions}; {meta['elapsed']:.0f} s in all; load average"
        f" {' then '.join(f'{v:.1f}' for v in meta['loadavg_start_end'])}"
        + ("" if math.isnan(busy) else f"; other processes kept the proxy's CPU {busy:.0%} busy during the loads (median)")
        + ".\n\n"
    )
    base = out / name
    (base.with_suffix(".md")).write_text(header + table)
    report.write_json(str(base.with_suffix(".json")), meta, rounds, summary)
    why = report.chart(str(base.with_suffix(".png")), summary, columns)
    if why:
        print(f"note: {why}", flush=True)
    print()
    print(header + table)
    print(f"written: {base}.md, {base}.json" + ("" if why else f", {base}.png"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Run the benchmark (or the dry run) and return the exit status.
    """
    args = parse_args(argv)
    if args.from_json:
        data = report.load_json(args.from_json)
        write_outputs(args.out, args.name, data["meta"], data["rounds"])
        return 0
    workdir = tempfile.mkdtemp(prefix="l4lb-bench-")
    try:
        bench = Bench(args, workdir)
        if args.dry_run:
            return bench.dry_run()
        if not any(c.is_proxy for c in bench.contestants):
            print("note: no proxy to measure", flush=True)
        meta = bench.run()
        write_outputs(args.out, args.name, meta, bench.rounds)
        return 0
    finally:
        if args.keep:
            print(f"working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
