"""
Micro-benchmark of the choice of a server: picks per second of every
balancing algorithm over 10, 1,000 and 10,000 servers.

Each measurement picks for about C{--seconds} (0.5 by default) with
distinct client addresses, counting nothing but C{pick}; the rows marked
"with connections" also count each connection taken and, 64 connections
later, ended, as the relay reports them.  The time to build the backend
(its servers and the balancer's rings and tables) is shown, and the time
to build the balancer again over the same servers, which is what adding or
removing a server at run time costs.  It stops by itself::

    python bench/bench_balancers.py [--seconds 0.5] [--sizes 10,1000,10000]
        [--cases roundrobin,leastconn]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from l4lb.balancers import find_factory  # noqa: E402
from l4lb.config.model import Backend, ServerSpec  # noqa: E402
from l4lb.pool import BackendState  # noqa: E402

#: What is measured: a label and the backend settings.
CASES: List[Tuple[str, Dict[str, object]]] = [
    ("roundrobin", {"balance": "roundrobin"}),
    ("static-rr", {"balance": "static-rr"}),
    ("leastconn", {"balance": "leastconn"}),
    ("first", {"balance": "first"}),
    ("random", {"balance": "random"}),
    ("source map-based", {"balance": "source"}),
    ("source consistent", {"balance": "source", "hash_type": "consistent"}),
    (
        "source consistent bf=150",
        {"balance": "source", "hash_type": "consistent", "hash_balance_factor": 150},
    ),
    ("maglev", {"balance": "maglev"}),
    ("roundrobin with connections", {"balance": "roundrobin", "churn": True}),
    ("leastconn with connections", {"balance": "leastconn", "churn": True}),
    ("roundrobin, 256 weights", {"balance": "roundrobin", "weights": 256}),
]


def build(count: int, settings: Dict[str, object]) -> BackendState:
    """
    Return a backend of C{count} servers, weights 1 to 4 (or to
    C{settings["weights"]}), with the other C{settings}.
    """
    weights = int(settings.get("weights", 4))  # type: ignore[call-overload]
    specs = tuple(
        ServerSpec(
            f"srv{i}",
            f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            80,
            address=f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            weight=1 + i % weights,
        )
        for i in range(count)
    )
    name = str(settings["balance"])
    options = {k: v for k, v in settings.items() if k not in ("balance", "churn", "weights")}
    return BackendState(Backend("be", specs, balance=name, **options), find_factory(name))  # type: ignore[arg-type]


def measure(state: BackendState, clients: List[str], seconds: float) -> float:
    """
    Pick for about C{seconds} and return the picks per second.
    """
    pick = state.balancer.pick
    size = len(clients)
    picks = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        for i in range(1000):
            pick(clients[(picks + i) % size], ())
        picks += 1000
        now = time.perf_counter()
    return picks / (now - start)


def measure_churn(state: BackendState, clients: List[str], seconds: float) -> float:
    """
    Pick, take and (64 picks later) drop for about C{seconds} and return
    the picks per second.
    """
    pick, take, drop = state.pick, state.take, state.drop
    size = len(clients)
    open_: List[object] = [None] * 64
    picks = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        for i in range(1000):
            server = pick(clients[(picks + i) % size])
            slot = (picks + i) % 64
            previous = open_[slot]
            if previous is not None:
                drop(previous)  # type: ignore[arg-type]
            if server is not None:
                take(server)
            open_[slot] = server
        picks += 1000
        now = time.perf_counter()
    return picks / (now - start)


def rebuild(state: BackendState) -> float:
    """
    Build C{state}'s balancer again over its servers, as a server added or
    removed at run time does, and return the milliseconds it took (the
    best of three, as a collection of the garbage may land in one).
    """
    factory = find_factory(state.spec.balance)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        factory.build(state.servers, state.spec.balance_args)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main(argv: List[str]) -> int:
    """
    Run every case at every size and print a table.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument(
        "--sizes", default="10,1000,10000", help="numbers of servers, comma-separated"
    )
    parser.add_argument(
        "--cases", default="", help="only the rows whose label starts with one of these"
    )
    options = parser.parse_args(argv)
    sizes = [int(s) for s in options.sizes.split(",")]
    wanted = tuple(c for c in options.cases.split(",") if c)
    rng = random.Random(1)
    clients = [".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(4096)]
    print(f"{'algorithm':<30}{'servers':>8}{'build ms':>10}{'rebuild ms':>12}{'picks/s':>12}")
    for label, settings in CASES:
        if wanted and not label.startswith(wanted):
            continue
        for count in sizes:
            started = time.perf_counter()
            state = build(count, settings)
            built = (time.perf_counter() - started) * 1000
            again = rebuild(state)
            how = measure_churn if settings.get("churn") else measure
            rate = how(state, clients, options.seconds)
            print(f"{label:<30}{count:>8}{built:>10.1f}{again:>12.1f}{rate:>12,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
