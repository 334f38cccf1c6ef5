"""
What an operator reads from HAProxy and from l4lb after the same work:
C{show stat} counters, C{show servers state}, C{show info}, the replies
of the runtime commands both have, the time health checks take to mark a
server DOWN and UP, and the order in which the balancing algorithms pick
servers. Each C{observe_*} function runs both balancers once and returns
what each showed, by side name; the comparison is the caller's.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .backends import ConcurrencyServer, EchoOnPort, EchoServer, ThreadedServer
from .differential import Proxy, Server, Setup, Side, poll_pair, running_pair
from .differential_logs import until_eof
from .harness import connect, echo_once, free_port, read_line, wait_until

Observed = Dict[str, Dict[str, str]]
"""Values by side name (C{haproxy}, C{l4lb}), then by what was read."""


class ResetServer(ThreadedServer):
    """
    Sends one line, then resets the connection (SO_LINGER 0): a server
    that aborts while data flows.
    """

    def handle(self, conn: socket.socket) -> None:
        conn.sendall(b"going\n")
        time.sleep(0.05)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


STAT_FIELDS = (
    "scur", "stot", "bin", "bout", "econ", "eresp", "wretr", "wredis", "status",
    "chkfail", "chkdown", "lastchg",
)
"""The C{show stat} columns compared after the workload."""

STAT_ROWS = (
    "fe_st/FRONTEND", "be_st/s1", "be_st/s2", "be_st/BACKEND",
    "be_err/s1", "be_err/BACKEND", "be_rst/s1", "be_rst/BACKEND",
)
"""The rows compared: a frontend, its backend and servers, a backend whose
only server refuses, one whose server resets."""

INFO_FIELDS = ("CurrConns", "Stopping", "DroppedLogs", "PipesUsed", "Uptime_sec")
"""C{show info} fields both print whose values the same work decides."""


def _stats_workload(side: Side, held: List[socket.socket]) -> None:
    port = side.ports["st"]
    for _ in range(4):
        echo_once(port, b"x" * 100)
    sock = connect(port)
    read_line(sock)
    held.append(sock)
    until_eof(side.ports["err"])
    until_eof(side.ports["rst"])


def observe_stats(directory: str) -> Tuple[Observed, Observed, Observed]:
    """
    The same workload through both (four echo exchanges of 100 bytes and
    one connection held open, a client of a refusing server with one
    retry, a client of a server that resets), then C{show stat}, C{show
    servers state} and C{show info}.

    @return: The stat values by C{ROW.field}, the servers-state values by
        C{SERVER.column} and the info fields, each by side.
    """
    s1, s2, rst = EchoServer("s1").start(), EchoServer("s2").start(), ResetServer("rst").start()
    setup = Setup(
        [
            Proxy("st", [Server("s1", s1.port, "check inter 200 rise 2 fall 2"), Server("s2", s2.port)]),
            Proxy(
                "err",
                [Server("s1", free_port())],
                backend=[("retries", "1"), ("timeout connect", "200ms")],
            ),
            Proxy("rst", [Server("s1", rst.port)]),
        ]
    )
    held: List[socket.socket] = []
    stats: Observed = {}
    state: Observed = {}
    info: Observed = {}
    try:
        with running_pair(setup, directory) as sides:
            for side in sides:
                checked = wait_until(
                    lambda: side.stats()["be_st/s1"]["check_status"] == "L4OK", 5.0, 0.05
                )
                assert checked, f"{side.name}: s1 never checked"
                _stats_workload(side, held)
                side.wait_records(6)
            for side in sides:
                rows = side.stats()
                # Current counts while the held connection is open.
                stats[side.name] = {
                    f"{row}.scur": rows[row].get("scur", "?") for row in STAT_ROWS
                }
                state[side.name] = servers_state(side.cli("show servers state be_st"))
                lines = side.cli("show info").splitlines()
                fields = dict(line.split(": ", 1) for line in lines if ": " in line)
                info[side.name] = {name: fields.get(name, "?") for name in INFO_FIELDS}
            # HAProxy adds a live connection's bytes to the counters only
            # when its stream next runs: the totals are read once it ended.
            for sock in held:
                sock.close()
            for side in sides:
                side.wait_records(7)
                rows = side.stats()
                for row in STAT_ROWS:
                    for field in STAT_FIELDS:
                        if field != "scur":
                            stats[side.name][f"{row}.{field}"] = rows[row].get(field, "?")
    finally:
        for sock in held:
            sock.close()
        for server in (s1, s2, rst):
            server.stop()
    return stats, state, info


def servers_state(text: str) -> Dict[str, str]:
    """
    A C{show servers state} answer as C{SERVER.column} values (the first
    line, the format version, as C{version}).
    """
    lines = [line for line in text.splitlines() if line]
    out = {"version": lines[0]}
    header = lines[1].lstrip("# ").split()
    for line in lines[2:]:
        values = dict(zip(header, line.split()))
        for column, value in values.items():
            out[f"{values['srv_name']}.{column}"] = value
    return out


RUNTIME_COMMANDS = (
    "set server be_rt/s1 weight 7",
    "get weight be_rt/s1",
    "set weight be_rt/s1 5",
    "get weight be_rt/s1",
    "set weight be_rt/s1 300",
    "set server be_rt/s1 weight 300",
    "set weight be_rt/s2 50%",
    "get weight be_rt/s2",
    "set server be_rt/s1 state drain",
    "set server be_rt/s1 state maint",
    "set server be_rt/s1 state ready",
    "disable server be_rt/s1",
    "enable server be_rt/s1",
    "disable health be_rt/s1",
    "enable health be_rt/s1",
    "shutdown sessions server be_rt/s1",
    "set maxconn frontend fe_rt 10",
    "clear counters",
    "show servers state nope",
    "set server be_rt/nope state drain",
    "set server nope/s1 state drain",
    "disable server nope/s1",
    "enable server be_rt/nope",
    "get weight be_rt/nope",
    "set weight nope/s1 3",
    "set maxconn frontend nope 10",
    "set server be_rt/s1 state bogus",
    "enable server be_rt",
)
"""Commands both have, in an order where each runs on the previous one's
state; the unknown names and malformed arguments come last."""


def observe_runtime(directory: str) -> Observed:
    """
    Every command of L{RUNTIME_COMMANDS}, in order, on both.

    @return: The answers by command, by side.
    """
    s1, s2 = EchoServer("s1").start(), EchoServer("s2").start()
    setup = Setup([Proxy("rt", [Server("s1", s1.port, "check inter 200"), Server("s2", s2.port)])])
    answers: Observed = {}
    try:
        with running_pair(setup, directory) as sides:
            for side in sides:
                answers[side.name] = {command: side.cli(command) for command in RUNTIME_COMMANDS}
    finally:
        s1.stop()
        s2.stop()
    return answers


HEALTH = "check inter 200 rise 2 fall 3"
"""The health settings whose timings are compared."""


def observe_health(directory: str) -> Dict[str, Dict[str, Optional[float]]]:
    """
    Stop a checked server, time until each balancer shows it DOWN; start
    it again on the same port, time until each shows it UP.

    @return: Seconds by side, for C{down} and C{up} (C{None}: not within
        the bound).
    """
    server = EchoOnPort("hc").start()
    port = server.port
    setup = Setup([Proxy("hc", [Server("s1", port, HEALTH)])])
    timings: Dict[str, Dict[str, Optional[float]]] = {}

    def status(side: Side) -> str:
        return side.stats()["be_hc/s1"]["status"]

    try:
        with running_pair(setup, directory) as sides:
            up = poll_pair(sides, lambda side: status(side) == "UP", 5.0)
            assert all(v is not None for v in up.values()), f"never UP: {up}"
            server.stop()
            down = poll_pair(sides, lambda side: status(side) == "DOWN", 5.0)
            server = EchoOnPort("hc", port).start()
            back = poll_pair(sides, lambda side: status(side) == "UP", 5.0)
            for side in sides:
                timings[side.name] = {"down": down[side.name], "up": back[side.name]}
    finally:
        server.stop()
    return timings


def _names(port: int, count: int) -> List[str]:
    return [echo_once(port).server for _ in range(count)]


def observe_balancing(directory: str) -> Dict[str, Dict[str, List[str]]]:
    """
    The servers picked, in order, by C{roundrobin} with weights 3, 1, 2
    over two whole cycles, by C{static-rr} with the same weights, by
    C{first} with C{maxconn 2} on each server while connections are held,
    and by C{leastconn} while connections are held.

    @return: The server names by algorithm, by side.
    """
    echoes = [EchoServer(f"e{i}").start() for i in (1, 2, 3)]
    held = [ConcurrencyServer(f"h{i}").start() for i in (1, 2, 3)]
    started: Sequence[ThreadedServer] = (*echoes, *held)
    weights = ("weight 3", "weight 1", "weight 2")
    setup = Setup(
        [
            Proxy("rr", [Server(f"e{i + 1}", s.port, w) for i, (s, w) in enumerate(zip(echoes, weights))]),
            Proxy(
                "srr",
                [Server(f"e{i + 1}", s.port, w) for i, (s, w) in enumerate(zip(echoes, weights))],
                balance="static-rr",
            ),
            Proxy(
                "first",
                [Server(f"h{i + 1}", s.port, "maxconn 2") for i, s in enumerate(held)],
                balance="first",
            ),
            Proxy("lc", [Server(f"h{i + 1}", s.port) for i, s in enumerate(held)], balance="leastconn"),
        ]
    )
    seen: Dict[str, Dict[str, List[str]]] = {}
    try:
        with running_pair(setup, directory) as sides:
            for side in sides:
                seen[side.name] = {
                    "roundrobin": _names(side.ports["rr"], 12),
                    "static-rr": _names(side.ports["srr"], 12),
                    "first": _held_names(side.ports["first"], 5),
                    "leastconn": _leastconn(side.ports["lc"]),
                }
    finally:
        for server in started:
            server.stop()
    return seen


def _held_names(port: int, count: int) -> List[str]:
    socks = []
    names = []
    try:
        for _ in range(count):
            sock = connect(port)
            socks.append(sock)
            names.append(read_line(sock)[0].decode())
    finally:
        for sock in socks:
            sock.close()
    return names


def _leastconn(port: int) -> List[str]:
    """
    Hold three connections, close the second, then open two more: the
    first of them goes to the server left with none.
    """
    socks: List[socket.socket] = []
    names: List[str] = []
    try:
        for _ in range(3):
            sock = connect(port)
            socks.append(sock)
            names.append(read_line(sock)[0].decode())
        socks[1].close()
        # Both balancers must see the close before the next pick.
        time.sleep(0.2)
        for _ in range(2):
            sock = connect(port)
            socks.append(sock)
            names.append(read_line(sock)[0].decode())
    finally:
        for sock in socks:
            sock.close()
    return names


def cycle_counts(names: Sequence[str], cycle: int) -> List[Mapping[str, int]]:
    """
    How often each server was picked in each whole cycle of C{cycle}
    picks.
    """
    counts: List[Mapping[str, int]] = []
    for start in range(0, len(names) - cycle + 1, cycle):
        chunk = names[start:start + cycle]
        counts.append({name: chunk.count(name) for name in sorted(set(chunk))})
    return counts
