"""
Tests for each algorithm of L{l4lb.balancers}: C{static-rr}, C{leastconn},
C{first}, C{source} (map-based and consistent), C{random} and C{maglev},
and the hashing helpers they share.
"""

from __future__ import annotations

from collections import Counter
from typing import List

import pytest
from zope.interface.verify import verifyObject

from l4lb.balancers import available, find_factory
from l4lb.balancers.base import BalancerArgumentError
from l4lb.balancers.first import First
from l4lb.balancers.hashing import client_hash, client_key, hash64, server_hash_key
from l4lb.balancers.leastconn import LeastConnections
from l4lb.balancers.maglev import Maglev, is_prime, maglev_table
from l4lb.balancers.random import Random
from l4lb.balancers.source import Source
from l4lb.balancers.static_rr import StaticRoundRobin
from l4lb.interfaces import IBalancer
from l4lb.pool import Server
from tests.balancerkit import ALGORITHMS, backend, clients, spec, take


def names(picked: List[object]) -> str:
    """
    Return the names of picked servers joined, C{-} for none.
    """
    return "".join("-" if s is None else s.name for s in picked)  # type: ignore[attr-defined]


def test_every_algorithm_installed() -> None:
    """Every HAProxy tcp algorithm and maglev are found by name."""
    assert {"roundrobin", "static-rr", "leastconn", "first", "source", "random", "maglev"} <= set(
        available()
    )


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_provides_interface(algorithm: str) -> None:
    """Each algorithm's balancer provides IBalancer and says whether it hashes clients."""
    state = backend(algorithm, [spec("a"), spec("b")])
    assert verifyObject(IBalancer, state.balancer)
    hashing = state.balancer.name in ("source", "maglev")
    assert state.balancer.needs_client_address is hashing


@pytest.mark.parametrize(
    "cls", [StaticRoundRobin, LeastConnections, First, Source]
)
def test_no_arguments(cls: type) -> None:
    """Algorithms without arguments refuse them when built, too."""
    with pytest.raises(BalancerArgumentError, match="takes no arguments"):
        cls([Server(spec("a"))], ("1",))


def test_factory_check_args() -> None:
    """The factory checks arguments through the algorithm, for the parser."""
    find_factory("random").check_args(("5",))
    with pytest.raises(BalancerArgumentError):
        find_factory("random").check_args(("0",))
    with pytest.raises(BalancerArgumentError):
        find_factory("maglev").check_args(("100",))


# -- static-rr ----------------------------------------------------------------


def test_static_rr_cycle() -> None:
    """static-rr spreads each server's turns evenly over a cycle of its weights."""
    state = backend("static-rr", [spec("a", 3), spec("b", 1)])
    assert names([state.pick(None) for _ in range(8)]) == "aaba" * 2
    state = backend("static-rr", [spec("a", 5), spec("b", 1), spec("c", 1)])
    assert names([state.pick(None) for _ in range(14)]) == "aaabcaa" * 2


def test_static_rr_ignores_runtime_weight() -> None:
    """A weight changed at run time does not change static-rr's shares, but 0 stops the server."""
    state = backend("static-rr", [spec("a"), spec("b")])
    state.server("a").set_weight(10)
    assert Counter(names([state.pick(None) for _ in range(10)])) == {"a": 5, "b": 5}
    state.server("a").set_weight(0)
    assert names([state.pick(None) for _ in range(3)]) == "bbb"


def test_static_rr_skips_full_and_down() -> None:
    """static-rr skips full and down servers and keeps its order for the others."""
    state = backend("static-rr", [spec("a"), spec("b", maxconn=1), spec("c")])
    state.take(state.server("b"))
    assert names([state.pick(None) for _ in range(4)]) == "acac"
    state.server("c").set_health(False)
    assert names([state.pick(None) for _ in range(2)]) == "aa"


# -- leastconn ----------------------------------------------------------------


