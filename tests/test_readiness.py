"""
Tests for L{l4lb.readiness}: when an instance asks for traffic, as
C{show ready}, C{/ready} and C{show info} tell it, and the instance drain.
"""

from __future__ import annotations

from typing import Any, Tuple

import pytest
from twisted.internet.defer import Deferred

from l4lb.admin.commands import AdminCommands, CommandError
from l4lb.admin.web import StatsRoot
from l4lb.config.model import Config
from l4lb.readiness import readiness
from tests.relaykit import Relay
from tests.runtimekit import stand_in
from tests.test_admin_web import get


def make(**attributes: Any) -> Tuple[Relay, Any]:
    """
    A relay (frontend C{fe} to backend C{be}, servers s1 and s2) and a
    runtime over it with C{attributes}.
    """
    relay = Relay()
    values: Any = dict(
        config=Config(frontends=(relay.frontend.spec,), backends=(relay.backend.spec,)),
        frontends={"fe": relay.frontend},
        backends={"be": relay.backend},
        limiter=relay.limiter,
    )
    values.update(attributes)
    return relay, stand_in(**values)


def info(commands: AdminCommands) -> "dict[str, str]":
    """
    C{show info} as a dictionary.
    """
    lines = commands.run("show info").splitlines()
    return dict(line.split(": ", 1) for line in lines if line)


def test_ready_when_bound_and_a_server_is_usable() -> None:
    """A running instance whose frontends have a usable server is ready: 200 on /ready, 'ready' on the socket, Ready 1 in show info."""
    relay, service = make()
    commands = AdminCommands(service, relay.reactor)
    assert readiness(service).ready
    assert commands.run("show ready") == "ready\n"
    assert get(StatsRoot(service, relay.reactor), b"/ready") == (200, b"ready\n")
    fields = info(commands)
    assert (fields["Ready"], fields["Stopping"], fields["InstanceState"]) == ("1", "0", "ready")


def test_not_ready_while_the_listeners_are_not_open() -> None:
    """Before every frontend accepts, the instance is not ready and says why."""
    relay, service = make(ready=Deferred())
    assert readiness(service).text() == "not ready: starting: listeners not open yet\n"


def test_not_ready_when_a_frontend_has_no_usable_server() -> None:
    """A frontend whose backend has every server in maintenance makes the instance not ready (503), naming the frontend and backend."""
    relay, service = make()
    commands = AdminCommands(service, relay.reactor)
    commands.run("disable server be/s1")
    assert readiness(service).ready
    commands.run("disable server be/s2")
    text = "not ready: frontend 'fe' has no usable server (backend 'be')\n"
    assert commands.run("show ready") == text
    assert get(StatsRoot(service, relay.reactor), b"/ready") == (503, text.encode())
    commands.run("enable server be/s2")
    assert commands.run("show ready") == "ready\n"


def test_drained_instance_is_not_ready_but_still_serves() -> None:
    """set instance state drain turns the instance not ready and shows it in show info; connections are still relayed; ready again after set instance state ready."""
    relay, service = make()
    commands = AdminCommands(service, relay.reactor)
    assert commands.run("set instance state drain") == ""
    assert commands.run("show ready") == "not ready: drained by an operator\n"
    assert info(commands)["InstanceState"] == "drain"
    relay.accept()
    assert len(relay.attempts()) == 1
    assert commands.run("set instance state READY") == ""
    assert commands.run("show ready") == "ready\n"


@pytest.mark.parametrize("line", ["set instance state maint", "set instance state", "show ready now"])
def test_bad_instance_commands_are_refused(line: str) -> None:
    """A state other than ready or drain, or extra words, are refused with the usage."""
    relay, service = make()
    with pytest.raises(CommandError, match="Usage"):
        AdminCommands(service, relay.reactor).run(line)


def test_stopping_cannot_be_undone() -> None:
    """While stopping (the grace time after SIGTERM), the instance is not ready, show info says Stopping 1, and no command makes it ready."""
    relay, service = make(instance_state="stopping")
    commands = AdminCommands(service, relay.reactor)
    assert commands.run("show ready") == "not ready: stopping\n"
    assert info(commands)["Stopping"] == "1"
    with pytest.raises(CommandError, match="stopping"):
        commands.run("set instance state ready")


def test_ready_page_needs_no_credentials() -> None:
    """With stats auth, /ready answers without credentials while the other pages still ask for them."""
    relay, service = make()
    root = StatsRoot(service, relay.reactor, ("admin", "secret"))
    assert get(root, b"/ready") == (200, b"ready\n")
    assert get(root, b"/;csv")[0] == 401
    assert get(root, b"/ready/x")[0] == 401
