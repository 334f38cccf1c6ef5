"""
Micro-benchmark of the choice of a server: picks per second of every
balancing algorithm over 10 and 1,000 servers.

Each measurement picks for about C{--seconds} (0.5 by default) with
distinct client addresses, counting nothing but C{pick}; the time to
build the balancer (rings and tables) is shown too.  It stops by itself::

    python bench/bench_balancers.py [--seconds 0.5] [--sizes 10,1000]
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
]


def build(count: int, settings: Dict[str, object]) -> BackendState:
    """
    Return a backend of C{count} servers, weights 1 to 4, with C{settings}.
    """
    specs = tuple(
        ServerSpec(
            f"srv{i}",
            f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            80,
            address=f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            weight=1 + i % 4,
        )
        for i in range(count)
    )
    name = str(settings["balance"])
    options = {k: v for k, v in settings.items() if k != "balance"}
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


def main(argv: List[str]) -> int:
    """
    Run every case at every size and print a table.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--sizes", default="10,1000", help="numbers of servers, comma-separated")
    options = parser.parse_args(argv)
    sizes = [int(s) for s in options.sizes.split(",")]
    rng = random.Random(1)
    clients = [".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(4096)]
    print(f"{'algorithm':<26}{'servers':>8}{'build ms':>10}{'picks/s':>12}")
    for label, settings in CASES:
        for count in sizes:
            started = time.perf_counter()
            state = build(count, settings)
            built = (time.perf_counter() - started) * 1000
            rate = measure(state, clients, options.seconds)
            print(f"{label:<26}{count:>8}{built:>10.1f}{rate:>12,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
