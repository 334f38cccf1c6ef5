"""
Property tests over every algorithm of L{l4lb.balancers}: random server
sets, weights and state changes (bounded and derandomized), and the
distribution guarantees of the hashing algorithms over 100,000 clients.
"""

from __future__ import annotations

import functools
import math
import random as _random
from collections import Counter
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l4lb.balancers import ring
from l4lb.balancers.maglev import maglev_table
from l4lb.pool import BackendState, Server
from tests.balancerkit import ALGORITHMS, backend, spec
from tests.test_roundrobin import _expected

KEYS = 100_000

# Rings of this many points keep the tests of rules (rather than of
# distribution) fast; the rules do not depend on the ring's size.
SMALL_RING = 512


@pytest.fixture(autouse=True)
def _default_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Keep L{ring.RING_POINTS} at its default unless a test shrinks it.
    """
    monkeypatch.setattr(ring, "RING_POINTS", ring.RING_POINTS)


@functools.lru_cache(maxsize=1)
def many_clients() -> Tuple[str, ...]:
    """
    Return L{KEYS} distinct IPv4 client addresses, the same on every run.
    """
    rng = _random.Random(2024)
    seen = set()
    while len(seen) < KEYS:
        seen.add(rng.getrandbits(32))
    return tuple(
        f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}" for n in sorted(seen)
    )


_servers = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),  # weight
        st.booleans(),  # backup
        st.integers(min_value=0, max_value=3),  # maxconn
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@settings(max_examples=60, derandomize=True, deadline=None)
@given(specs=_servers, allbackups=st.booleans(), data=st.data())
def test_only_allowed_servers(
    algorithm: str,
    specs: List[Tuple[int, bool, int]],
    allbackups: bool,
    data: st.DataObject,
) -> None:
    """
    Whatever the servers' weights, limits and state changes (through the
    pool's methods, so that the hooks run), every algorithm returns a
    server that HAProxy's rules allow (never down, drained, in maintenance,
    of weight 0 or full), and C{None} only when there is none.
    """
    ring.RING_POINTS = SMALL_RING
    state = backend(
        algorithm,
        [spec(f"s{i}", w, backup=b, maxconn=m) for i, (w, b, m) in enumerate(specs)],
        allbackups=allbackups,
    )
    servers = state.servers
    index = st.integers(min_value=0, max_value=len(servers) - 1)
    taken: List[Server] = []
    for step in range(data.draw(st.integers(min_value=1, max_value=20), "steps")):
        server = servers[data.draw(index, "server")]
        change = data.draw(
            st.sampled_from(["health", "admin", "weight", "drop", "none"]), "change"
        )
        if change == "health":
            server.set_health(not server.up)
        elif change == "admin":
            server.set_admin(data.draw(st.sampled_from(["ready", "drain", "maint"])))
        elif change == "weight":
            server.set_weight(data.draw(st.integers(min_value=0, max_value=5)))
        elif change == "drop" and taken:
            state.drop(taken.pop(0))
        avoided = {servers[i] for i in data.draw(st.lists(index, max_size=2), "avoid")}
        client = f"192.0.2.{step}"
        for _ in range(3):
            chosen: Optional[Server] = state.pick(client, avoided)
            expected = _expected(servers, avoided, allbackups)
            if expected:
                assert chosen in expected
                state.take(chosen)
                taken.append(chosen)
            else:
                assert chosen is None


@settings(max_examples=40, derandomize=True, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=6))
def test_static_rr_exact_cycle(weights: List[int]) -> None:
    """Over any whole cycle, static-rr gives each server exactly its weight in turns."""
    state = backend("static-rr", [spec(f"s{i}", w) for i, w in enumerate(weights)])
    for _ in range(3):
        cycle = Counter(state.pick(None).name for _ in range(sum(weights)))  # type: ignore[union-attr]
        assert cycle == {f"s{i}": w for i, w in enumerate(weights)}


def _shares(state: BackendState, hashing: bool) -> Dict[str, float]:
    """
    Pick L{KEYS} times (with a distinct client each time when hashing) and
    return each server's share of the picks.
    """
    picks: Counter = Counter()
    if hashing:
        for client in many_clients():
            picks[state.pick(client).name] += 1  # type: ignore[union-attr]
    else:
        for _ in range(KEYS):
            picks[state.pick(None).name] += 1  # type: ignore[union-attr]
    return {name: count / KEYS for name, count in picks.items()}


@pytest.mark.parametrize(
    "algorithm, hashing",
    [
        ("random", False),
        ("random(3)", False),
        ("source", True),
        ("source-consistent", True),
        ("maglev", True),
    ],
)
@settings(max_examples=4, derandomize=True, deadline=None)
@given(weights=st.lists(st.integers(min_value=1, max_value=5), min_size=2, max_size=6))
def test_weights_within_two_percent(algorithm: str, hashing: bool, weights: List[int]) -> None:
    """
    Over 100,000 picks (distinct clients for hashing algorithms), each
    server's share is within 2 percentage points of its weight's share.
    """
    settings_ = {"balance_args": ("65537",)} if algorithm == "maglev" else {}
    state = backend(algorithm, [spec(f"s{i}", w) for i, w in enumerate(weights)], **settings_)
    shares = _shares(state, hashing)
    total = sum(weights)
    for i, weight in enumerate(weights):
        assert abs(shares.get(f"s{i}", 0.0) - weight / total) <= 0.02


@settings(max_examples=100, derandomize=True, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=4), min_size=2, max_size=6),
    actions=st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=5)), max_size=60),
)
def test_leastconn_never_more_loaded(weights: List[int], actions: List[Tuple[bool, int]]) -> None:
    """
    leastconn never picks a server with more connections per unit of
    weight than another server it could have picked.
    """
    state = backend("leastconn", [spec(f"s{i}", w) for i, w in enumerate(weights)])
    servers = state.servers
    for is_pick, which in actions:
        if not is_pick:
            server = servers[which % len(servers)]
            if server.current:
                state.drop(server)
            continue
        chosen = state.pick(None)
        assert chosen is not None
        for other in servers:
            assert chosen.current * other.weight <= other.current * chosen.weight
        state.take(chosen)


def _moved(before: Dict[str, Server], after: Dict[str, Server]) -> List[str]:
    return [c for c in before if before[c] is not after[c]]


@pytest.mark.parametrize("algorithm", ["source-consistent", "maglev"])
@pytest.mark.parametrize("count", [5, 10])
def test_removal_moves_only_its_keys(algorithm: str, count: int) -> None:
    """
    When one of N servers goes down, at most 1/N + 1% of 100,000 clients
    move (with consistent hashing, only that server's own), and when it
    comes back every client returns to its server.
    """
    settings_ = {"balance_args": ("65537",)} if algorithm == "maglev" else {}
    state = backend(algorithm, [spec(f"node-{i}") for i in range(count)], **settings_)
    keys = many_clients()
    before = {c: state.pick(c) for c in keys}
    victim = state.server("node-3")
    victim.set_health(False)
    during = {c: state.pick(c) for c in keys}
    moved = _moved(before, during)  # type: ignore[arg-type]
    assert len(moved) <= (1 / count + 0.01) * KEYS
    assert all(during[c] is not victim for c in keys)
    own = [c for c in keys if before[c] is victim]
    assert set(own) <= set(moved)
    if algorithm == "source-consistent":
        assert set(moved) == set(own)
    victim.set_health(True)
    assert all(state.pick(c) is before[c] for c in keys)


def test_maglev_even_for_ten() -> None:
    """
    With 10 servers, each holds within 1% of an even share of Maglev's
    table, and receives within 1 percentage point of 10% of 100,000
    clients.
    """
    state = backend("maglev", [spec(f"node-{i}") for i in range(10)], balance_args=("65537",))
    table = Counter(s.name for s in state.balancer.table())  # type: ignore[attr-defined]
    for count in table.values():
        assert abs(count - 65537 / 10) <= 0.01 * 65537 / 10
    for share in _shares(state, hashing=True).values():
        assert abs(share - 0.1) <= 0.01


@settings(max_examples=30, derandomize=True, deadline=None)
@given(
    count=st.integers(min_value=2, max_value=8),
    factor=st.sampled_from([100, 125, 150, 200]),
    actions=st.lists(st.integers(min_value=0, max_value=9), min_size=20, max_size=200),
)
def test_bounded_load(count: int, factor: int, actions: List[int]) -> None:
    """
    With hash-balance-factor F, taking connections never puts a server above
    F% of the average load (rounded up), whatever clients arrive and
    whichever connections end.
    """
    ring.RING_POINTS = SMALL_RING
    state = backend(
        "source-bounded",
        [spec(f"s{i}") for i in range(count)],
        hash_balance_factor=factor,
    )
    servers = state.servers
    for step, action in enumerate(actions):
        if action == 0:
            loaded = [s for s in servers if s.current]
            if loaded:
                state.drop(loaded[step % len(loaded)])
            continue
        # Few distinct clients, so that hashing alone would pile them up.
        chosen = state.pick(f"198.51.100.{action}")
        assert chosen is not None
        state.take(chosen)
        total = sum(s.current for s in servers)
        assert chosen.current <= math.ceil(factor * total / (100 * count))


@settings(max_examples=30, derandomize=True, deadline=None)
@given(
    count=st.integers(min_value=2, max_value=8),
    factor=st.sampled_from([100, 125, 150]),
    clients_=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=150),
)
def test_bounded_load_without_drops(count: int, factor: int, clients_: List[int]) -> None:
    """
    While connections only arrive, no server is ever above F% of the
    average load, rounded up.
    """
    ring.RING_POINTS = SMALL_RING
    state = backend("source-bounded", [spec(f"s{i}") for i in range(count)], hash_balance_factor=factor)
    for client in clients_:
        chosen = state.pick(f"203.0.113.{client}")
        assert chosen is not None
        state.take(chosen)
        total = sum(s.current for s in state.servers)
        bound = math.ceil(factor * total / (100 * count))
        assert all(s.current <= bound for s in state.servers)


def test_maglev_table_independent_of_order() -> None:
    """Maglev's table is the same whatever order the servers come in."""
    servers = [Server(spec(f"node-{i}", 1 + i % 3)) for i in range(7)]
    one = [s.name for s in maglev_table(servers, 1009)]
    two = [s.name for s in maglev_table(list(reversed(servers)), 1009)]
    assert one == two