def test_leastconn_fewest() -> None:
    """leastconn picks the server with the fewest connections."""
    state = backend("leastconn", [spec("a"), spec("b"), spec("c")])
    for _ in range(2):
        state.take(state.server("a"))
    state.take(state.server("c"))
    assert state.pick(None) is state.server("b")


def test_leastconn_weighted() -> None:
    """leastconn compares connections per unit of weight."""
    state = backend("leastconn", [spec("a", 3), spec("b", 1)])
    for _ in range(2):
        state.take(state.server("a"))
    assert state.pick(None) is state.server("b")  # 2/3 vs 0/1
    state.take(state.server("b"))
    assert state.pick(None) is state.server("a")  # 2/3 vs 1/1


def test_leastconn_ties_rotate() -> None:
    """Servers with equal load take turns instead of the first one taking every tie."""
    state = backend("leastconn", [spec("a"), spec("b"), spec("c")])
    assert names([state.pick(None) for _ in range(6)]) == "abcabc"


# -- first --------------------------------------------------------------------


def test_first_fills_in_order() -> None:
    """first fills the first server up to its maxconn, then the next."""
    state = backend("first", [spec("a", maxconn=2), spec("b", maxconn=1), spec("c")])
    assert names([take(state) for _ in range(5)]) == "aabcc"


def test_first_by_id() -> None:
    """first orders servers by their id option, others by position."""
    state = backend("first", [spec("a", maxconn=1, options=(("id", "9"),)), spec("b", maxconn=1)])
    assert names([take(state) for _ in range(3)]) == "ba-"


# -- source -------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["source", "source-consistent", "maglev"])
def test_hash_sticky(algorithm: str) -> None:
    """A client keeps getting the same server while nothing changes."""
    state = backend(algorithm, [spec(n) for n in "abcde"])
    for client in clients(50):
        first = state.pick(client)
        assert all(state.pick(client) is first for _ in range(3))


@pytest.mark.parametrize("algorithm", ["source", "source-consistent", "maglev"])
def test_hash_independent_of_file_order(algorithm: str) -> None:
    """Two balancers with the same servers listed in another order agree on every client."""
    specs = [spec(n, weight=1 + i % 3) for i, n in enumerate(["web1", "web2", "web3", "db", "x"])]
    one = backend(algorithm, specs)
    other = backend(algorithm, list(reversed(specs)))
    for client in clients(300):
        assert one.pick(client).name == other.pick(client).name  # type: ignore[union-attr]


@pytest.mark.parametrize("algorithm", ["source", "source-consistent", "maglev"])
def test_hash_key_addr(algorithm: str) -> None:
    """With hash-key addr, servers renamed but at the same addresses keep their clients."""
    key = (("hash-key", "addr"),)
    one = backend(algorithm, [spec(n, options=key, address=f"127.0.0.{i}") for i, n in enumerate("abc", 1)])
    other = backend(algorithm, [spec(n, options=key, address=f"127.0.0.{i}") for i, n in enumerate("xyz", 1)])
    renamed = dict(zip("abc", "xyz"))
    for client in clients(200):
        assert renamed[one.pick(client).name] == other.pick(client).name  # type: ignore[union-attr]


def test_hash_keys() -> None:
    """Hash keys come from the name, the address or the address and port, as asked."""
    base = server_hash_key(Server(spec("a", address="127.0.0.1")))
    assert base == b"name:a"
    assert server_hash_key(Server(spec("a", address="127.0.0.1", options=(("hash-key", "addr"),)))) == (
        b"addr:\x7f\x00\x00\x01"
    )
    assert server_hash_key(
        Server(spec("a", address="127.0.0.1", port=443, options=(("hash-key", "addr-port"),)))
    ) == b"addr-port:\x7f\x00\x00\x01\x01\xbb"


