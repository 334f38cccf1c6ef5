"""
The system calls l4lb makes per new connection, counted by C{strace -c}
attached to a real C{twistd l4lb} (the documented command, logging a
tcplog line per connection) while sequential short connections pass
through it.  The bounds are what the lean path needs today, so that a
change that adds a system call per connection fails here.
"""

from __future__ import annotations

import platform
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import BackendSection, FrontendSection, ServerLine, free_port

#: Connections counted (after as many to warm up).
CONNECTIONS = 400

#: The most calls of each kind per connection: one accept4 that succeeds
#: and one that finds the backlog empty; socket and connect for the
#: server's socket; five epoll_ctl (the client's socket added, the server's
#: added for writing and switched to reading, both removed before they are
#: closed); and one write of the log line.  Making the accepted socket a non-blocking Python
#: socket costs CPython a getsockname (its socket object checks the
#: descriptor it wraps) and an ioctl; PyPy makes three fcntl calls instead
#: (two for the accepted socket, one for the server's).  HAProxy 2.6 makes
#: 24 to 25 calls for the same work, plus its clock reads.
COMMON = {
    "accept4": 2,
    "socket": 1,
    "connect": 1,
    "getsockopt": 0,
    "epoll_ctl": 5,
    "write": 1,
}
PER_CONNECTION = {
    "CPython": {**COMMON, "getsockname": 1, "ioctl": 1, "fcntl": 0},
    "PyPy": {**COMMON, "getsockname": 0, "ioctl": 0, "fcntl": 3},
}
#: Every call per connection, of any kind, leaving out the memory
#: allocator's (brk, mmap, munmap: the garbage collector's, not the
#: connection's): 26 on CPython today, 27 on PyPy.
TOTAL_PER_CONNECTION = {"CPython": 26.1, "PyPy": 27.1}
MEMORY_CALLS = {"brk", "mmap", "munmap", "madvise", "mprotect"}


def exchange(port: int) -> None:
    """
    One short connection: read the greeting, send a line, read it back,
    half-close, read to the end.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"ping\n")
        got = b""
        while not got.endswith(b"ping\n"):
            chunk = s.recv(100)
            assert chunk, got
            got += chunk
        s.shutdown(socket.SHUT_WR)
        while s.recv(100):
            pass


def count_calls(path: Path) -> Dict[str, int]:
    """
    The calls column of C{strace -c}'s table, by system call name.
    """
    calls: Dict[str, int] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    return calls


def test_system_calls_per_new_connection(
    servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """
    Per relayed short connection, l4lb makes no more system calls of each
    kind than L{PER_CONNECTION} allows for the interpreter, and at most
    L{TOTAL_PER_CONNECTION} in all; every connection was logged.
    """
    strace = shutil.which("strace")
    assert strace is not None, "strace is not installed (script/debian-deps installs it)"
    echo = servers(EchoServer("e1"))
    be = BackendSection("be", [ServerLine("e1", "127.0.0.1", echo.port)])
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be])
    for _ in range(CONNECTIONS):
        exchange(fe.port)
    lb.wait_for_records(CONNECTIONS)
    out = tmp_path / "strace.txt"
    tracer = subprocess.Popen(
        [strace, "-c", "-f", "-o", str(out), "-p", str(lb.pid)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # strace says so on standard error once it is attached.
        assert tracer.stderr is not None
        first = tracer.stderr.readline()
        assert "attached" in first, first
        time.sleep(0.2)
        for _ in range(CONNECTIONS):
            exchange(fe.port)
        lb.wait_for_records(2 * CONNECTIONS)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
    calls = count_calls(out)
    per_connection = {name: count / CONNECTIONS for name, count in calls.items()}
    report = ", ".join(f"{name} {n:.2f}" for name, n in sorted(per_connection.items()))
    implementation = platform.python_implementation()
    for name, most in PER_CONNECTION[implementation].items():
        assert per_connection.get(name, 0) <= most + 0.05, report
    total = sum(n for name, n in per_connection.items() if name not in MEMORY_CALLS)
    assert total <= TOTAL_PER_CONNECTION[implementation], report
