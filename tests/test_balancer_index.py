"""
Tests for the indexed balancers (L{l4lb.balancers.indexed}): C{roundrobin}
gives exactly the order of the straightforward smooth weighted round robin
it replaced, C{leastconn} always the least loaded server, and neither looks
at every server for a pick.
"""

from __future__ import annotations

import random as _random
from contextlib import contextmanager
from typing import Container, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l4lb.balancers import find_factory, roundrobin
from l4lb.balancers.base import BalancerBase, BalancerFactory
from l4lb.balancers.indexed import WATCH_PER_PICK
from l4lb.config.model import Backend as BackendSpec
from l4lb.config.model import ServerSpec
from l4lb.pool import BackendState, Server


class ReferenceRoundRobin(BalancerBase):
    """
    Smooth weighted round robin the obvious way, one pass over the
    candidates per pick: the reference the indexed one must match.
    """

    name = "roundrobin"

    def setup(self) -> None:
        self._score: Dict[Server, int] = {s: 0 for s in self.servers}

    def pick(
        self, client_address: Optional[str], avoid: Container[Server] = ()
    ) -> Optional[Server]:
        candidates = self.candidates(avoid)
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            return None
        total = 0
        best = candidates[0]
        best_score = None
        for server in candidates:
            self._score[server] += server.weight
            total += server.weight
            if best_score is None or self._score[server] > best_score:
                best, best_score = server, self._score[server]
        self._score[best] -= total
        return best

    def server_up(self, server: Server) -> None:
        self._restart()

    def server_down(self, server: Server) -> None:
        self._restart()

    def _restart(self) -> None:
        for server in self._score:
            self._score[server] = 0


REFERENCE = BalancerFactory("roundrobin", ReferenceRoundRobin)

#: One server: weight, backup, maxconn.
ServerShape = Tuple[int, bool, int]


def _backend(shapes: Sequence[ServerShape], factory: object, allbackups: bool) -> BackendState:
    """
    Return a backend of servers shaped by C{shapes}, built by C{factory}.
    """
    specs = tuple(
        ServerSpec(
            f"s{i}",
            f"127.0.{i // 250}.{i % 250 + 1}",
            80,
            address=f"127.0.{i // 250}.{i % 250 + 1}",
            weight=weight,
            backup=backup,
            maxconn=maxconn,
        )
        for i, (weight, backup, maxconn) in enumerate(shapes)
    )
    spec = BackendSpec("be", specs, allbackups=allbackups)
    return BackendState(spec, factory)  # type: ignore[arg-type]


class Twins:
    """
    Two backends of the same servers, one balanced by the indexed
    C{roundrobin} and one by the reference, changed alike through the
    pool's methods (so that the hooks run, as in l4lb).
    """

    def __init__(self, shapes: Sequence[ServerShape], allbackups: bool) -> None:
        self.new = _backend(shapes, find_factory("roundrobin"), allbackups)
        self.old = _backend(shapes, REFERENCE, allbackups)
        self.taken: List[int] = []

    def apply(self, action: str, which: int, value: int) -> None:
        """
        Do C{action} to server C{which} of both backends.
        """
        for state in (self.new, self.old):
            server = state.servers[which]
            if action == "health":
                server.set_health(not server.up)
            elif action == "admin":
                server.set_admin(("ready", "drain", "maint")[value % 3])
            elif action == "weight":
                server.set_weight(value)
            elif action == "throttle" and not server.spec.maxconn:
                # A throttle also lowers maxconn, which no hook reports:
                # a server made full that way is noticed when it comes up
                # (as in HAProxy), not at once as the reference does.
                server.set_throttle(1 + value % 100)
        if action == "drop" and self.taken:
            index = self.taken.pop(value % len(self.taken))
            for state in (self.new, self.old):
                state.drop(state.servers[index])

    def pick(self, avoid: Set[int], take: bool) -> str:
        """
        Pick from both backends, avoiding the servers numbered in
        C{avoid}, check they agree, and return the name chosen.
        """
        chosen = []
        for state in (self.new, self.old):
            server = state.pick(None, {state.servers[i] for i in avoid})
            chosen.append(None if server is None else server.name)
        assert chosen[0] == chosen[1]
        if take and chosen[0] is not None:
            index = int(chosen[0][1:])
            self.taken.append(index)
            for state in (self.new, self.old):
                state.take(state.servers[index])
        return chosen[0] or "-"


_shapes = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 1, 1, 2, 3, 5, 8, 13, 256]),
        st.booleans(),
        st.sampled_from([0, 0, 1, 2, 3]),
    ),
    min_size=1,
    max_size=12,
)

_actions = st.lists(
    st.tuples(
        st.sampled_from(
            ["pick", "pick", "pick", "pick", "take", "avoid", "health", "admin", "weight",
             "throttle", "drop"]
        ),
        st.integers(min_value=0, max_value=11),
        st.integers(min_value=0, max_value=256),
    ),
    max_size=80,
)


