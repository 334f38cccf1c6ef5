"""
Graceful stop through twistd: SIGTERM closes the listeners at once, lets
open connections finish within C{hard-stop-after}, then exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    connect,
    free_port,
    read_line,
    wait_until,
)


def refused(port: int) -> bool:
    """
    Whether a connection to C{port} on the loopback is refused.
    """
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_open_connections_finish(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    After SIGTERM new connections are refused while an open one keeps
    relaying; once it closes the process exits 0 at once.
    """
    s1 = servers(EchoServer("s1"))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be], global_={"hard-stop-after": "20s"})
    held = connect(fe.port)
    assert read_line(held)[0] == b"s1"

    assert lb.process is not None
    lb.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: refused(fe.port), 10)
    for i in range(3):
        held.sendall(b"line %d\n" % i)
        assert read_line(held)[0] == b"line %d" % i
    assert lb.running()
    started = time.monotonic()
    held.shutdown(socket.SHUT_WR)
    assert held.recv(100) == b""
    held.close()
    assert lb.stop(timeout=10) == 0
    assert time.monotonic() - started < 5


def test_hard_stop_after_closes_the_rest(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    A connection still open at C{hard-stop-after} is closed, logged C{KD},
    and the process exits 0 shortly after.
    """
    s1 = servers(EchoServer("s1"))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be], global_={"hard-stop-after": "1s", "log": "stdout"})
    held = connect(fe.port)
    assert read_line(held)[0] == b"s1"
    started = time.monotonic()
    assert lb.stop(timeout=10) == 0
    assert time.monotonic() - started < 4
    held.settimeout(5)
    try:
        assert held.recv(100) == b""
    except ConnectionResetError:
        pass
    held.close()
    assert any(r.termination == "KD" for r in lb.log_records())


def test_sigusr1_reopens_the_log_file(
    servers: StartServer, balancers: BalancerFactory, tmp_path: "os.PathLike[str]"
) -> None:
    """
    After the log file is moved away, SIGUSR1 makes l4lb write to a new
    file at the configured path.
    """
    s1 = servers(EchoServer("s1"))
    log = os.path.join(str(tmp_path), "conn.log")
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be], global_={"log": log})

    def one() -> None:
        sock = connect(fe.port)
        assert read_line(sock)[0] == b"s1"
        sock.close()

    one()
    assert wait_until(lambda: os.path.getsize(log) > 0)
    os.rename(log, log + ".1")
    assert lb.process is not None
    lb.process.send_signal(signal.SIGUSR1)
    assert wait_until(lambda: any("Log files reopened." in line for line in lb.lines()))
    one()
    assert wait_until(lambda: os.path.exists(log) and os.path.getsize(log) > 0)
    with open(log + ".1") as rotated:
        assert len(rotated.read().splitlines()) == 1
