"""
Micro-benchmark of source protection: lookups per second in a set of
10,000 and 100,000 address ranges against a linear scan with
C{ipaddress}, the whole source stage per connection, and the stick table's
tracking rate and memory for 100,000 distinct sources.

Each measurement runs for about C{--seconds} (0.5 by default); the script
stops by itself::

    python bench/bench_protect.py [--seconds 0.5] [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, List, Optional

tracemalloc: Optional[ModuleType]
try:
    import tracemalloc
except ImportError:  # PyPy has no tracemalloc
    tracemalloc = None

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from l4lb.config.protect import parse_rule  # noqa: E402
from l4lb.protect.cidr import AddressSet, address_key  # noqa: E402
from l4lb.protect.stage import SourceStage  # noqa: E402
from l4lb.protect.table import StickTable  # noqa: E402
from l4lb.tcp.stages import StageRejected  # noqa: E402


def rate(work: Callable[[int], object], seconds: float, batch: int = 1000) -> float:
    """
    Calls of C{work(i)} per second, in batches, for about C{seconds}.
    """
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for i in range(done, done + batch):
            work(i)
        done += batch
    return done / (time.perf_counter() - start)


def random_ranges(rng: random.Random, count: int) -> List[str]:
    """
    C{count} random ranges, four in five IPv4 (/16 to /32), the rest IPv6.
    """
    texts = []
    for _ in range(count):
        network: Any
        if rng.random() < 0.8:
            network = ipaddress.IPv4Network((rng.randrange(1 << 32), rng.randrange(16, 33)), False)
        else:
            network = ipaddress.IPv6Network((rng.randrange(1 << 128), rng.randrange(32, 129)), False)
        texts.append(str(network))
    return texts


class _Session:
    def __init__(self, host: str) -> None:
        self.client_host = host
        self.on_end: Any = None

    def seconds(self) -> float:
        return 0.0


def main(argv: List[str]) -> int:
    """
    Run every measurement and print a Markdown table.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--sizes", default="10000,100000", help="range counts, comma-separated")
    args = parser.parse_args(argv)
    rng = random.Random(1)
    hosts = [str(ipaddress.IPv4Address(rng.randrange(1 << 32))) for _ in range(4096)]
    hosts += [str(ipaddress.IPv6Address(rng.randrange(1 << 128))) for _ in range(1024)]
    n_hosts = len(hosts)
    print("| measurement | build ms | per second |")
    print("|---|---:|---:|")
    sizes = [int(size) for size in args.sizes.split(",")]
    for count in sizes:
        texts = random_ranges(rng, count)
        started = time.perf_counter()
        ranges = AddressSet.from_texts(texts)
        build_ms = (time.perf_counter() - started) * 1000
        per_second = rate(lambda i: hosts[i % n_hosts] in ranges, args.seconds)
        print(
            f"| `src` lookup, {count:,} ranges (text address) | {build_ms:.0f}"
            f" | {per_second:,.0f} |"
        )
        keys = [key for key in map(address_key, hosts) if key is not None]
        per_second = rate(lambda i: ranges.contains_key(keys[i % n_hosts]), args.seconds)
        print(f"| `src` lookup, {count:,} ranges (parsed address) | | {per_second:,.0f} |")
        if count == sizes[0]:
            networks = [ipaddress.ip_network(t) for t in texts]
            addresses = [ipaddress.ip_address(h) for h in hosts]
            scan = rate(
                lambda i: any(addresses[i % n_hosts] in n for n in networks), args.seconds, batch=1
            )
            print(f"| linear scan with ipaddress, {count:,} ranges | | {scan:,.0f} |")
    stage = SourceStage(
        [
            parse_rule("reject if src " + " ".join(random_ranges(rng, 50))),
            parse_rule("reject if { src_conn_rate ge 1000000 }"),
            parse_rule("reject if { src_conn_cur ge 1000000 }"),
        ],
        StickTable(100_000, 30.0, 10.0),
    )

    def connection(i: int) -> None:
        session = _Session(hosts[i % n_hosts])
        try:
            stage.inspect(session, bytearray())
        except StageRejected:
            return
        session.on_end(session)

    print(f"| source stage, 3 rules, per connection | | {rate(connection, args.seconds):,.0f} |")
    table = StickTable(100_000, 30.0, 10.0)
    if tracemalloc is None:
        print("| stick table memory, 100,000 sources | | n/a (no tracemalloc on this Python) |")
    else:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for key in range(100_000):
            table.track(key, 0.0)
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        print(f"| stick table memory, 100,000 sources | | {used / 100_000:.0f} bytes/source |")
    full = StickTable(1000, 30.0, 10.0)
    per_second = rate(lambda i: full.track(i, 0.0), args.seconds)
    print(f"| track a new source in a full table (evicts one) | | {per_second:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
