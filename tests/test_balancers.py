"""
Tests for L{l4lb.balancers}: plugin discovery and L{l4lb.balancers.base}.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from typing import Container, Iterator, List, Optional

import pytest
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

import l4lb.plugins
from l4lb import balancers
from l4lb.balancers import UnknownBalancer, available, find_factory, refresh
from l4lb.balancers.base import BalancerBase, BalancerFactory
from l4lb.balancers.roundrobin import RoundRobin
from l4lb.config.model import Backend as BackendSpec
from l4lb.config.model import ServerSpec
from l4lb.interfaces import IBalancer, IBalancerFactory
from l4lb.pool import BackendState, Server

THIRD_PARTY = '''
"""
A balancer from outside l4lb: always the last allowed server.
"""

from l4lb.balancers.base import BalancerBase, BalancerFactory


class Last(BalancerBase):
    name = "thirdparty"

    def pick(self, client_address, avoid=()):
        candidates = self.candidates(avoid)
        return candidates[-1] if candidates else None


thirdparty = BalancerFactory("thirdparty", Last)
'''

DOCS = Path(__file__).resolve().parent.parent / "docs" / "balancers.md"


def make_servers(count: int, backups: int = 0) -> List[Server]:
    """
    Return C{count} servers named a, b, c, ...; the last C{backups} of them
    are backup servers.
    """
    return [
        Server(
            ServerSpec(
                chr(ord("a") + i),
                "host",
                8000 + i,
                address=f"192.0.2.{i + 1}",
                backup=i >= count - backups,
            )
        )
        for i in range(count)
    ]


def names(servers: List[Server]) -> str:
    """
    Return the servers' names joined.
    """
    return "".join(s.name for s in servers)


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """
    Make C{tmp_path} a directory on C{sys.path} whose C{l4lb/plugins/} (with
    no C{__init__.py}) is searched for plugins, and return that
    C{l4lb/plugins/} directory.  Everything is undone afterwards.
    """
    directory = tmp_path / "l4lb" / "plugins"
    directory.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(l4lb.plugins, "__path__", list(l4lb.plugins.__path__))
    monkeypatch.setattr(balancers, "_factories", {})
    before = set(sys.modules)
    yield directory
    for name in set(sys.modules) - before:
        if name.startswith("l4lb.plugins."):
            del sys.modules[name]


def test_roundrobin_discovered() -> None:
    """
    The built-in C{roundrobin} algorithm is found among the plugins, as an
    L{IPlugin} and L{IBalancerFactory} that builds L{RoundRobin}.
    """
    assert "roundrobin" in available()
    factory = find_factory("roundrobin")
    assert verifyObject(IBalancerFactory, factory)
    assert IPlugin.providedBy(factory)
    assert isinstance(factory, BalancerFactory)
    assert factory.name == "roundrobin"
    assert isinstance(factory.build(make_servers(2), ()), RoundRobin)


def test_available_sorted() -> None:
    """
    L{available} returns the algorithm names sorted, without duplicates.
    """
    found = available()
    assert found == sorted(set(found))


def test_unknown_name() -> None:
    """
    An unknown name raises L{UnknownBalancer}, whose message and attributes
    give the name and every available one.
    """
    with pytest.raises(UnknownBalancer) as caught:
        find_factory("nosuchalgo")
    error = caught.value
    assert error.name == "nosuchalgo"
    assert error.available == available()
    assert "'nosuchalgo'" in str(error)
    for name in available():
        assert name in str(error)
    assert isinstance(error, LookupError)


def test_discovery_cached() -> None:
    """
    Discovery runs once: later look-ups return the same factory objects
    until L{refresh} is called.
    """
    first = find_factory("roundrobin")
    assert find_factory("roundrobin") is first
    refresh()
    assert find_factory("roundrobin").name == "roundrobin"


def test_third_party_plugin(plugin_dir: Path) -> None:
    """
    A module in another directory's C{l4lb/plugins/} is found after
    L{refresh}, next to the built-in algorithms, and its balancer works.
    """
    (plugin_dir / "thirdparty_balancer.py").write_text(THIRD_PARTY)
    with pytest.raises(UnknownBalancer):
        find_factory("thirdparty")
    refresh()
    factory = find_factory("thirdparty")
    assert "roundrobin" in available()
    assert verifyObject(IBalancerFactory, factory)
    assert isinstance(factory, BalancerFactory)
    servers = make_servers(3)
    balancer = factory.build(servers, ())
    assert verifyObject(IBalancer, balancer)
    assert balancer.pick(None, ()) is servers[2]
    servers[2].up = False
    assert balancer.pick(None, ()) is servers[1]


def test_broken_plugin_ignored(plugin_dir: Path) -> None:
    """
    A plugin module that fails to import does not stop the other algorithms
    from being found.
    """
    (plugin_dir / "broken_balancer.py").write_text("raise RuntimeError('boom')\n")
    refresh()
    assert "roundrobin" in available()


def test_docs_example(plugin_dir: Path) -> None:
    """
    The example module of C{docs/balancers.md} is a working plugin:
    C{fewest-total} gives each connection to the server with the fewest
    connections so far, relative to its weight.
    """
    text = DOCS.read_text()
    section = text[text.index("## Writing your own balancer") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    (plugin_dir / "fewest_total.py").write_text(textwrap.dedent(match.group(1)))
    refresh()
    specs = (
        ServerSpec("a", "a", 1, address="192.0.2.1", weight=2),
        ServerSpec("b", "b", 1, address="192.0.2.2"),
    )
    state = BackendState(BackendSpec("web", specs), find_factory("fewest-total"))
    order = ""
    for _ in range(6):
        server = state.pick(None)
        assert server is not None
        state.take(server)
        order += server.name
    assert order == "abaaba"


class Fixed(BalancerBase):
    """
    A balancer that always picks the first candidate.
    """

    name = "fixed"

    def pick(
        self, client_address: Optional[str], avoid: Container[Server] = ()
    ) -> Optional[Server]:
        candidates = self.candidates(avoid)
        return candidates[0] if candidates else None


def test_base_defaults() -> None:
    """
    L{BalancerBase} provides L{IBalancer} with no-op hooks, does not need
    client addresses, and leaves L{BalancerBase.pick} to subclasses.
    """
    servers = make_servers(2)
    balancer = BalancerBase(servers, ("x",))
    assert verifyObject(IBalancer, balancer)
    assert balancer.needs_client_address is False
    assert balancer.args == ("x",)
    for hook in (
        balancer.server_up,
        balancer.server_down,
        balancer.weight_changed,
        balancer.connection_taken,
        balancer.connection_dropped,
    ):
        assert hook(servers[0]) is None
    with pytest.raises(NotImplementedError):
        balancer.pick(None, ())


def test_factory_builds_with_arguments() -> None:
    """
    L{BalancerFactory.build} passes the servers and arguments to the
    balancer class.
    """
    factory = BalancerFactory("fixed", Fixed)
    assert verifyObject(IBalancerFactory, factory)
    servers = make_servers(2)
    balancer = factory.build(servers, ("1", "2"))
    assert isinstance(balancer, Fixed)
    assert balancer.servers == tuple(servers)
    assert balancer.args == ("1", "2")


@pytest.mark.parametrize(
    "change",
    [
        lambda s: setattr(s, "up", False),
        lambda s: setattr(s, "admin", "drain"),
        lambda s: setattr(s, "admin", "maint"),
        lambda s: setattr(s, "weight", 0),
        lambda s: setattr(s, "address", None),
    ],
    ids=["down", "drain", "maint", "weight-0", "unresolved"],
)
def test_candidates_not_eligible(change: object) -> None:
    """
    A server that is down, drained, in maintenance, of weight 0 or not
    resolved is never a candidate.
    """
    servers = make_servers(3)
    change(servers[1])  # type: ignore[operator]
    assert names(Fixed(servers).candidates()) == "ac"


def test_candidates_full() -> None:
    """
    A server at its C{maxconn} is not a candidate; when every active server
    is full there is none, and the backups are not used.
    """
    servers = [
        Server(ServerSpec("a", "a", 1, address="192.0.2.1", maxconn=2)),
        Server(ServerSpec("b", "b", 1, address="192.0.2.2", maxconn=1)),
        Server(ServerSpec("c", "c", 1, address="192.0.2.3", backup=True)),
    ]
    balancer = Fixed(servers)
    servers[0].current = 2
    assert names(balancer.candidates()) == "b"
    servers[1].current = 1
    assert balancer.candidates() == []
    assert balancer.pick(None, ()) is None


def test_candidates_backups() -> None:
    """
    Backups are candidates only when no active server is eligible, and then
    only the first eligible one.
    """
    servers = make_servers(4, backups=2)
    a, b, c, d = servers
    balancer = Fixed(servers)
    assert names(balancer.candidates()) == "ab"
    a.up = False
    assert names(balancer.candidates()) == "b"
    b.admin = "maint"
    assert names(balancer.candidates()) == "c"
    c.up = False
    assert names(balancer.candidates()) == "d"
    a.up = True
    assert names(balancer.candidates()) == "a"


def test_candidates_allbackups() -> None:
    """
    With C{allbackups}, taken from the backend's configuration, every
    eligible backup is a candidate when no active server is.
    """
    specs = tuple(s.spec for s in make_servers(4, backups=3))
    state = BackendState(
        BackendSpec("web", specs, allbackups=True), BalancerFactory("fixed", Fixed)
    )
    balancer = state.balancer
    assert isinstance(balancer, Fixed)
    assert balancer.allbackups is True
    a, b, c, d = state.servers
    a.up = False
    assert names(balancer.candidates()) == "bcd"
    c.admin = "drain"
    assert names(balancer.candidates()) == "bd"
    assert Fixed(make_servers(2, backups=1)).allbackups is False


def test_candidates_avoid() -> None:
    """
    Servers in C{avoid} are left out unless they are all that is left, in
    which case C{avoid} is ignored.
    """
    servers = make_servers(3)
    a, b, c = servers
    balancer = Fixed(servers)
    assert names(balancer.candidates({a})) == "bc"
    assert names(balancer.candidates({a, b, c})) == "abc"
    c.up = False
    assert names(balancer.candidates({a, b})) == "ab"
    assert balancer.pick(None, {a}) is b


def test_candidates_avoid_backup() -> None:
    """
    Avoiding the only usable backup still returns it: C{avoid} never makes
    another backup eligible in its place.
    """
    servers = make_servers(3, backups=2)
    a, b, c = servers
    a.up = False
    balancer = Fixed(servers)
    assert names(balancer.candidates({b})) == "b"