@contextmanager
def comparing(weights: int) -> Iterator[None]:
    """
    Make C{roundrobin} compare the top servers of up to C{weights} weights
    directly (0: always through its tournament) while in the block.
    """
    saved = roundrobin.COMPARE_WEIGHTS
    roundrobin.COMPARE_WEIGHTS = weights
    try:
        yield
    finally:
        roundrobin.COMPARE_WEIGHTS = saved


@pytest.mark.parametrize("compare", [roundrobin.COMPARE_WEIGHTS, 0])
@settings(max_examples=400, derandomize=True, deadline=None)
@given(shapes=_shapes, allbackups=st.booleans(), actions=_actions)
def test_roundrobin_same_order_as_reference(
    compare: int,
    shapes: List[ServerShape],
    allbackups: bool,
    actions: List[Tuple[str, int, int]],
) -> None:
    """
    Over any servers (weights, backups, maxconn) and any sequence of
    picks, retries avoiding servers, connections taken and ended, health
    and administrative changes, runtime weights and slowstart throttles,
    the indexed C{roundrobin} picks exactly the servers, in exactly the
    order, that the one-pass smooth weighted round robin picks, whether it
    compares the weights' top servers directly or through its tournament.
    """
    with comparing(compare):
        _same_order(shapes, allbackups, actions)


def _same_order(
    shapes: List[ServerShape], allbackups: bool, actions: List[Tuple[str, int, int]]
) -> None:
    """
    Apply C{actions} to twin backends of C{shapes}; every pick agrees.
    """
    twins = Twins(shapes, allbackups)
    count = len(shapes)
    for action, which, value in actions:
        which %= count
        if action == "pick":
            twins.pick(set(), take=False)
        elif action == "take":
            twins.pick(set(), take=True)
        elif action == "avoid":
            twins.pick({which, value % count}, take=True)
        else:
            twins.apply(action, which, value)
        twins.pick(set(), take=False)


@pytest.mark.parametrize("weights", [[1, 1, 2, 3, 7, 40, 256], list(range(1, 257))])
def test_roundrobin_same_order_over_many_servers(weights: List[int]) -> None:
    """
    Over 300 servers of a few weights, or of up to 256 distinct ones,
    thousands of seeded picks and changes give the same order from the
    indexed C{roundrobin} as from the one-pass reference.
    """
    rng = _random.Random(16)
    shapes = [
        (rng.choice(weights), rng.random() < 0.1, rng.choice([0, 0, 0, 5]))
        for _ in range(300)
    ]
    twins = Twins(shapes, allbackups=False)
    order = []
    for _ in range(4000):
        roll = rng.random()
        which = rng.randrange(300)
        if roll < 0.02:
            twins.apply("health", which, 0)
        elif roll < 0.04:
            twins.apply("weight", which, rng.randrange(0, 20))
        elif roll < 0.05:
            twins.apply("throttle", which, rng.randrange(100))
        elif roll < 0.30:
            twins.apply("drop", which, rng.randrange(1000))
        else:
            order.append(twins.pick({which} if roll > 0.95 else set(), take=roll < 0.6))
    assert len(set(order)) > 50


def _leastconn_allowed(
    servers: Sequence[Server], avoid: Set[Server], allbackups: bool
) -> List[Server]:
    """
    Return the servers with the lowest load among those HAProxy's rules
    allow for a new connection, found the slow way.
    """
    active = [s for s in servers if not s.spec.backup]
    backup = [s for s in servers if s.spec.backup]
    if any(s.eligible for s in active):
        tier = active
    elif allbackups:
        tier = backup
    else:
        tier = [s for s in backup if s.eligible][:1]
    free = [s for s in tier if s.eligible and not s.full]
    allowed = [s for s in free if s not in avoid] or free
    if not allowed:
        return []
    lowest = min(s.current / s.weight for s in allowed)
    return [s for s in allowed if s.current / s.weight == lowest]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(shapes=_shapes, allbackups=st.booleans(), actions=_actions)
def test_leastconn_least_loaded(
    shapes: List[ServerShape], allbackups: bool, actions: List[Tuple[str, int, int]]
) -> None:
    """
    Over any servers and changes made through the pool, C{leastconn}
    returns a server of the lowest load among those it may choose (the
    non-avoided ones when there are any), and C{None} only when it may
    choose none.
    """
    state = _backend(shapes, find_factory("leastconn"), allbackups)
    servers = state.servers
    count = len(servers)
    taken: List[Server] = []
    for action, which, value in actions:
        server = servers[which % count]
        if action == "health":
            server.set_health(not server.up)
        elif action == "admin":
            server.set_admin(("ready", "drain", "maint")[value % 3])
        elif action == "weight":
            server.set_weight(value)
        elif action == "throttle":
            server.set_throttle(1 + value % 100)
        elif action == "drop" and taken:
            state.drop(taken.pop(value % len(taken)))
        else:
            avoid = {server, servers[value % count]} if action == "avoid" else set()
            chosen = state.pick(None, avoid)
            expected = _leastconn_allowed(servers, avoid, allbackups)
            if expected:
                assert chosen in expected
            else:
                assert chosen is None
            if chosen is not None and action != "pick":
                state.take(chosen)
                taken.append(chosen)


