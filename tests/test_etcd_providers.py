"""
The watches of a running balancer (L{l4lb.etcd.EtcdProviders}): one per
backend with C{servers-from}, kept or replaced by a reload, and what C{show
info} says of them; and the C{servers-from} key itself.
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock

from l4lb.admin.commands import AdminCommands
from l4lb.config import ConfigError
from l4lb.config.model import Backend, Config, ServersFrom
from l4lb.config.parser import parse_config_with_warnings
from l4lb.etcd import EtcdProviders, Event, WatchMessage
from tests.etcdkit import RecordingRuntime, ScriptedGateway
from tests.runtimekit import stand_in

URL = "http://127.0.0.1:2379"


def config(**prefixes: str) -> Config:
    """
    A configuration whose backends (by name) take servers from C{prefix}.
    """
    return Config(
        backends=tuple(
            Backend(name, (), servers_from=ServersFrom("etcd", (URL,), prefix))
            for name, prefix in prefixes.items()
        )
    )


def providers(start: Config) -> Any:
    """
    Started providers over a recording runtime, and the gateways made.
    """
    runtime = RecordingRuntime("web")
    runtime.config = start  # type: ignore[attr-defined]
    made: List[ScriptedGateway] = []

    def gateway(url: str) -> ScriptedGateway:
        made.append(ScriptedGateway(url))
        return made[-1]

    service = EtcdProviders(runtime, Clock(), gateway, backoff=lambda n: 1.0)
    service.startService()
    return service, runtime, made


def test_one_watch_per_backend_with_servers_from() -> None:
    """Starting watches each backend's prefix once, with its own gateway."""
    service, _, made = providers(config(web="/a/", api="/b/"))
    assert sorted(service.watches) == ["api", "web"]
    assert [g.lists for g in made] == [1, 1]


def test_reload_keeps_an_unchanged_watch() -> None:
    """A reload with the same C{servers-from} keeps the watch: no new listing."""
    service, _, made = providers(config(web="/a/"))
    watch = service.watches["web"]
    service.apply(config(web="/a/"))
    assert service.watches["web"] is watch
    assert len(made) == 1


def test_reload_with_another_prefix_replaces_the_watch_and_its_servers() -> None:
    """
    A reload that changes the prefix lists the new one: servers from the
    old prefix that are not under the new one are removed.
    """
    service, runtime, made = providers(config(web="/a/"))
    made[0].streams[0].send(WatchMessage(2, (Event("PUT", "/a/s1", "127.0.0.1:80", 2),)))
    assert ("web", "s1") in runtime.servers
    old = made[0].streams[0]
    service.apply(config(web="/b/"))
    assert old.stopped
    assert made[1].lists == 1
    assert ("web", "s1") not in runtime.servers


def test_reload_without_servers_from_stops_the_watch_and_keeps_servers() -> None:
    """A reload that drops C{servers-from} stops the watch; the servers stay."""
    service, runtime, made = providers(config(web="/a/"))
    made[0].listing = (1, {})
    service.apply(Config(backends=(Backend("web", ()),)))
    assert service.watches == {}
    assert made[0].streams[0].stopped


def test_stop_stops_every_watch() -> None:
    """Stopping the service ends the watches."""
    service, _, made = providers(config(web="/a/"))
    service.stopService()
    assert made[0].streams[0].stopped
    assert service.watches == {}


def test_show_info_counts_watches_and_outages() -> None:
    """C{show info} has C{EtcdWatches} and C{EtcdUnreachable}."""
    service, _, made = providers(config(web="/a/", api="/b/"))
    made[0].streams[0].fail(ConnectionRefusedError())
    runtime = stand_in(etcd=service, limiter=type("L", (), {"maxconn": 1, "current": 0})())
    lines: Dict[str, str] = dict(
        line.split(": ", 1) for line in AdminCommands(runtime, Clock()).run("show info").splitlines()
    )
    assert (lines["EtcdWatches"], lines["EtcdUnreachable"]) == ("2", "1")
    typed = AdminCommands(runtime, Clock()).run("show info typed")
    assert "110.EtcdWatches.1:CGS:u32:2" in typed
    assert "111.EtcdUnreachable.1:MGP:u32:1" in typed


LB = """\
[frontend f]
bind = 127.0.0.1:8000
default_backend = web
[backend web]
timeout connect = 1s
timeout server = 1s
{line}
"""


def test_servers_from_is_read() -> None:
    """C{servers-from} gives the store, its URLs and the prefix; no 'no server' warning."""
    text = LB.format(
        line="servers-from = etcd http://127.0.0.1:2379,http://127.0.0.1:22379/ /l4lb/web/"
    )
    parsed, warnings = parse_config_with_warnings(text)
    assert parsed.backends[0].servers_from == ServersFrom(
        "etcd", ("http://127.0.0.1:2379", "http://127.0.0.1:22379"), "/l4lb/web/"
    )
    assert not any("no server" in w.message for w in warnings)


@pytest.mark.parametrize(
    "value, message",
    [
        ("consul http://127.0.0.1:8500 /l4lb/web/", "'consul' is not a store"),
        ("etcd http://127.0.0.1 /l4lb/web/", "has no port"),
        ("etcd ftp://127.0.0.1:2379 /l4lb/web/", "is not an etcd client URL"),
        ("etcd http://127.0.0.1:2379 /l4lb/web", "must end with '/'"),
        ("etcd http://127.0.0.1:2379", "expected etcd URL"),
    ],
)
def test_servers_from_errors(value: str, message: str) -> None:
    """A wrong C{servers-from} is an error at its line, saying what is expected."""
    with pytest.raises(ConfigError) as caught:
        parse_config_with_warnings(LB.format(line=f"servers-from = {value}"))
    assert any(message in p.message and p.line == 7 for p in caught.value.problems), caught.value


def test_a_removal_begun_before_a_new_prefix_still_ends() -> None:
    """
    A server draining for removal when a reload changes the prefix is
    still removed once its connections end.
    """
    service, runtime, made = providers(config(web="/a/"))
    made[0].streams[0].send(WatchMessage(2, (Event("PUT", "/a/s1", "127.0.0.1:80", 2),)))
    runtime.servers[("web", "s1")].current = 1
    made[0].streams[0].send(WatchMessage(3, (Event("DELETE", "/a/s1", "", 3),)))
    service.apply(config(web="/b/"))
    runtime.servers[("web", "s1")].current = 0
    service.clock.advance(1)
    assert ("web", "s1") not in runtime.servers