def test_client_hash_fixed() -> None:
    """The client hash is BLAKE2b of the binary address, the same in every process, and a
    mapped IPv4 address hashes as the IPv4 address."""
    assert client_key("192.0.2.1") == b"\xc0\x00\x02\x01"
    assert client_key("::ffff:192.0.2.1") == b"\xc0\x00\x02\x01"
    assert client_key("2001:db8::1") == bytes.fromhex("20010db8000000000000000000000001")
    assert client_key(None) == b""
    assert client_hash("192.0.2.1") == hash64(b"\xc0\x00\x02\x01")
    # Fixed values pin the hash function itself: changing it would send
    # clients elsewhere after an upgrade, and instances would disagree.
    assert hash64(b"l4lb") == 0xE79D106C05AAD6BF
    assert client_hash("192.0.2.1") == 0x8AF164C27F03EA7A


def test_source_map_based_skips_full() -> None:
    """When a client's server is full, map-based source gives it the next entry's server."""
    state = backend("source", [spec("a", maxconn=1), spec("b", maxconn=1), spec("c", maxconn=1)])
    client = clients(1)[0]
    home = state.pick(client)
    assert home is not None
    state.take(home)
    other = state.pick(client)
    assert other is not None and other is not home


def test_consistent_down_moves_only_its_clients() -> None:
    """With hash-type consistent, a server going down moves only its clients, and they
    come back when it does."""
    state = backend("source-consistent", [spec(n) for n in "abcd"])
    keys = clients(2000)
    before = {c: state.pick(c) for c in keys}
    state.server("b").set_health(False)
    during = {c: state.pick(c) for c in keys}
    moved = [c for c in keys if during[c] is not before[c]]
    assert moved and all(before[c].name == "b" for c in moved)  # type: ignore[union-attr]
    state.server("b").set_health(True)
    assert {c: state.pick(c) for c in keys} == before


def test_source_without_address() -> None:
    """Clients without an address (UNIX sockets) all hash alike and still get a server."""
    state = backend("source", [spec("a"), spec("b")])
    assert state.pick(None) is state.pick(None) is not None


# -- random -------------------------------------------------------------------


def test_random_power_of_choices() -> None:
    """random(N) keeps the least loaded of its draws: with two servers and 2 draws, a
    server loaded far above the other is chosen only when drawn twice."""
    state = backend("random", [spec("a"), spec("b")], balance_args=("2",))
    for _ in range(10):
        state.take(state.server("a"))
    picked = Counter(names([state.pick(None) for _ in range(4000)]))
    assert 0.2 < picked["a"] / 4000 < 0.3


def test_random_seeded() -> None:
    """The same seed gives the same choices."""
    one = backend("random", [spec(n) for n in "abcd"], seed=3)
    two = backend("random", [spec(n) for n in "abcd"], seed=3)
    assert names([one.pick(None) for _ in range(50)]) == names([two.pick(None) for _ in range(50)])


def test_random_default_draws() -> None:
    """random alone draws 2, as in HAProxy; random(5) draws 5."""
    assert Random([Server(spec("a"))]).draws == 2
    assert Random([Server(spec("a"))], ("5",)).draws == 5


# -- maglev -------------------------------------------------------------------


def test_maglev_table_even() -> None:
    """Each server holds within one slot of an even share of the table."""
    servers = [Server(spec(f"s{i}")) for i in range(10)]
    table = maglev_table(servers, 65537)
    counts = Counter(s.name for s in table)
    assert len(table) == 65537
    assert max(counts.values()) - min(counts.values()) <= 1


def test_maglev_table_weighted() -> None:
    """A server of weight 3 holds three times the slots of one of weight 1."""
    servers = [Server(spec("a", 3)), Server(spec("b", 1))]
    counts = Counter(s.name for s in maglev_table(servers, 4099))
    assert abs(counts["a"] / counts["b"] - 3) < 0.01


def test_maglev_size() -> None:
    """maglev(M) sets the table size; the default is 65537."""
    assert Maglev([Server(spec("a"))]).size == 65537
    assert len(Maglev([Server(spec("a"))], ("251",)).table()) == 251
    assert is_prime(65537) and not is_prime(65535) and not is_prime(1)