def test_leastconn_ties_take_turns_under_load() -> None:
    """
    Among servers of equal load, C{leastconn} gives each new connection to
    the one that waited longest: with connections taken and ended, equal
    servers still take turns.
    """
    state = _backend([(1, False, 0)] * 3, find_factory("leastconn"), False)
    names = []
    for _ in range(3):
        for _ in range(3):
            server = state.pick(None)
            assert server is not None
            names.append(server.name)
            state.take(server)
        for server in state.servers:
            state.drop(server)
    assert "".join(names) == "s0s1s2" * 3


class CountingServer(Server):
    """
    A server that counts how often its eligibility is read.
    """

    __slots__ = ()
    reads = 0

    @property
    def eligible(self) -> bool:
        CountingServer.reads += 1
        return bool(Server.eligible.fget(self))  # type: ignore[attr-defined]


def _counting_servers(count: int) -> List[Server]:
    """
    Return C{count} counting servers of weights 1 to 4.
    """
    return [
        CountingServer(
            ServerSpec(f"s{i}", "127.0.0.1", 1024 + i, address="127.0.0.1", weight=1 + i % 4)
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("name", ["roundrobin", "leastconn"])
def test_pick_does_not_walk_every_server(name: str) -> None:
    """
    A pick of C{roundrobin} or C{leastconn} over 4,096 servers reads the
    state of a handful of them, not of every one, including while
    connections are taken and ended and a server goes down and up.
    """
    servers = _counting_servers(4096)
    balancer = find_factory(name).build(servers, ())
    CountingServer.reads = 0
    for step in range(200):
        server = balancer.pick(None, ())
        assert server is not None
        server.current += 1
        balancer.connection_taken(server)
        if step % 3 == 0:
            server.current -= 1
            balancer.connection_dropped(server)
        if step == 100:
            servers[7].up = False
            balancer.server_down(servers[7])
        if step == 150:
            servers[7].up = True
            balancer.server_up(servers[7])
    assert CountingServer.reads < 200 * 12, name


def test_full_servers_are_watched_within_a_budget() -> None:
    """
    Servers at their C{maxconn} are looked at again a few at a time: a
    pick reads a bounded number of them however many there are, and a
    limit raised without a hook is still noticed after a few picks.
    """
    servers = _counting_servers(200)
    for server in servers[:100]:
        server.maxconn = server.current = 1
    balancer = find_factory("roundrobin").build(servers, ())
    CountingServer.reads = 0
    for _ in range(10):
        assert balancer.pick(None, ()) not in servers[:100]
    assert CountingServer.reads < 10 * (WATCH_PER_PICK + 12)
    for server in servers[:100]:
        server.maxconn = 0
    chosen = {balancer.pick(None, ()) for _ in range(100 // WATCH_PER_PICK + 1000)}
    assert set(servers[:100]) <= chosen


def test_heaps_stay_bounded() -> None:
    """
    However many connections come and go, the heaps hold at most about
    twice as many entries as servers: stale entries are swept.
    """
    servers = _counting_servers(50)
    for name in ("roundrobin", "leastconn"):
        balancer = find_factory(name).build(servers, ())
        rng = _random.Random(3)
        for _ in range(5000):
            server = balancer.pick(None, {servers[rng.randrange(50)]})
            assert server is not None
            server.current += 1
            balancer.connection_taken(server)
            other = servers[rng.randrange(50)]
            if other.current:
                other.current -= 1
                balancer.connection_dropped(other)
        heaps = getattr(balancer, "_heaps", None) or [
            c.heap for r in getattr(balancer, "_rotations") for c in r.classes.values()
        ]
        assert sum(len(heap) for heap in heaps) <= 2 * 50 + 65 * len(heaps), name


@pytest.mark.parametrize("name", ["roundrobin", "leastconn"])
def test_address_restored_without_hook(name: str) -> None:
    """
    A server built without an address (a host name not yet resolved) that
    gets one without a hook, as a reload restores the address it had, takes
    connections within a few picks.
    """
    specs = (
        ServerSpec("a", "a.example", 80),
        ServerSpec("b", "127.0.0.2", 80, address="127.0.0.2"),
    )
    state = BackendState(BackendSpec("be", specs), find_factory(name))
    assert {state.pick(None) for _ in range(3)} == {state.servers[1]}
    state.servers[0].address = "127.0.0.1"
    assert state.servers[0] in {state.pick(None) for _ in range(4)}
