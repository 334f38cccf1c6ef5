"""
Tests for L{l4lb.balancers.roundrobin}.
"""

from __future__ import annotations

from collections import Counter
from typing import Container, List, Optional, Sequence, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from l4lb.balancers import find_factory
from l4lb.balancers.base import BalancerArgumentError
from l4lb.balancers.roundrobin import RoundRobin
from l4lb.config.model import Backend as BackendSpec
from l4lb.config.model import ServerSpec
from l4lb.interfaces import IBalancer
from l4lb.pool import BackendState, Server


def make_servers(*weights: int, backups: int = 0) -> List[Server]:
    """
    Return servers named a, b, c, ... with the given weights; the last
    C{backups} of them are backup servers.
    """
    servers = []
    first_backup = len(weights) - backups
    for i, weight in enumerate(weights):
        name = chr(ord("a") + i)
        spec = ServerSpec(
            name,
            name,
            8000 + i,
            address=f"192.0.2.{i + 1}",
            weight=weight,
            backup=i >= first_backup,
        )
        servers.append(Server(spec))
    return servers


def picks(balancer: RoundRobin, count: int, avoid: Container[Server] = ()) -> str:
    """
    Pick C{count} times and return the chosen servers' names joined, with
    C{-} for no server.
    """
    names = []
    for _ in range(count):
        server = balancer.pick(None, avoid)
        names.append("-" if server is None else server.name)
    return "".join(names)


@pytest.mark.parametrize(
    "weights, cycle",
    [
        ((1,), "a"),
        ((1, 1), "ab"),
        ((1, 1, 1), "abc"),
        ((1, 3), "babb"),
        ((3, 1), "aaba"),
        ((2, 1), "aba"),
        ((5, 1, 1), "aabacaa"),
        ((4, 2, 1), "abacaba"),
        ((1, 2, 3), "cbacbc"),
    ],
)
def test_smooth_cycle(weights: Sequence[int], cycle: str) -> None:
    """
    Smooth weighted round robin produces exactly this interleaved order,
    and repeats it cycle after cycle.
    """
    balancer = RoundRobin(make_servers(*weights))
    assert picks(balancer, 3 * len(cycle)) == cycle * 3


@settings(max_examples=150, derandomize=True)
@given(st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=8))
def test_weights_exact_over_cycle(weights: List[int]) -> None:
    """
    Over every cycle of C{sum(weights)} picks each server is chosen exactly
    its weight's number of times.
    """
    servers = make_servers(*weights)
    balancer = RoundRobin(servers)
    total = sum(weights)
    for _ in range(2):
        chosen = [balancer.pick(None, ()) for _ in range(total)]
        counts = Counter(s.name for s in chosen if s is not None)
        assert counts == {s.name: s.weight for s in servers}


def test_ties_in_file_order() -> None:
    """
    Equal weights are served in file order, starting with the first server.
    """
    balancer = RoundRobin(make_servers(2, 2, 2))
    assert picks(balancer, 6) == "abcabc"


def test_one_candidate() -> None:
    """
    With a single eligible server every pick returns it.
    """
    servers = make_servers(3, 1)
    servers[1].up = False
    balancer = RoundRobin(servers)
    assert picks(balancer, 4) == "aaaa"


def test_no_candidate() -> None:
    """
    With no eligible server a pick returns C{None}.
    """
    servers = make_servers(1, 1)
    for server in servers:
        server.admin = "maint"
    assert RoundRobin(servers).pick(None, ()) is None


def test_runtime_weight_change() -> None:
    """
    A weight changed between picks is used from the next pick on, without
    rebuilding the balancer.
    """
    servers = make_servers(1, 1)
    balancer = RoundRobin(servers)
    assert picks(balancer, 2) == "ab"
    servers[1].weight = 3
    balancer.weight_changed(servers[1])
    assert picks(balancer, 8) == "babb" * 2
    servers[1].weight = 0
    balancer.weight_changed(servers[1])
    assert picks(balancer, 3) == "aaa"


def test_server_down_and_up() -> None:
    """
    Servers leaving and rejoining are skipped while away and share the
    rotation again, from a fresh start, once back.
    """
    servers = make_servers(1, 1, 1)
    balancer = RoundRobin(servers)
    assert picks(balancer, 2) == "ab"
    servers[1].up = False
    balancer.server_down(servers[1])
    assert picks(balancer, 4) == "acac"
    servers[1].up = True
    balancer.server_up(servers[1])
    assert picks(balancer, 6) == "abcabc"


def test_state_changes_without_hooks() -> None:
    """
    The rotation stays correct when servers change state without the
    hooks being called: the state is read at every pick.
    """
    servers = make_servers(1, 1, 1)
    balancer = RoundRobin(servers)
    servers[0].admin = "drain"
    assert picks(balancer, 4) == "bcbc"
    servers[0].admin = "ready"
    assert Counter(picks(balancer, 30)) == {"a": 10, "b": 10, "c": 10}


def test_full_server_skipped() -> None:
    """
    A server at its C{maxconn} is skipped until a connection to it ends.
    """
    servers = [
        Server(ServerSpec("a", "a", 1, address="192.0.2.1", maxconn=1)),
        Server(ServerSpec("b", "b", 1, address="192.0.2.2")),
    ]
    balancer = RoundRobin(servers)
    servers[0].current = 1
    assert picks(balancer, 3) == "bbb"
    servers[0].current = 0
    assert set(picks(balancer, 4)) == {"a", "b"}


