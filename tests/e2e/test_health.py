"""
Health checks under twistd against real servers on 127.0.0.1, with
C{inter 200 rise 2 fall 2}: servers that stop and start again, a Redis-like
server that answers C{-ERR}, an agent that drains its server, and a backend
with no server left.  Every transition must appear in the log in HAProxy's
words.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

from .backends import AgentServer, EchoOnPort, EchoServer, RedisLike
from .conftest import BalancerFactory, StartServer
from .harness import (
    Balancer,
    BackendSection,
    FrontendSection,
    ServerLine,
    echo_once,
    free_port,
    show_stat,
    wait_until,
)

CHECKS = "check inter 200 rise 2 fall 2"
INTER = 0.2
SLACK = 1.5
"""Seconds allowed on top of the protocol's own timing, for process and polling latency."""


def frontend(backend: BackendSection) -> FrontendSection:
    """A frontend on a free port in front of C{backend}."""
    return FrontendSection("fe", "127.0.0.1", free_port(), backend.name)


def checked_pair(
    servers: StartServer, balancers: BalancerFactory, s1_options: str, s2_options: str, **start: Any
) -> Tuple[EchoOnPort, int, FrontendSection, Balancer]:
    """
    l4lb in front of s1 (which can be stopped and started again on its
    port) and s2, with these server options.

    @return: s1, its port, the frontend and the balancer.
    """
    s1 = servers(EchoOnPort("s1"))
    s2 = servers(EchoServer("s2"))
    be = BackendSection(
        "be",
        [
            ServerLine("s1", "127.0.0.1", s1.port, s1_options),
            ServerLine("s2", "127.0.0.1", s2.port, s2_options),
        ],
    )
    fe = frontend(be)
    return s1, s1.port, fe, balancers.start([fe], [be], **start)


def wait_line(lb: Balancer, pattern: str, after: int = 0, timeout: float = 10.0) -> str:
    """Wait for a stdout line (from index C{after} on) matching C{pattern}; return it."""
    regex = re.compile(pattern)
    found: List[str] = []

    def seen() -> bool:
        for line in lb.lines()[after:]:
            if regex.search(line):
                found.append(line)
                return True
        return False

    if not wait_until(seen, timeout):
        lb.fail(f"no line matching {pattern!r}")
    return found[0]


def down_line(server: str, reason: str, info: str, active: int, backup: int = 0) -> str:
    """The pattern of HAProxy's DOWN message."""
    return (
        rf"Server be/{server} is DOWN, reason: {re.escape(reason)}, info: {re.escape(info)},"
        rf" check duration: \d+ms\. {active} active and {backup} backup servers left\."
        r"( Running on backup\.)? \d+ sessions active, 0 requeued, 0 remaining in queue\."
    )


def up_line(server: str, reason: str, active: int, backup: int = 0) -> str:
    """The pattern of HAProxy's UP message."""
    return (
        rf"Server be/{server} is UP, reason: {re.escape(reason)}(, info: \"[^\"]*\")?,"
        rf" check duration: \d+ms\. {active} active and {backup} backup servers online\."
        r" 0 sessions requeued, 0 total in queue\."
    )


