"""
C{maxconn} through twistd: at the limit l4lb leaves new connections in the
kernel's accept queue (it never accepts and then drops them) and serves
them as soon as a slot frees.
"""

from __future__ import annotations

import select
import socket
from typing import Dict

import pytest

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    connect,
    echo_once,
    free_port,
    read_line,
    wait_until,
)

#: Every test here runs over both data paths.
pytestmark = pytest.mark.usefixtures("both_relays")


def accept_queue(port: int) -> int:
    """
    How many connections wait in the accept queue of the IPv4 listening
    socket on C{port} (the receive-queue column of a LISTEN socket in
    /proc/net/tcp).
    """
    queues: Dict[int, int] = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for row in f:
            cols = row.split()
            local, state, queue = cols[1], cols[3], cols[4]
            if state == "0A":
                queues[int(local.split(":")[1], 16)] = int(queue.split(":")[1], 16)
    return queues[port]


def hold(port: int) -> socket.socket:
    """
    Open a relayed connection and keep it: return once the server greeted.
    """
    sock = connect(port)
    name, _ = read_line(sock)
    assert name
    return sock


def check_limit(lb_port: int, other_port: int, server: EchoServer, held: list) -> None:
    """
    With C{held} connections at the limit, a new one waits in the queue
    while traffic on C{other_port} proves l4lb kept running; closing one
    held connection lets the waiting one through.
    """
    waiting = connect(lb_port)
    # A full round trip through another frontend: l4lb has handled every
    # event that was pending when `waiting` connected, including the
    # listening socket's readiness, had it been reading.
    assert echo_once(other_port, b"still serving").echoed == b"still serving"
    assert accept_queue(lb_port) == 1
    assert server.accepted == len(held)

    held.pop().close()
    name, _ = read_line(waiting)
    assert name == server.name.encode()
    assert wait_until(lambda: accept_queue(lb_port) == 0)
    waiting.close()


def test_frontend_maxconn_leaves_connections_in_backlog(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """A frontend at its maxconn accepts nothing more until a slot frees."""
    limited, other = servers(EchoServer("limited")), servers(EchoServer("other"))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", limited.port)])
    be2 = BackendSection("be2", [ServerLine("s2", "127.0.0.1", other.port)])
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be", {"maxconn": "2"})
    fe2 = FrontendSection("fe2", "127.0.0.1", free_port(), "be2")
    balancers.start([fe, fe2], [be, be2])

    held = [hold(fe.port), hold(fe.port)]
    check_limit(fe.port, fe2.port, limited, held)
    for sock in held:
        sock.close()


def test_global_maxconn_pauses_every_frontend(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """At the global maxconn no frontend accepts; one close resumes them."""
    s1 = servers(EchoServer("s1"))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    fe2 = FrontendSection("fe2", "127.0.0.1", free_port(), "be")
    balancers.start([fe, fe2], [be], global_={"maxconn": "2", "log": "stdout"})

    held = [hold(fe.port), hold(fe2.port)]
    waiting = {connect(fe.port): fe.port, connect(fe2.port): fe2.port}
    held.pop().close()
    # One slot frees: exactly one waiting connection is served.  Once it is
    # greeted, l4lb has seen both listening sockets ready, so the other one
    # would have been accepted too if the global limit were not enforced.
    ready, _, _ = select.select(list(waiting), [], [], 10)
    assert len(ready) >= 1
    served = ready[0]
    assert read_line(served)[0] == b"s1"
    assert s1.accepted == 3
    assert accept_queue(fe.port) + accept_queue(fe2.port) == 1
    held.pop().close()
    (other,) = [sock for sock in waiting if sock is not served]
    assert read_line(other)[0] == b"s1"
    for sock in waiting:
        sock.close()