def test_avoid() -> None:
    """
    Servers in C{avoid} are not chosen while another one can be, and are
    when they are all that is left.
    """
    servers = make_servers(1, 1, 1)
    balancer = RoundRobin(servers)
    assert set(picks(balancer, 6, avoid={servers[0]})) == {"b", "c"}
    assert set(picks(balancer, 6, avoid=set(servers))) == {"a", "b", "c"}
    servers[2].up = False
    assert set(picks(balancer, 4, avoid={servers[0], servers[1]})) == {"a", "b"}


def test_backups() -> None:
    """
    Backup servers get connections only while no active server is
    eligible, and then only the first eligible backup.
    """
    servers = make_servers(1, 1, 1, 1, backups=2)
    a, b, c, d = servers
    balancer = RoundRobin(servers)
    assert picks(balancer, 4) == "abab"
    a.up = b.up = False
    assert picks(balancer, 4) == "cccc"
    c.admin = "maint"
    assert picks(balancer, 2) == "dd"
    b.up = True
    assert picks(balancer, 2) == "bb"


def test_allbackups() -> None:
    """
    With C{option allbackups} every eligible backup shares the load,
    weighted, while no active server is eligible.
    """
    specs = tuple(s.spec for s in make_servers(1, 2, 1, backups=2))
    state = BackendState(
        BackendSpec("web", specs, allbackups=True),
        find_factory("roundrobin"),
    )
    a, b, c = state.servers
    assert [state.pick(None) for _ in range(2)] == [a, a]
    a.up = False
    chosen = [state.pick(None) for _ in range(6)]
    assert "".join(s.name for s in chosen if s is not None) == "bcb" * 2


def test_no_arguments() -> None:
    """
    C{roundrobin} refuses arguments after its name.
    """
    with pytest.raises(BalancerArgumentError, match="roundrobin.*no arguments"):
        RoundRobin(make_servers(1), ("3",))


def test_provides_interface() -> None:
    """
    L{RoundRobin} provides L{IBalancer} and does not need client addresses.
    """
    balancer = RoundRobin(make_servers(1, 1))
    assert verifyObject(IBalancer, balancer)
    assert balancer.name == "roundrobin"
    assert balancer.needs_client_address is False


def _expected(
    servers: Sequence[Server], avoid: Container[Server], allbackups: bool
) -> List[Server]:
    """
    Return the servers HAProxy's rules allow for a new connection, computed
    the slow, obvious way.
    """

    def usable(s: Server) -> bool:
        return (
            s.up
            and s.admin == "ready"
            and s.weight > 0
            and s.address is not None
        )

    def free(s: Server) -> bool:
        return s.spec.maxconn == 0 or s.current < s.spec.maxconn

    active = [s for s in servers if not s.spec.backup]
    backup = [s for s in servers if s.spec.backup]
    if any(usable(s) for s in active):
        tier = active
    elif allbackups:
        tier = backup
    else:
        tier = [s for s in backup if usable(s)][:1]
    allowed = [s for s in tier if usable(s) and free(s)]
    return [s for s in allowed if s not in avoid] or allowed


_server_specs = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6),  # weight
        st.booleans(),  # backup
        st.integers(min_value=0, max_value=2),  # maxconn
    ),
    min_size=1,
    max_size=7,
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_server_specs, st.booleans(), st.data())
def test_only_allowed_servers(
    specs: List[Tuple[int, bool, int]], allbackups: bool, data: st.DataObject
) -> None:
    """
    Whatever the servers' states, weights and limits, and however they
    change between picks, a pick returns one of the servers HAProxy's rules
    allow (never a down, drained, maintained, weight-0, full or unresolved
    one), and returns C{None} only when there is none.
    """
    servers = [
        Server(
            ServerSpec(
                f"s{i}",
                f"s{i}",
                8000 + i,
                address=f"192.0.2.{i + 1}",
                weight=weight,
                backup=backup,
                maxconn=maxconn,
            )
        )
        for i, (weight, backup, maxconn) in enumerate(specs)
    ]
    balancer = RoundRobin(servers, allbackups=allbackups)
    index = st.integers(min_value=0, max_value=len(servers) - 1)
    for _ in range(data.draw(st.integers(min_value=1, max_value=25), "steps")):
        server = servers[data.draw(index, "server")]
        change = data.draw(
            st.sampled_from(["up", "admin", "weight", "address", "current", "none"]),
            "change",
        )
        if change == "up":
            server.up = not server.up
        elif change == "admin":
            server.admin = data.draw(st.sampled_from(["ready", "drain", "maint"]))
        elif change == "weight":
            server.weight = data.draw(st.integers(min_value=0, max_value=6))
        elif change == "address":
            server.address = None if server.address else "192.0.2.200"
        elif change == "current":
            server.current = data.draw(st.integers(min_value=0, max_value=2))
        avoid = set(data.draw(st.lists(index, max_size=3), "avoid"))
        avoided = {servers[i] for i in avoid}
        for _ in range(3):
            chosen: Optional[Server] = balancer.pick(None, avoided)
            expected = _expected(servers, avoided, allbackups)
            if expected:
                assert chosen in expected
            else:
                assert chosen is None
