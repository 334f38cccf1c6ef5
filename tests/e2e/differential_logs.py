"""
The connection cases whose tcplog lines are compared between HAProxy and
l4lb: one frontend and backend per case, the same client and fault
driven through each balancer, the line each logs for it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import attr

from .backends import (
    CloseFirstServer,
    ConcurrencyServer,
    EchoServer,
    SilentServer,
    ThreadedServer,
    recv_until_eof,
)
from .differential import Proxy, Server, Setup, Side, running_pair
from .harness import (
    TcpLogRecord,
    abort,
    connect,
    echo_once,
    finish,
    free_port,
    read_line,
    wait_until,
)

CLOSER_PAYLOAD = b"bye\n"
"""What the server that closes first sends before it closes."""


class Blackhole:
    """
    A loopback listener whose accept queue is full, so that the kernel
    drops every further SYN: a connect to it neither succeeds nor fails
    until the connecting side gives up (a connect timeout without leaving
    loopback).
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._fillers: List[socket.socket] = []
        # A backlog of 0 still queues one connection; one more makes sure.
        for _ in range(2):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self._fillers.append(filler)
        time.sleep(0.05)

    def close(self) -> None:
        """
        Close the fillers and the listener.
        """
        for filler in self._fillers:
            filler.close()
        self._listener.close()


def _exchange(port: int) -> int:
    return echo_once(port, b"hello").local_port


