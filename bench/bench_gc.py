"""
How long do full garbage collections stop l4lb, with and without the
C{gc.freeze()} that C{twistd l4lb} does once the service runs?

    python bench/bench_gc.py                     # 200 servers, inter 100 ms, 8 s, 2 rounds
    python bench/bench_gc.py --servers 50 --seconds 4 --rounds 1

Each run is a fresh interpreter that builds the balancer exactly as twistd
does (C{l4lb.tap.makeService}, then C{privilegedStartService} and
C{startService}) on Twisted's default reactor, with a backend of N servers
health-checked every I ms (the check targets of C{bench_checks.py}, in a
process of their own).  The "without" runs undo the freeze right after it.
C{gc.callbacks} time every collection; the report gives, per variant, the
number of full (generation 2) collections and their median and longest
pause.  Rounds alternate the variants; every run stops by itself.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_checks import TargetProcess, config, free_port  # noqa: E402

RUN_TIMEOUT = 120.0


def child(path: str, seconds: float, freeze: bool) -> Dict[str, Any]:
    """
    In this process: run the balancer of C{path} for C{seconds} and time
    every garbage collection.
    """
    from twisted.internet import reactor

    from l4lb import tap

    options = tap.Options()
    options.parseOptions(["--config", path])
    service = tap.makeService(options, reactor)
    if not freeze:
        # Runs after the freeze makeService scheduled (hooks run in order).
        reactor.callWhenRunning(gc.unfreeze)
    service.privilegedStartService()
    reactor.addSystemEventTrigger("before", "startup", service.startService)
    pauses: Dict[int, List[float]] = {0: [], 1: [], 2: []}
    started: List[float] = [0.0]

    def timer(phase: str, info: Dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started[0])

    def measure() -> None:
        for values in pauses.values():
            values.clear()
        gc.callbacks.append(timer)
        reactor.callLater(seconds, stop)

    def stop() -> None:
        gc.callbacks.remove(timer)
        reactor.stop()

    # Let the check loops pass their staggered start first.
    reactor.callLater(2.0, measure)
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]
    full = pauses[2]
    return {
        "frozen": gc.get_freeze_count(),
        "full": len(full),
        "full_median_ms": statistics.median(full) * 1e3 if full else 0.0,
        "full_max_ms": max(full) * 1e3 if full else 0.0,
        "young": len(pauses[0]) + len(pauses[1]),
    }


def run(args: argparse.Namespace, freeze: bool) -> Dict[str, Any]:
    """
    One run in a fresh interpreter.
    """
    targets = TargetProcess(args.servers)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            path = os.path.join(workdir, "lb.ini")
            with open(path, "w") as f:
                f.write(config(free_port(), free_port(), targets.ports, args.inter, True))
            argv = [sys.executable, __file__, "--child", path, "--seconds", str(args.seconds)]
            argv += [] if freeze else ["--no-freeze"]
            env = dict(os.environ)
            env.pop("PYTHONPATH", None)
            out = subprocess.run(
                argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=workdir, env=env
            )
    finally:
        targets.stop()
    if out.returncode != 0:
        raise SystemExit(f"run failed:\n{out.stdout}\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--servers", type=int, default=200, help="checked servers (default 200)")
    parser.add_argument("--inter", type=int, default=100, help="check interval in ms (default 100)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each variant, alternating (default 2)")
    parser.add_argument("--child", metavar="LB_INI", help=argparse.SUPPRESS)
    parser.add_argument("--no-freeze", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.seconds, not args.no_freeze)))
        return 0
    runs: Dict[bool, List[Dict[str, Any]]] = {False: [], True: []}
    for _ in range(max(1, args.rounds)):
        for freeze in (False, True):
            runs[freeze].append(run(args, freeze))
    print(f"{args.servers} servers checked every {args.inter} ms, {args.seconds:g} s per run, {args.rounds} rounds\n")
    print("| gc.freeze() | objects frozen | full collections | median pause (ms) | longest pause (ms) |")
    print("|---|---:|---:|---:|---:|")
    for freeze, label in ((False, "without"), (True, "with")):
        results = runs[freeze]
        print(
            f"| {label} | {statistics.median(r['frozen'] for r in results):,.0f}"
            f" | {statistics.median(r['full'] for r in results):g}"
            f" | {statistics.median(r['full_median_ms'] for r in results):.1f}"
            f" | {max(r['full_max_ms'] for r in results):.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
