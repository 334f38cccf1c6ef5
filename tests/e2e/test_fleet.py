"""
A fleet of three l4lb instances behind an ECMP router (L{tests.e2e.fleet}):
BIRD on the router learns the virtual address over BGP from ExaBGP on each
instance, which announces it while the instance's C{/ready} answers 200.

The tests run in order on one fleet (the last one kills an instance), and
print what they measured in the run's summary: connections per instance,
backend agreement, connections broken, and how long until new flows
avoided a drained or killed instance.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import time
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from .fleet import (
    ETCD_PORT,
    ETCD_PREFIX,
    HOLD_TIME,
    INSTANCES,
    MAGLEV_PORT,
    PREFIX,
    ROUTER_LB,
    SERVER_TCP,
    SERVERS,
    SOURCE_PORT,
    UDP_PORT,
    VIP,
    Fleet,
    client_sources,
    wait_for,
)
from .harness import wait_until

#: Seconds a held-connections run lasts (the event happens in its middle).
HOLD_SECONDS = 12.0
#: A datagram flow's fixed source port, so that two runs are the same flow.
UDP_SOURCE_PORT = 41000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """
    The fleet with conntrack pinning on the router, removed after the
    module whatever happens.
    """
    built = Fleet(str(tmp_path_factory.mktemp("fleet")))
    try:
        built.build()
        built.start()
        yield built
    finally:
        built.close()
        assert built.leftovers() == []


def per_source(results: List[Dict[str, Any]]) -> Dict[str, set]:
    """
    The backends each source reached.
    """
    seen: Dict[str, set] = {}
    for item in results:
        assert "error" not in item, item
        seen.setdefault(item["source"], set()).add(item["backend"])
    return seen


def current_connections(fleet: Fleet, numbers: List[int]) -> int:
    """
    The connections open now through the instances C{numbers}.
    """
    total = 0
    for number in numbers:
        for line in fleet.command(number, "show info").splitlines():
            if line.startswith("CurrConns:"):
                total += int(line.split(":")[1])
    return total


def held_run(fleet: Fleet, event: Callable[[], None], live: List[int]) -> Dict[str, Any]:
    """
    Hold one connection per source (each exchanging a line every 0.2 s)
    and open a new connection every 0.05 s, call C{event} once they are
    all established, and return the client's record, with C{event_at}
    (seconds from the client's start).
    """
    started = time.monotonic()
    client = fleet.start_client(
        "hold", "--port", str(SOURCE_PORT), "--sources", ",".join(fleet.sources),
        "--seconds", str(HOLD_SECONDS),
    )
    try:
        assert wait_until(
            lambda: current_connections(fleet, live) >= len(fleet.sources), 8.0, 0.1
        ), fleet.diagnostics()
        event_at = time.monotonic() - started
        event()
        record = fleet.finish_client(client)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    record["event_at"] = event_at
    return record


def test_flows_spread_and_every_instance_agrees(fleet: Fleet, client_counts: Any) -> None:
    """Connections from 48 source addresses spread over the three instances, and with source hashing (consistent) and maglev every connection of one client reaches the same backend whichever instance carried it; so do a client's datagrams."""
    for port, name in ((SOURCE_PORT, "source consistent"), (MAGLEV_PORT, "maglev")):
        spread = fleet.run_client(
            "spread", "--port", str(port), "--sources", ",".join(fleet.sources), "--per-source", "4"
        )["connections"]
        by_instance = Counter(item.get("via", "error") for item in spread)
        seen = per_source(spread)
        disagreeing = sum(1 for backends in seen.values() if len(backends) > 1)
        several = sum(
            1 for source in seen
            if len({i["via"] for i in spread if i["source"] == source}) > 1
        )
        client_counts(
            f"fleet {name}", connections=len(spread),
            per_instance="/".join(str(by_instance[a]) for a in INSTANCES.values()),
            clients_through_several_instances=several, clients_disagreeing=disagreeing,
        )
        assert set(by_instance) == set(INSTANCES.values()), by_instance
        assert several > 0, "no client went through two instances: agreement is untested"
        assert disagreeing == 0
    answers = fleet.run_client(
        "udp", "--port", str(UDP_PORT), "--sources", ",".join(fleet.sources), "--rounds", "2",
        "--source-port", str(UDP_SOURCE_PORT),
    )["answers"]
    assert all(len(backends) == 1 for backends in per_source(answers).values())


def etcd_statuses(fleet: Fleet, server: str) -> List[str]:
    """
    The status of C{by_etcd/SERVER} in each instance's C{show stat}.
    """
    statuses = []
    for number in INSTANCES:
        rows = csv.DictReader(io.StringIO(fleet.command(number, "show stat").lstrip("# ")))
        found = [r["status"] for r in rows if r["pxname"] == "by_etcd" and r["svname"] == server]
        statuses.append(found[0] if found else "absent")
    return statuses


def test_etcd_change_reaches_every_instance_within_a_second(fleet: Fleet, client_counts: Any) -> None:
    """The three instances take backend by_etcd's servers from one etcd prefix; an etcdctl put that drains a server shows as DRAIN in all three within a second, and connections through any instance avoid it; putting it back makes it take connections again."""
    assert etcd_statuses(fleet, "e2") == ["no check"] * 3
    fleet.etcdctl("put", f"{ETCD_PREFIX}e2", f"{SERVERS['s2']}:{SERVER_TCP} drain")
    took = wait_for(lambda: etcd_statuses(fleet, "e2") == ["DRAIN"] * 3, 5.0, 0.02)
    assert took is not None, etcd_statuses(fleet, "e2")
    spread = fleet.run_client(
        "spread", "--port", str(ETCD_PORT), "--sources", ",".join(fleet.sources)
    )["connections"]
    client_counts(
        "fleet etcd drain", reached_every_instance_after_s=round(took, 3),
        connections=len(spread), to_drained=sum(1 for c in spread if c.get("backend") == "s2"),
    )
    assert took <= 1.0
    assert all("error" not in c for c in spread), spread[:3]
    assert {c["backend"] for c in spread} <= {"s1", "s3"}
    fleet.etcdctl("put", f"{ETCD_PREFIX}e2", f"{SERVERS['s2']}:{SERVER_TCP}")
    assert wait_for(lambda: etcd_statuses(fleet, "e2") == ["no check"] * 3, 5.0) is not None


def test_drained_instance_keeps_its_connections_and_gets_no_new_flow(
    fleet: Fleet, client_counts: Any
) -> None:
    """set instance state drain on instance 1: its route is withdrawn within the check interval and BGP's update time, its established connections finish, new flows go to the other two, and no connection anywhere breaks; set instance state ready brings the route back."""
    drained = INSTANCES[1]
    timing: Dict[str, float] = {}

    def drain() -> None:
        assert fleet.command(1, "set instance state drain") == "\n"
        took = wait_for(lambda: drained not in fleet.paths(), 10.0)
        assert took is not None, fleet.diagnostics()
        timing["withdrawn"] = took

    record = held_run(fleet, drain, list(INSTANCES))
    held = record["held"]
    broken = [h for h in held if h["error"]]
    on_drained = sum(1 for h in held if h["via"] == drained)
    drained_at = record["event_at"]
    last_new = max(
        (p["at"] for p in record["probes"] if p.get("via") == drained), default=drained_at
    )
    failed_probes = [p for p in record["probes"] if "error" in p]
    client_counts(
        "fleet drain", held=len(held), held_on_drained=on_drained, broken=len(broken),
        route_withdrawn_after_s=round(timing["withdrawn"], 2),
        last_new_flow_on_drained_after_s=round(max(0.0, last_new - drained_at), 2),
        new_connections=len(record["probes"]), new_failed=len(failed_probes),
    )
    assert on_drained > 0, "no held connection went through the drained instance"
    assert broken == [], broken
    assert failed_probes == [], failed_probes[:5]
    assert all(h["exchanged"] > 5 for h in held), held
    # New flows avoided the drained instance from the withdrawal on.
    late = [
        p for p in record["probes"]
        if p["at"] > drained_at + timing["withdrawn"] + 0.5 and p.get("via") == drained
    ]
    assert late == []
    assert fleet.command(1, "set instance state ready") == "\n"
    assert wait_for(lambda: drained in fleet.paths(), 10.0) is not None, fleet.diagnostics()


def test_killed_instance_breaks_only_its_own_connections(fleet: Fleet, client_counts: Any) -> None:
    """Instance 3 dies (l4lb and ExaBGP killed with SIGKILL, its link down): only the connections it carried break; within the BGP hold time new flows go to the other two; a client's datagrams keep reaching the same backend through the survivors."""
    dead = INSTANCES[3]
    before = per_source(
        fleet.run_client(
            "udp", "--port", str(UDP_PORT), "--sources", ",".join(fleet.sources), "--rounds", "1",
            "--source-port", str(UDP_SOURCE_PORT),
        )["answers"]
    )
    timing: Dict[str, float] = {}

    def kill() -> None:
        fleet.ip(fleet.instance_ns[3], "link", "set", "l0", "down")
        fleet.kill("l4lb3", signal.SIGKILL)
        fleet.kill("exabgp3", signal.SIGKILL)
        took = wait_for(lambda: dead not in fleet.paths(), HOLD_TIME + 5.0)
        assert took is not None, fleet.diagnostics()
        timing["withdrawn"] = took

    record = held_run(fleet, kill, list(INSTANCES))
    held = record["held"]
    own = [h for h in held if h["via"] == dead]
    survivors_broken = [h for h in held if h["via"] != dead and h["error"]]
    killed_at = record["event_at"]
    after = [p for p in record["probes"] if p["at"] > killed_at + timing["withdrawn"] + 0.5]
    meanwhile = [
        p for p in record["probes"]
        if killed_at <= p["at"] <= killed_at + timing["withdrawn"] + 0.5 and "error" in p
    ]
    client_counts(
        "fleet kill", held=len(held), held_on_killed=len(own),
        killed_broken=sum(1 for h in own if h["error"]), survivors_broken=len(survivors_broken),
        route_withdrawn_after_s=round(timing["withdrawn"], 2),
        new_failed_before_withdrawal=len(meanwhile),
        new_after_withdrawal=len(after),
        new_failed_after_withdrawal=sum(1 for p in after if "error" in p),
    )
    assert own, "no held connection went through the killed instance"
    assert survivors_broken == [], survivors_broken
    assert timing["withdrawn"] <= HOLD_TIME + 2.0
    assert after and all("error" not in p and p["via"] != dead for p in after), after[:5]
    answers = fleet.run_client(
        "udp", "--port", str(UDP_PORT), "--sources", ",".join(fleet.sources), "--rounds", "1",
        "--source-port", str(UDP_SOURCE_PORT),
    )["answers"]
    assert all(item.get("via") != dead for item in answers)
    assert per_source(answers) == before


def test_without_pinning_a_withdrawn_route_moves_established_flows(
    tmp_path_factory: pytest.TempPathFactory, client_counts: Any
) -> None:
    """Without the router's conntrack pinning (plain ECMP), draining an instance moves its established connections to instances that do not know them, which reset them: the reason the router pins flows."""
    bare = Fleet(str(tmp_path_factory.mktemp("fleet-bare")), pinning=False, sources=24)
    try:
        bare.build()
        bare.start()
        drained = INSTANCES[1]

        def drain() -> None:
            assert bare.command(1, "set instance state drain") == "\n"
            assert wait_for(lambda: drained not in bare.paths(), 10.0) is not None

        record = held_run(bare, drain, list(INSTANCES))
    finally:
        bare.close()
    assert bare.leftovers() == []
    held = record["held"]
    on_drained = [h for h in held if h["via"] == drained]
    others_broken = [h for h in held if h["via"] != drained and h["error"]]
    client_counts(
        "fleet drain without pinning", held=len(held), held_on_drained=len(on_drained),
        drained_broken=sum(1 for h in on_drained if h["error"]),
        others_broken=len(others_broken),
    )
    assert on_drained, "no held connection went through the drained instance"
    assert all(h["error"] for h in on_drained), on_drained


def _nexthops(ns: str, flows: List[Tuple[str, int]], directory: str) -> List[str]:
    """
    The next hop the router's kernel picks for each C{(source, port)}
    flow to the VIP, read with C{ip route get} in one batch.
    """
    batch = os.path.join(directory, "flows.batch")
    with open(batch, "w") as f:
        for source, port in flows:
            f.write(f"route get {VIP} from {source} iif d1 ipproto tcp sport {port} dport {SOURCE_PORT}\n")
    done = subprocess.run(
        ["ip", "-n", ns, "-batch", batch], capture_output=True, text=True, timeout=60, check=True
    )
    hops = re.findall(r"via (198\.18\.2\.\d+)", done.stdout)
    assert len(hops) == len(flows), done.stdout[-2000:] + done.stderr[-2000:]
    return hops


@pytest.mark.parametrize("kind", ["mpath", "resilient"])
def test_removing_a_next_hop_moves_other_flows_unless_the_group_is_resilient(
    tmp_path: Any, kind: str, client_counts: Any
) -> None:
    """What the router's kernel does when one of three instances' next hops goes away, checked flow by flow with ip route get: a plain multipath group (hash-threshold, what BIRD 2.0 installs) moves some flows of the remaining instances too; a resilient group (Linux 5.13+) moves only the removed instance's flows."""
    ns = f"{PREFIX}{os.getpid()}k"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        def ip(*words: str) -> None:
            subprocess.run(["ip", "-n", ns, *words], check=True, timeout=30, capture_output=True)

        ip("link", "set", "lo", "up")
        for dev in ("d0", "d1"):
            ip("link", "add", dev, "type", "veth", "peer", "name", f"{dev}p")
        ip("addr", "add", f"{ROUTER_LB}/24", "dev", "d0")
        ip("addr", "add", "198.18.1.1/24", "dev", "d1")
        for dev in ("d0", "d0p", "d1", "d1p"):
            ip("link", "set", dev, "up")
        subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
             "net.ipv4.fib_multipath_hash_policy=1"],
            check=True, timeout=30,
        )  # fmt: skip
        for number, address in INSTANCES.items():
            ip("nexthop", "add", "id", str(number), "via", address, "dev", "d0")
        extra = ["type", "resilient", "buckets", "128", "idle_timer", "0"] if kind == "resilient" else []
        try:
            ip("nexthop", "add", "id", "10", "group", "1/2/3", *extra)
        except subprocess.CalledProcessError as e:
            pytest.fail(f"this kernel has no {kind} next-hop groups: {e.stderr}")
        ip("route", "add", f"{VIP}/32", "nhid", "10")
        flows = [(source, 20000 + port) for source in client_sources() for port in range(5)]
        before = _nexthops(ns, flows, str(tmp_path))
        assert set(before) == set(INSTANCES.values())
        ip("nexthop", "replace", "id", "10", "group", "1/2", *extra)
        after = _nexthops(ns, flows, str(tmp_path))
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=30)
    removed = INSTANCES[3]
    moved_own = sum(1 for b, a in zip(before, after) if b == removed)
    kept = [(b, a) for b, a in zip(before, after) if b != removed]
    moved_others = sum(1 for b, a in kept if a != b)
    client_counts(
        f"next-hop group {kind}", flows=len(flows), on_removed=moved_own,
        on_others=len(kept), others_moved=moved_others,
    )
    assert removed not in after
    if kind == "resilient":
        assert moved_others == 0
    else:
        assert moved_others > 0
