"""
Keys under a prefix become a backend's servers through the runtime API's
methods (L{l4lb.etcd._sync.ServerSync}).
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from l4lb.config.errors import InvalidValue
from l4lb.etcd import ServerSync, parse_value
from l4lb.etcd._sync import REMOVAL_POLL
from tests.etcdkit import RecordingRuntime

PREFIX = "/l4lb/backends/web/"


@pytest.fixture
def logged() -> Any:
    """
    The messages l4lb logs during the test.
    """
    lines: List[str] = []

    def observe(event: Any) -> None:
        if "message" in event:
            lines.append(str(event["message"]))
        elif "server" in event and "backend" in event:
            lines.append(event.get("log_format", "").format(**event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def make(file_servers: Any = ()) -> Any:
    """
    A sync of backend C{web} on a recording runtime, and its clock.
    """
    runtime = RecordingRuntime("web", tuple(file_servers))
    clock = Clock()
    return ServerSync(runtime, "web", clock), runtime, clock


def test_value_words() -> None:
    """A value is an address, options, and an optional administrative word."""
    wanted = parse_value("127.0.0.1:8080 weight 5 check drain")
    assert (wanted.host, wanted.port, wanted.options, wanted.admin) == (
        "127.0.0.1",
        8080,
        ("weight", "5", "check"),
        "drain",
    )
    assert wanted.line == "127.0.0.1:8080 weight 5 check"
    assert parse_value("127.0.0.1:80 maint").enabled is False
    assert parse_value("127.0.0.1:80 disabled").enabled is False
    assert parse_value("127.0.0.1:80").enabled is True
    with pytest.raises(InvalidValue):
        parse_value("nonsense")


def test_put_adds_an_enabled_server() -> None:
    """A new key adds a server, in service, with the value as its line."""
    sync, runtime, _ = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080 weight 3", PREFIX)
    assert runtime.calls == [("add", "web", "s1", "127.0.0.1:8080 weight 3", True)]
    assert runtime.servers[("web", "s1")].admin == "ready"


def test_put_with_drain_adds_a_drained_server() -> None:
    """C{drain} in a value adds the server, then drains it."""
    sync, runtime, _ = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080 drain", PREFIX)
    assert runtime.calls == [
        ("add", "web", "s1", "127.0.0.1:8080", True),
        ("admin", "s1", "drain", "etcd"),
    ]


def test_put_with_maint_adds_a_server_in_maintenance() -> None:
    """C{maint} in a value adds the server in maintenance."""
    sync, runtime, _ = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080 maint", PREFIX)
    assert runtime.calls == [("add", "web", "s1", "127.0.0.1:8080", False)]


def test_same_value_again_changes_nothing() -> None:
    """A key put again with the same value asks nothing of the runtime."""
    sync, runtime, _ = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)
    runtime.calls.clear()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)
    assert runtime.calls == []


def test_new_address_moves_the_server() -> None:
    """A new address in the value moves the server (set server addr)."""
    sync, runtime, _ = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080 check", PREFIX)
    runtime.calls.clear()
    sync.put_key(PREFIX + "s1", "127.0.0.2:9090 check", PREFIX)
    assert runtime.calls == [("address", "s1", "127.0.0.2", 9090, "etcd")]


def test_state_word_changes_the_state() -> None:
    """Adding or removing C{drain} in the value drains or readies the server."""
    sync, runtime, _ = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080 drain", PREFIX)
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)
    assert runtime.calls[1:] == [
        ("admin", "s1", "drain", "etcd"),
        ("admin", "s1", "ready", "etcd"),
    ]


def test_new_weight_is_set_in_place() -> None:
    """A value that changes only the weight sets the weight, nothing else."""
    sync, runtime, _ = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080 weight 3 check", PREFIX)
    runtime.calls.clear()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080 weight 7 check", PREFIX)
    assert runtime.calls == []
    assert runtime.servers[("web", "s1")].weight == 7


def test_other_options_recreate_the_server_once_idle() -> None:
    """
    New options that a running server cannot take drain it, and it is made
    again with them once its connections have ended.
    """
    sync, runtime, clock = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)
    runtime.servers[("web", "s1")].current = 1
    runtime.calls.clear()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080 check inter 1s", PREFIX)
    assert runtime.calls == [("admin", "s1", "drain", "etcd")]
    clock.advance(REMOVAL_POLL)
    assert ("web", "s1") in runtime.servers
    runtime.servers[("web", "s1")].current = 0
    clock.advance(REMOVAL_POLL)
    assert runtime.calls[1:] == [
        ("admin", "s1", "maint", "etcd"),
        ("remove", "web", "s1"),
        ("add", "web", "s1", "127.0.0.1:8080 check inter 1s", True),
    ]
    assert not clock.getDelayedCalls()


def test_delete_drains_then_removes_once_connections_end() -> None:
    """
    A deleted key drains its server; the server is put in maintenance and
    removed once its last connection has ended, not before.
    """
    sync, runtime, clock = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)
    server = runtime.servers[("web", "s1")]
    server.current = 2
    runtime.calls.clear()
    sync.delete_key(PREFIX + "s1", PREFIX)
    assert runtime.calls == [("admin", "s1", "drain", "etcd")]
    for _ in range(4):
        clock.advance(REMOVAL_POLL)
    assert ("web", "s1") in runtime.servers
    server.current = 0
    clock.advance(REMOVAL_POLL)
    assert ("web", "s1") not in runtime.servers
    assert runtime.calls[1:] == [("admin", "s1", "maint", "etcd"), ("remove", "web", "s1")]
    assert not clock.getDelayedCalls()


def test_delete_of_an_idle_server_removes_it_at_once() -> None:
    """A deleted key whose server has no connection removes it at once."""
    sync, runtime, clock = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)
    sync.delete_key(PREFIX + "s1", PREFIX)
    assert ("web", "s1") not in runtime.servers
    assert not clock.getDelayedCalls()


def test_put_while_waiting_for_removal_makes_it_again() -> None:
    """A key put back while its server waits for removal is made again after."""
    sync, runtime, clock = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)
    runtime.servers[("web", "s1")].current = 1
    sync.delete_key(PREFIX + "s1", PREFIX)
    sync.put_key(PREFIX + "s1", "127.0.0.1:8081", PREFIX)
    runtime.servers[("web", "s1")].current = 0
    clock.advance(REMOVAL_POLL)
    assert runtime.servers[("web", "s1")].port == 8081
    assert runtime.servers[("web", "s1")].admin == "ready"


def test_delete_of_an_unknown_key_does_nothing() -> None:
    """Deleting a key that made no server asks nothing of the runtime."""
    sync, runtime, _ = make(file_servers=("s1",))
    runtime.add_server("web", "s1", "127.0.0.1:80", True)
    runtime.calls.clear()
    sync.delete_key(PREFIX + "s1", PREFIX)
    sync.delete_key(PREFIX + "s9", PREFIX)
    assert runtime.calls == []


def test_a_server_of_the_file_wins(logged: List[str]) -> None:
    """A key naming a server of the configuration file is ignored, logged once."""
    sync, runtime, _ = make(file_servers=("s1",))
    runtime.add_server("web", "s1", "127.0.0.1:80", True)
    runtime.calls.clear()
    sync.put_key(PREFIX + "s1", "127.0.0.1:9999", PREFIX)
    sync.put_key(PREFIX + "s1", "127.0.0.1:9999", PREFIX)
    assert runtime.calls == []
    assert sum("the file wins" in line for line in logged) == 1


def test_bad_values_and_keys_are_ignored_and_logged_once(logged: List[str]) -> None:
    """A value without an address, or a key deeper than a name, is logged once."""
    sync, runtime, _ = make()
    for _ in range(2):
        sync.put_key(PREFIX + "s1", "not-an-address", PREFIX)
        sync.put_key(PREFIX + "a/b", "127.0.0.1:80", PREFIX)
    assert runtime.calls == []
    assert sum("web/s1" in line for line in logged) == 1
    assert sum("a/b" in line for line in logged) == 1


def test_refused_add_is_logged(logged: List[str]) -> None:
    """An option the runtime refuses leaves the server out, with the reason logged."""
    sync, runtime, _ = make()
    runtime.refuse_add = ValueError("server option 'weight': 999 is out of range")
    sync.put_key(PREFIX + "s1", "127.0.0.1:80 weight 999", PREFIX)
    assert ("web", "s1") not in runtime.servers
    assert any("999 is out of range" in line for line in logged)
    assert sync.known == {}


def test_listing_replaces_the_servers() -> None:
    """A whole listing removes the servers whose keys are gone and adds new ones."""
    sync, runtime, _ = make()
    sync.replace_all({PREFIX + "s1": "127.0.0.1:8081", PREFIX + "s2": "127.0.0.1:8082"}, PREFIX)
    runtime.calls.clear()
    sync.replace_all({PREFIX + "s2": "127.0.0.1:8082", PREFIX + "s3": "127.0.0.1:8083"}, PREFIX)
    assert sorted(n for _, n in runtime.servers) == ["s2", "s3"]
    assert ("add", "web", "s2", "127.0.0.1:8082", True) not in runtime.calls


def test_an_existing_server_is_adopted() -> None:
    """
    A server the runtime already has (recreated from a state file) is taken
    over by its key: only what differs is changed.
    """
    sync, runtime, _ = make()
    runtime.add_server("web", "s1", "127.0.0.1:8080", True)
    runtime.calls.clear()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)
    assert runtime.calls == []
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080 drain", PREFIX)
    assert runtime.calls == [("admin", "s1", "drain", "etcd")]


def test_new_host_name_recreates_the_server() -> None:
    """A host name cannot be set in place: the server is made again with it."""
    sync, runtime, _ = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)
    runtime.calls.clear()
    sync.put_key(PREFIX + "s1", "localhost:8080", PREFIX)
    assert [c[0] for c in runtime.calls] == ["admin", "admin", "remove", "add"]
    assert runtime.calls[-1] == ("add", "web", "s1", "localhost:8080", True)


def test_a_refused_change_does_not_escape(logged: List[str]) -> None:
    """A change the runtime refuses is logged once; the next key still applies."""
    sync, runtime, _ = make()
    sync.put_key(PREFIX + "s1", "127.0.0.1:8080", PREFIX)

    def refuse(*args: Any) -> None:
        raise ValueError("Could not understand IP address format.")

    runtime.set_server_address = refuse  # type: ignore[method-assign]
    sync.put_key(PREFIX + "s1", "127.0.0.2:8080", PREFIX)
    sync.put_key(PREFIX + "s2", "127.0.0.1:8082", PREFIX)
    assert any("Could not understand IP address format." in line for line in logged)
    assert ("web", "s2") in runtime.servers