def test_stopped_server_goes_down_and_comes_back(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """A stopped server is marked DOWN within fall x inter + one check timeout and gets no connection after; started again on its port it is UP again after rise x inter and gets connections."""
    s1, port, fe, lb = checked_pair(servers, balancers, CHECKS, CHECKS)
    assert {echo_once(fe.port).server for _ in range(4)} == {"s1", "s2"}

    s1.stop()
    stopped = time.monotonic()
    line = wait_line(lb, down_line("s1", "Layer4 connection problem", '"Connection refused"', 1))
    took = time.monotonic() - stopped
    assert took <= 2 * INTER + INTER + SLACK, took
    mark = len(lb.lines())
    records_before = len(lb.log_records())
    for _ in range(10):
        assert echo_once(fe.port).server == "s2"
    after = lb.wait_for_records(records_before + 10)[records_before:]
    assert {(r.server, r.retries, r.termination) for r in after} == {("s2", 0, "--")}
    assert "l4lb#warn" in line

    restarted = servers(EchoOnPort("s1", port))
    started = time.monotonic()
    wait_line(lb, up_line("s1", "Layer4 check passed", 2), after=mark)
    took = time.monotonic() - started
    assert (2 - 1) * INTER * 0.9 <= took <= 2 * INTER + SLACK, took
    assert wait_until(lambda: echo_once(fe.port).server == "s1", 5.0)
    assert restarted.accepted > 0


def test_server_back_with_slowstart_gets_a_small_share_at_first(
    servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """A server with slowstart 60s that comes back UP starts at 1% of its weight: its twin takes nearly every new connection, and show stat reports the throttle, the reduced weight and the full user weight."""
    admin = os.path.join(str(tmp_path), "admin.sock")
    s1, port, fe, lb = checked_pair(
        servers,
        balancers,
        f"{CHECKS} weight 100 slowstart 60s",
        f"{CHECKS} weight 100",
        global_={"stats socket": admin},
    )
    # At start nothing warms up: both servers share evenly.
    assert sorted(echo_once(fe.port).server for _ in range(4)) == ["s1", "s1", "s2", "s2"]
    assert show_stat(admin)[("be", "s1")]["throttle"] == ""
    s1.stop()
    mark = len(lb.lines())
    wait_line(lb, down_line("s1", "Layer4 connection problem", '"Connection refused"', 1))
    servers(EchoOnPort("s1", port))
    wait_line(lb, up_line("s1", "Layer4 check passed", 2), after=mark)
    names = [echo_once(fe.port).server for _ in range(40)]
    assert names.count("s1") <= 2, names
    row = show_stat(admin)[("be", "s1")]
    # 60 s in steps of 3 s: still at the first steps.
    assert 1 <= int(row["throttle"]) <= 10, row
    assert int(row["weight"]) <= 10 and row["uweight"] == "100", row


def test_redis_answering_err_is_marked_down(servers: StartServer, balancers: BalancerFactory) -> None:
    """A tcp-check PING/+PONG sequence marks a Redis-like server that starts answering -ERR DOWN (Layer7 timeout at the expect step), and UP again once it answers +PONG."""
    redis = servers(RedisLike("r1"))
    spare = servers(EchoServer("s2"))
    be = BackendSection(
        "be",
        [ServerLine("r1", "127.0.0.1", redis.port, CHECKS), ServerLine("s2", "127.0.0.1", spare.port)],
        extra={
            "option tcp-check": "true",
            "tcp-check": "connect\n    send PING\\r\\n\n    expect string +PONG",
        },
    )
    fe = frontend(be)
    lb = balancers.start([fe], [be])
    assert wait_until(lambda: redis.accepted >= 3, 5.0)
    redis.reply = b"-ERR unknown command\r\n"
    wait_line(
        lb,
        down_line("r1", "Layer7 timeout", "\"at step 3 of tcp-check (expect string '+PONG')\"", 1),
    )
    mark = len(lb.lines())
    redis.reply = b"+PONG\r\n"
    wait_line(lb, up_line("r1", "Layer7 check passed", 2), after=mark)


def test_agent_drain_drains_the_server(servers: StartServer, balancers: BalancerFactory) -> None:
    """An agent answering 'drain' drains its server: logged, and new connections all go elsewhere; 'ready' brings it back."""
    s1 = servers(EchoServer("s1"))
    s2 = servers(EchoServer("s2"))
    agent = servers(AgentServer("agent"))
    be = BackendSection(
        "be",
        [
            ServerLine("s1", "127.0.0.1", s1.port, f"agent-check agent-port {agent.port} agent-inter 200"),
            ServerLine("s2", "127.0.0.1", s2.port),
        ],
    )
    fe = frontend(be)
    lb = balancers.start([fe], [be])
    assert wait_until(lambda: agent.accepted >= 2, 5.0)
    agent.reply = "drain"
    wait_line(
        lb,
        r"Server be/s1 enters drain state \(agent\)\. 1 active and 0 backup servers online\."
        r" 0 sessions requeued, 0 total in queue\.",
    )
    mark = len(lb.lines())
    assert [echo_once(fe.port).server for _ in range(6)] == ["s2"] * 6
    agent.reply = "ready"
    wait_line(lb, r"Server be/s1 is UP/READY \(leaving drain, agent\)\.", after=mark)
    assert wait_until(lambda: echo_once(fe.port).server == "s1", 5.0)


def test_no_server_left_closes_connections_at_once(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """With its only server DOWN the backend logs 'has no server available!' and closes new connections at once, logged SC with <NOSRV>."""
    s1 = servers(EchoServer("s1"))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port, CHECKS)])
    fe = frontend(be)
    lb = balancers.start([fe], [be])
    assert echo_once(fe.port).server == "s1"
    s1.stop()
    wait_line(lb, down_line("s1", "Layer4 connection problem", '"Connection refused"', 0))
    wait_line(lb, r"\[l4lb#critical\] backend be has no server available!")
    before = len(lb.log_records())
    # Bound first, so that its port is known even when the close arrives
    # while connect() is still checking the outcome (it then raises).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind(("127.0.0.1", 0))
    local_port = sock.getsockname()[1]
    try:
        sock.connect(("127.0.0.1", fe.port))
        data = sock.recv(1024)
    except ConnectionResetError:
        data = b""
    finally:
        sock.close()
    assert data == b""
    record: Optional[object] = None
    for r in lb.wait_for_records(before + 1)[before:]:
        if r.client_port == local_port:
            record = r
    assert record is not None
    assert (record.server, record.termination, record.retries) == ("<NOSRV>", "SC", 0)  # type: ignore[attr-defined]
    # Nothing was queued and no connection was tried: it closed at once.
    assert (record.tw, record.tc) == (-1, -1)  # type: ignore[attr-defined]
