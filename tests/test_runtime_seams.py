"""
Tests for the seam between a running balancer and its runtime API, reload
and workers (L{l4lb.interfaces.IBalancerRuntime}, L{l4lb.runtime}), and
for the policies written once behind it: open sessions, enabling and
disabling health checks, and what C{on-marked-down} / C{on-marked-up} do
in the main process and in a worker.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, List, Optional

import pytest
from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from l4lb.admin.commands import AdminCommands
from l4lb.config.model import Config
from l4lb.health.agent import reply_result
from l4lb.interfaces import IBalancerRuntime
from l4lb.pool import Server
from l4lb.service import BalancerService
from l4lb.workers.child import WorkerService, apply_server_state
from tests.healthkit import PASS, REFUSED, Checked, spec
from tests.runtimekit import stand_in
from tests.test_reload import start
from tests.test_reload_state import CHECKED, reload_text

ROOT = Path(__file__).resolve().parent.parent

#: The modules that reach the running balancer only through the interface.
CALLERS = sorted(
    [*(ROOT / "l4lb" / "admin").glob("*.py"), ROOT / "l4lb" / "reload.py"]
    + list((ROOT / "l4lb" / "workers").glob("*.py"))
)


class FakeSession:
    """
    An open session of a server: records how it was ended.
    """

    def __init__(self, server: Optional[Server], state: str = "established") -> None:
        self.server = server
        self.backend = server.backend if server is not None else None
        self.state = state
        self.ended: List[str] = []
        self.accepted = 0.0
        self.client_host, self.client_port = "127.0.0.9", 40000
        self.frontend = SimpleNamespace(name="fe")
        self.bytes_in = self.bytes_out = 0
        if server is not None:
            server.sessions.add(self)

    def kill(self, termination: str) -> None:
        self.ended.append(termination)
        if self.server is not None:
            self.server.sessions.discard(self)


# -- the interface ----------------------------------------------------------


def test_service_and_worker_provide_the_runtime_interface() -> None:
    """
    A real L{BalancerService} and a real C{nbproc} L{WorkerService} provide
    every attribute and method of L{IBalancerRuntime}.
    """
    reactor = MemoryReactorClock()
    assert verifyObject(IBalancerRuntime, BalancerService(Config(), reactor))
    assert verifyObject(IBalancerRuntime, WorkerService(Config(), reactor, {}))


def test_callers_type_the_service_and_reach_nothing_private() -> None:
    """
    The runtime API, the reload and the workers take the balancer as
    L{IBalancerRuntime}, never as C{Any}, and use none of its private
    attributes.
    """
    untyped = re.compile(r"\bservice\w*\s*:\s*(?:Optional\[)?Any\b")
    private = re.compile(r"\bservice\._[a-z]")
    found = []
    for path in CALLERS:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if untyped.search(line) or private.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert CALLERS and not found, "\n".join(found)


# -- open sessions ----------------------------------------------------------


def queued_lab() -> "tuple[Checked, Any, FakeSession, FakeSession]":
    """
    A backend with one session on s1 and one waiting in the queue, and
    the runtime over it.
    """
    lab = Checked([spec("s1", check=False)])
    runtime = stand_in(backends={"be": lab.backend}, monitor=lab.monitor)
    assigned = FakeSession(lab.server("s1"))
    waiting = FakeSession(None, "queued")
    waiting.backend = lab.backend
    waiting.client_port = 40001
    assert lab.backend.queue.add(waiting) is not None
    return lab, runtime, assigned, waiting


def test_show_sess_lists_the_connections_waiting_in_a_queue() -> None:
    """
    C{show sess} lists every open session, as C{open_sessions} does: those
    waiting in a backend's queue too, with no server yet (HAProxy's
    C{srv=<none>}).
    """
    lab, runtime, assigned, waiting = queued_lab()
    listed = AdminCommands(runtime, lab.clock).run("show sess").splitlines()
    assert len(listed) == 2
    assert f"{id(assigned):#x}:" in listed[0] and " srv=s1 " in listed[0]
    assert f"{id(waiting):#x}:" in listed[1]
    assert " be=be srv=<none> state=queued " in listed[1]
    assert runtime.open_sessions() == [assigned, waiting]


# -- enabling and disabling health -----------------------------------------


def checked_with_agent() -> "tuple[Checked, AdminCommands]":
    """
    s1 with a health check and an agent check every second, started, and
    the runtime API over it.
    """
    lab = Checked([spec(agent_check=True, agent_port=9, inter=1.0), spec("s2", 2, check=False)])
    lab.start()
    runtime = stand_in(backends={"be": lab.backend}, monitor=lab.monitor)
    return lab, AdminCommands(runtime, lab.clock)


def test_disabled_health_is_not_undone_by_the_agent() -> None:
    """
    After C{disable health}, a server its checks had marked DOWN counts as
    UP ("no check"), and stays so when its agent next answers C{up}: the
    stopped health check's last verdict no longer counts.
    """
    lab, commands = checked_with_agent()
    server = lab.server("s1")
    lab.checks["s1"].outcome = REFUSED
    lab.agents["s1"].outcome = reply_result("up")
    lab.advance_to(10.0)
    assert not server.up
    commands.run("disable health be/s1")
    assert server.up and server.health_text == "no check"
    runs = len(lab.checks["s1"].runs)
    lab.advance_to(20.0)
    assert server.up and server.health_text == "no check"
    assert len(lab.checks["s1"].runs) == runs


def test_disabled_health_with_the_agent_down_is_down() -> None:
    """
    Without its health check, a server whose agent says C{down} is DOWN
    and shown as the agent's verdict.
    """
    lab, commands = checked_with_agent()
    server = lab.server("s1")
    lab.agents["s1"].outcome = reply_result("down")
    lab.advance_to(3.0)
    commands.run("disable health be/s1")
    assert not server.up and server.health_text == "DOWN (agent)"


def test_enable_health_resumes_checks_and_their_verdict() -> None:
    """
    C{enable health} runs the health check again at once, and the server
    takes the state machine's verdict and text again.
    """
    lab, commands = checked_with_agent()
    server = lab.server("s1")
    lab.checks["s1"].outcome = REFUSED
    lab.advance_to(10.0)
    commands.run("disable health be/s1")
    assert server.up
    runs = len(lab.checks["s1"].runs)
    commands.run("enable health be/s1")
    lab.clock.advance(0)
    assert len(lab.checks["s1"].runs) == runs + 1
    assert not server.up and server.health_text.startswith("DOWN")


def test_disabled_health_stays_disabled_over_a_reload() -> None:
    """
    A server whose health check was stopped with C{disable health} keeps
    it stopped after a reload that leaves its checks as they were, as
    HAProxy's server state does; a reload that changes them starts them.
    """
    service, reactor = start(CHECKED)
    commands = AdminCommands(service, reactor)
    commands.run("disable health be/s1")
    reload_text(service, CHECKED.replace("[frontend fe]\n", "[frontend fe]\nmaxconn = 9\n"))
    health = service.monitor.find("be", "s1")
    server = service.backends["be"].server("s1")
    assert health.check_loop is not None and not health.check_loop.running
    assert not health.check_enabled
    assert server.up and server.health_text == "no check"
    reload_text(service, CHECKED.replace("127.0.10.1:80 check", "127.0.10.1:80 check inter 3s"))
    health = service.monitor.find("be", "s1")
    assert health.check_enabled and health.check_loop is not None
    assert health.check_loop.running


# -- on-marked-down and on-marked-up ---------------------------------------


def marks_lab() -> "tuple[Checked, Any]":
    """
    s1 (C{on-marked-down shutdown-sessions}, C{on-marked-up
    shutdown-backup-sessions}) and the backup b1, without checks, each
    with one open session.
    """
    lab = Checked(
        [
            spec(
                "s1",
                check=False,
                on_marked_down="shutdown-sessions",
                on_marked_up="shutdown-backup-sessions",
            ),
            spec("b1", 2, check=False, backup=True),
        ]
    )
    return lab, stand_in(backends={"be": lab.backend}, monitor=lab.monitor)


def by_runtime_api(lab: Checked, runtime: Any, admin: str) -> None:
    """
    Set s1's administrative state as the runtime API does in the main
    process.
    """
    AdminCommands(runtime, lab.clock).run(f"set server be/s1 state {admin}")


def by_worker(lab: Checked, runtime: Any, admin: str) -> None:
    """
    Set s1's administrative state as a worker does when the main process
    sends it.
    """
    server = lab.server("s1")
    apply_server_state(runtime, "be", "s1", server.up, admin, server.weight, server.maxconn)


PATHS = [by_runtime_api, by_worker]


@pytest.mark.parametrize("path", PATHS, ids=["main", "worker"])
def test_maintenance_closes_sessions_with_on_marked_down(
    path: Callable[[Checked, Any, str], None]
) -> None:
    """
    Putting an UP server with C{on-marked-down shutdown-sessions} in
    maintenance closes its sessions (C{DD}), whether the runtime API of
    the main process or a worker applies it; draining does not.
    """
    lab, runtime = marks_lab()
    session = FakeSession(lab.server("s1"))
    path(lab, runtime, "drain")
    assert session.ended == []
    path(lab, runtime, "maint")
    assert session.ended == ["DD"]


@pytest.mark.parametrize("path", PATHS, ids=["main", "worker"])
def test_leaving_maintenance_closes_backup_sessions_with_on_marked_up(
    path: Callable[[Checked, Any, str], None]
) -> None:
    """
    An active UP server with C{on-marked-up shutdown-backup-sessions}
    that leaves maintenance is back in service: its backup's sessions
    close (C{UD}), in the main process and in a worker alike.
    """
    lab, runtime = marks_lab()
    lab.server("s1").set_admin("maint")
    backup = FakeSession(lab.server("b1"))
    path(lab, runtime, "ready")
    assert backup.ended == ["UD"]


def test_marks_of_a_health_change_match_in_main_and_worker() -> None:
    """
    A server marked DOWN then UP by its health closes its own sessions,
    then its backup's, the same in the main process (its checks) and in
    a worker (the state it is sent).
    """
    outcomes = []
    for side in ("main", "worker"):
        lab = Checked(
            [
                spec(on_marked_down="shutdown-sessions", on_marked_up="shutdown-backup-sessions"),
                spec("b1", 2, check=False, backup=True),
            ]
        )
        runtime = stand_in(backends={"be": lab.backend}, monitor=lab.monitor)
        server = lab.server("s1")
        own, backup = FakeSession(server), FakeSession(lab.server("b1"))
        if side == "main":
            lab.start()
            lab.checks["s1"].outcome = REFUSED
            lab.advance_to(30.0)
            assert not server.up
            lab.checks["s1"].outcome = PASS
            lab.advance_to(60.0)
        else:
            apply_server_state(runtime, "be", "s1", False, "ready", server.weight, 0)
            apply_server_state(runtime, "be", "s1", True, "ready", server.weight, 0)
        assert server.up
        outcomes.append((own.ended, backup.ended))
    assert outcomes[0] == outcomes[1] == (["DD"], ["UD"])
