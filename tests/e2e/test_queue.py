"""
Queueing through twistd: with every server at its C{maxconn}, new
connections wait in the backend's queue, are served in order as slots
free, and are closed with C{sQ} when C{timeout queue} passes.
"""

from __future__ import annotations

import socket
from typing import List

from .backends import ConcurrencyServer
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


def test_maxconn_queue_serves_everyone(servers: StartServer, balancers: BalancerFactory) -> None:
    """
    With maxconn 2 on the only server and 6 clients, the server never holds
    more than 2 connections, the other clients wait, and all 6 are served
    in the order they arrived as connections end.
    """
    server = servers(ConcurrencyServer("s1"))
    port = free_port()
    lb = balancers.start(
        [FrontendSection("fe", "127.0.0.1", port, "be")],
        [
            BackendSection(
                "be",
                [ServerLine("s1", "127.0.0.1", server.port, "maxconn 2")],
                extra={"timeout queue": "30s"},
            )
        ],
    )
    clients: List[socket.socket] = []
    for _ in range(6):
        clients.append(connect(port))
        # Each client is accepted before the next one connects, so the
        # queue's order is the clients' order.
        assert wait_until(lambda: server.accepted >= min(len(clients), 2), timeout=10)
    for client in clients[:2]:
        assert read_line(client)[0] == b"s1"
    assert server.accepted == 2
    for i in range(6):
        clients[i].close()
        if i + 2 < 6:
            assert read_line(clients[i + 2])[0] == b"s1"
            assert wait_until(lambda: server.accepted == i + 3, timeout=10)
    assert wait_until(lambda: server.finished == 6, timeout=10)
    assert server.most == 2
    records = lb.wait_for_records(6)
    assert [r.termination for r in records] == ["--"] * 6
    queued = [r for r in records if r.tw > 0]
    assert len(queued) >= 3
    assert all(r.server == "s1" and r.tc >= 0 for r in records)
    assert max(r.backend_queue for r in records) >= 1


def test_queue_timeout_closes_waiting(servers: StartServer, balancers: BalancerFactory) -> None:
    """
    A client waiting longer than timeout queue is closed and logged sQ with
    no server and its time in the queue; the server kept at most its
    maxconn.
    """
    server = servers(ConcurrencyServer("s1"))
    port = free_port()
    lb = balancers.start(
        [FrontendSection("fe", "127.0.0.1", port, "be")],
        [
            BackendSection(
                "be",
                [ServerLine("s1", "127.0.0.1", server.port, "maxconn 1")],
                extra={"timeout queue": "500ms"},
            )
        ],
    )
    held = connect(port)
    assert read_line(held)[0] == b"s1"
    waiting = [connect(port) for _ in range(2)]
    for sock in waiting:
        sock.settimeout(10)
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
        sock.close()
    records = lb.wait_for_records(2)
    assert [r.termination for r in records] == ["sQ", "sQ"]
    assert all(r.server == "<NOSRV>" and 450 <= r.tw < 5000 and r.tc == -1 for r in records)
    assert server.accepted == 1 and server.most == 1
    held.close()
