"""
Readiness end to end: C{/ready} on the statistics listener and the runtime
API through a real C{twistd l4lb}, the instance drain, and SIGTERM's
C{grace}: not ready first, still serving, then the listeners close.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.error
import urllib.request
from typing import Tuple

import pytest

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import BackendSection, FrontendSection, ServerLine, echo_once, free_port, wait_until, runtime_command


def ready(port: int) -> Tuple[int, str]:
    """
    GET /ready on the statistics listener: the status and the body.
    """
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def command(path: str, line: str) -> str:
    """
    One runtime API command on the UNIX socket at C{path}, and its answer.
    """
    return runtime_command(path, line)


def refused(port: int) -> bool:
    """
    Whether a connection to C{port} on loopback is refused.
    """
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_ready_follows_servers_and_the_instance_drain(
    servers: StartServer, balancers: BalancerFactory, tmp_path: object
) -> None:
    """/ready is 200 while a server is usable, 503 naming the frontend once every server is in maintenance; an instance drain makes it 503 and shows in show info while connections are still relayed, and a reload keeps it."""
    s1 = servers(EchoServer("s1"))
    admin = os.path.join(str(tmp_path), "admin.sock")
    stats = free_port()
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start(
        [fe],
        [BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])],
        global_={"stats bind": f"127.0.0.1:{stats}", "stats socket": admin},
    )
    assert ready(stats) == (200, "ready\n")
    assert command(admin, "disable server be/s1") == "\n"
    assert ready(stats) == (503, "not ready: frontend 'fe' has no usable server (backend 'be')\n")
    command(admin, "enable server be/s1")
    assert command(admin, "set instance state drain") == "\n"
    assert ready(stats) == (503, "not ready: drained by an operator\n")
    assert "InstanceState: drain" in command(admin, "show info")
    assert echo_once(fe.port, b"still served").echoed == b"still served"
    assert any("Instance set to DRAIN by stats socket command" in line for line in lb.lines())
    command(admin, "reload")
    assert ready(stats) == (503, "not ready: drained by an operator\n")
    command(admin, "set instance state ready")
    assert command(admin, "show ready") == "ready\n\n"


@pytest.mark.parametrize("nbproc", ["1", "2"])
def test_sigterm_is_not_ready_for_grace_then_closes(
    servers: StartServer, balancers: BalancerFactory, nbproc: str
) -> None:
    """After SIGTERM with grace 3s, /ready answers 503 'stopping' at once while new connections are still relayed (a second SIGTERM changes nothing); then the frontend's port closes and the process exits 0.  With nbproc 2 the workers keep relaying through the grace time."""
    s1 = servers(EchoServer("s1"))
    stats = free_port()
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start(
        [fe],
        [BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])],
        global_={"stats bind": f"127.0.0.1:{stats}", "grace": "3s", "nbproc": nbproc},
    )
    if nbproc != "1":
        assert wait_until(
            lambda: sum("Proxy fe started." in line for line in lb.lines()) == 1 + int(nbproc), 15.0
        ), lb.output()
    assert ready(stats)[0] == 200
    sent = time.monotonic()
    os.kill(lb.pid, signal.SIGTERM)
    assert wait_until(lambda: ready(stats) == (503, "not ready: stopping\n"), 2.0), lb.output()
    assert echo_once(fe.port, b"during grace").echoed == b"during grace"
    os.kill(lb.pid, signal.SIGTERM)
    assert echo_once(fe.port, b"after a second").echoed == b"after a second"
    assert any("not ready for 3.0s (grace)" in line for line in lb.lines()), lb.output()
    assert wait_until(lambda: refused(fe.port), 10.0), lb.output()
    # The port closed only once the grace time had passed.
    assert time.monotonic() - sent >= 3.0
    assert lb.process is not None
    assert lb.process.wait(10) == 0
    lb.join_output()