def until_eof(port: int, send: bytes = b"") -> int:
    """
    Connect (from a port bound first, so that it is known even when the
    balancer resets the connect), send C{send}, read until the other side
    closes, close.

    @return: The client's local port, as the balancer logs it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    # Bound first: a balancer that refuses at once may reset the connect.
    sock.bind(("127.0.0.1", 0))
    local = int(sock.getsockname()[1])
    try:
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        return local
    try:
        if send:
            try:
                sock.sendall(send)
            except OSError:
                pass
        try:
            recv_until_eof(sock, time.monotonic() + 10)
        except OSError:
            pass
    finally:
        sock.close()
    return local


def _client_idle(port: int) -> int:
    sock = connect(port, timeout=10)
    local = int(sock.getsockname()[1])
    try:
        read_line(sock)
        recv_until_eof(sock, time.monotonic() + 10)
    except OSError:
        pass
    finally:
        sock.close()
    return local


def _greeting_then_close(port: int) -> int:
    sock = connect(port, timeout=10)
    local = int(sock.getsockname()[1])
    read_line(sock)
    finish(sock)
    return local


def _client_abort(port: int) -> int:
    sock = connect(port, timeout=10)
    local = int(sock.getsockname()[1])
    read_line(sock)
    sock.sendall(b"partial")
    time.sleep(0.1)
    abort(sock)
    return local


@attr.s(frozen=True, slots=True, auto_attribs=True)
class LogCase:
    """
    One connection case: the proxy it goes through, and the client.

    @ivar client: Runs the client against a port; returns its local port.
    @ivar holders: Connections opened first, each waiting for the server's
        greeting, that hold the server's slots while the client runs (the
        client's line is the one compared).
    @ivar release_after: Seconds after which the holders close (C{None}:
        when the client is done).
    """

    name: str
    proxy: Proxy
    client: Callable[[int], int]
    holders: int = 0
    release_after: Optional[float] = None


@contextlib.contextmanager
def log_cases() -> Iterator[List[LogCase]]:
    """
    The servers every case needs, started, and the cases; the servers are
    stopped afterwards.
    """
    echo = EchoServer("s1").start()
    silent = SilentServer("quiet").start()
    closer = CloseFirstServer(CLOSER_PAYLOAD).start()
    holder = ConcurrencyServer("held").start()
    hole = Blackhole()
    started: Sequence[ThreadedServer] = (echo, silent, closer, holder)
    refused = free_port()
    one_try = ("retries", "1")
    cases = [
        LogCase("normal", Proxy("normal", [Server("s1", echo.port)]), _exchange),
        LogCase(
            "refused",
            Proxy("refused", [Server("s1", refused)], backend=[one_try, ("timeout connect", "300ms")]),
            until_eof,
        ),
        LogCase(
            "connect-timeout",
            Proxy("ctimeout", [Server("s1", hole.port)], backend=[one_try, ("timeout connect", "300ms")]),
            until_eof,
        ),
        LogCase(
            "client-idle",
            Proxy("cidle", [Server("s1", echo.port)], frontend=[("timeout client", "400ms")]),
            _client_idle,
        ),
        LogCase(
            "server-idle",
            Proxy("sidle", [Server("s1", silent.port)], backend=[("timeout server", "400ms")]),
            lambda port: until_eof(port, b"ping"),
        ),
        LogCase(
            "queue-timeout",
            Proxy(
                "queue",
                [Server("s1", holder.port, "maxconn 1")],
                backend=[("timeout queue", "300ms")],
            ),
            until_eof,
            holders=1,
        ),
        LogCase(
            "queued-then-served",
            Proxy(
                "served",
                [Server("s1", holder.port, "maxconn 1")],
                backend=[("timeout queue", "3s")],
            ),
            _greeting_then_close,
            holders=1,
            release_after=0.3,
        ),
        LogCase(
            "source-rule",
            Proxy(
                "deny",
                [Server("s1", echo.port)],
                frontend=[
                    # HAProxy logs nothing for a connection rule's
                    # reject; its content rule is the one that logs PR.
                    (
                        "tcp-request content",
                        "reject if { src 127.0.0.0/8 }",
                        "tcp-request connection = reject if src 127.0.0.0/8",
                    )
                ],
            ),
            until_eof,
        ),
        LogCase(
            "redispatched",
            Proxy(
                "redisp",
                [Server("s1", refused), Server("s2", echo.port)],
                backend=[("retries", "2"), ("option redispatch", ""), ("timeout connect", "300ms")],
            ),
            _exchange,
        ),
        LogCase("server-closes-first", Proxy("closer", [Server("s1", closer.port)]), until_eof),
        LogCase("client-aborts", Proxy("abort", [Server("s1", echo.port)]), _client_abort),
    ]
    try:
        yield cases
    finally:
        for server in started:
            server.stop()
        hole.close()


def _run_case(side: Side, case: LogCase) -> TcpLogRecord:
    port = side.ports[case.proxy.name]
    frontend = case.proxy.frontend_name
    before = [r for r in side.records() if r.frontend == frontend]
    holders = [connect(port, timeout=10) for _ in range(case.holders)]
    release = None

    def close_holders() -> None:
        for sock in holders:
            sock.close()

    try:
        for sock in holders:
            read_line(sock)
        if case.release_after is not None:
            release = threading.Timer(case.release_after, close_holders)
            release.start()
        local = case.client(port)
    finally:
        if release is not None:
            release.join()
        close_holders()
    want = len(before) + case.holders + 1

    def logged() -> bool:
        return len([r for r in side.records() if r.frontend == frontend]) >= want

    if not wait_until(logged, 10.0):
        raise AssertionError(
            f"{side.name}: no log line for {case.name}\n" + "\n".join(side.sink.lines()[-10:])
        )
    mine = [r for r in side.records() if r.frontend == frontend and r.client_port == local]
    assert len(mine) == 1, f"{side.name}: {case.name}: {mine}"
    return mine[0]


def observe_logs(directory: str) -> Dict[str, Dict[str, TcpLogRecord]]:
    """
    Run every case through HAProxy and through l4lb (one process of each
    for all of them).

    @return: For each case, the record each side logged, by side name.
    """
    seen: Dict[str, Dict[str, TcpLogRecord]] = {}
    with log_cases() as cases:
        setup = Setup([case.proxy for case in cases])
        with running_pair(setup, directory) as sides:
            for case in cases:
                seen[case.name] = {side.name: _run_case(side, case) for side in sides}
    return seen


TIME_TOLERANCE_MS = 150
"""How far apart two timings (Tw, Tc, Tt) may be and still count as the
same: scheduling on a shared machine, not behaviour."""


def record_differences(theirs: TcpLogRecord, ours: TcpLogRecord) -> List[str]:
    """
    What differs between two lines for the same case, field by field:
    timings within L{TIME_TOLERANCE_MS}, and the same phase reached (a
    timing of -1 on one side only is a difference).
    """
    differences = []
    exact = (
        "backend", "server", "bytes", "termination", "actconn", "feconn", "beconn",
        "srv_conn", "retries", "redispatched", "srv_queue", "backend_queue",
    )
    for name in exact:
        a, b = getattr(theirs, name), getattr(ours, name)
        if name == "backend":
            a, b = a.split("_", 1)[-1], b.split("_", 1)[-1]
        if a != b:
            differences.append(f"{name}: HAProxy {a!r}, l4lb {b!r}")
    for name in ("tw", "tc", "tt"):
        a, b = getattr(theirs, name), getattr(ours, name)
        if (a < 0) != (b < 0) or abs(a - b) > TIME_TOLERANCE_MS:
            differences.append(f"{name}: HAProxy {a}, l4lb {b}")
    return differences


def all_differences(
    seen: Mapping[str, Mapping[str, TcpLogRecord]]
) -> Dict[str, List[str]]:
    """
    L{record_differences} for every case.
    """
    return {
        case: record_differences(sides["haproxy"], sides["l4lb"]) for case, sides in seen.items()
    }


def as_rows(seen: Mapping[str, Mapping[str, TcpLogRecord]]) -> List[Tuple[str, str, str]]:
    """
    Each case with the line's tail (from the timings on) on each side, for
    a report.
    """
    rows = []
    for case, sides in seen.items():
        tails = []
        for name in ("haproxy", "l4lb"):
            r = sides[name]
            tails.append(
                f"{r.server} {r.tw}/{r.tc}/{r.tt} {r.bytes} {r.termination}"
                f" {r.actconn}/{r.feconn}/{r.beconn}/{r.srv_conn}/{'+' if r.redispatched else ''}{r.retries}"
                f" {r.srv_queue}/{r.backend_queue}"
            )
        rows.append((case, tails[0], tails[1]))
    return rows
