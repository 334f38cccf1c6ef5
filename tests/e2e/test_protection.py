"""
Source rules and per-source limits through twistd: refused sources are
closed at once and logged C{PR}, a source over its rate is refused while
others are served, and a flood of sources leaves the stick table within
its cap and the process's file descriptors where they were.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import struct
import time
from pathlib import Path
from typing import Dict, List, Optional

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    free_port,
    read_line,
    wait_until,
)

#: How long a client waits for the balancer before the test fails.
TIMEOUT = 10.0


def admin(path: str, command: str) -> str:
    """
    One command on the runtime API's socket, its whole answer.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        parts: List[bytes] = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(parts).decode()
            parts.append(data)


def frontend_stat(path: str, name: str) -> Dict[str, str]:
    """
    The C{show stat} row of a frontend.
    """
    lines = admin(path, "show stat").splitlines()
    header = lines[0][2:].split(",")
    for row in csv.DictReader(io.StringIO("\n".join(lines[1:])), fieldnames=header):
        if row["pxname"] == name and row["svname"] == "FRONTEND":
            return row
    raise AssertionError(f"no FRONTEND row for {name}")


def connect_from(source: str, port: int) -> socket.socket:
    """
    A client connected to 127.0.0.1:C{port} from the loopback address
    C{source}.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def served(source: str, port: int) -> Optional[socket.socket]:
    """
    Connect from C{source}: the open socket when a server greeted it,
    C{None} when the balancer closed it without one.
    """
    sock = connect_from(source, port)
    try:
        name, _ = read_line(sock)
    except (EOFError, ConnectionResetError):
        sock.close()
        return None
    assert name
    return sock


def reset(sock: socket.socket) -> None:
    """
    Close with a reset, leaving nothing in TIME_WAIT.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def rules(*lines: str) -> str:
    """
    A multi-line C{tcp-request connection} value.
    """
    return "".join("\n    " + line for line in lines)


def test_denied_sources_are_refused_and_logged(
    balancers: BalancerFactory, servers: StartServer, tmp_path: Path
) -> None:
    """
    A source in the deny file and one outside the allow list are closed
    without reaching a server, logged C{PR} with C{<NOSRV>} and counted in
    the frontend's C{dcon}; an allowed source is served.
    """
    server = servers(EchoServer("s1"))
    (tmp_path / "deny.lst").write_text("# refused\n127.0.0.3\n")
    sock_path = str(tmp_path / "admin.sock")
    port = free_port()
    fe = FrontendSection(
        "fe",
        "127.0.0.1",
        port,
        "be",
        {
            "tcp-request connection": rules(
                "reject if src -f deny.lst", "reject if !src 127.0.0.0/30"
            )
        },
    )
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", server.port)])
    lb = balancers.start([fe], [be], global_={"stats socket": sock_path})

    ok = served("127.0.0.1", port)
    assert ok is not None
    reset(ok)
    assert served("127.0.0.3", port) is None
    assert served("127.0.0.9", port) is None
    records = lb.wait_for_records(3)
    refused = {r.client_ip: r for r in records if r.termination == "PR"}
    assert set(refused) == {"127.0.0.3", "127.0.0.9"}
    assert all(r.server == "<NOSRV>" for r in refused.values())
    assert server.accepted == 1
    assert frontend_stat(sock_path, "fe")["dcon"] == "2"


def test_source_over_its_rate_is_refused_while_others_are_served(
    balancers: BalancerFactory, servers: StartServer, tmp_path: Path
) -> None:
    """
    With C{reject if { src_conn_rate ge 5 }}, a source's sixth connection
    in the period is refused while another source is served; with
    C{src_conn_cur ge 2}, a third concurrent connection is refused until
    one of the two ends.
    """
    server = servers(EchoServer("s1"))
    sock_path = str(tmp_path / "admin.sock")
    port = free_port()
    fe = FrontendSection(
        "fe",
        "127.0.0.1",
        port,
        "be",
        {
            "stick-table": "type ip size 1k expire 60s store conn_cur,conn_rate(60s)",
            "tcp-request connection": rules(
                "reject if { src_conn_cur ge 2 }", "reject if { src_conn_rate ge 5 }"
            ),
        },
    )
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", server.port)])
    lb = balancers.start([fe], [be], global_={"stats socket": sock_path})

    for _ in range(5):
        sock = served("127.0.0.5", port)
        assert sock is not None
        reset(sock)
    assert served("127.0.0.5", port) is None
    other = served("127.0.0.6", port)
    assert other is not None
    held = [served("127.0.0.7", port), served("127.0.0.7", port)]
    assert all(held)
    assert served("127.0.0.7", port) is None
    reset(held.pop())  # type: ignore[arg-type]
    assert wait_until(lambda: "key=127.0.0.7 use=1 " in admin(sock_path, "show table fe"), TIMEOUT)
    again = served("127.0.0.7", port)
    assert again is not None
    for sock in (other, again, held[0]):
        reset(sock)  # type: ignore[arg-type]
    refused = [r.client_ip for r in lb.wait_for_records(11) if r.termination == "PR"]
    assert sorted(refused) == ["127.0.0.5", "127.0.0.7"]
    table = admin(sock_path, "show table fe")
    assert table.startswith("# table: fe, type: ip, size:1024, used:3")


def test_flood_of_sources_keeps_the_table_within_its_cap(
    balancers: BalancerFactory, servers: StartServer, tmp_path: Path
) -> None:
    """
    20,000 connections from 20,000 loopback addresses, each tracked then
    refused, leave the table at its size of 1,000, the older sources
    evicted; the process's descriptors return to where they were and an
    allowed client is still served.
    """
    server = servers(EchoServer("s1"))
    sock_path = str(tmp_path / "admin.sock")
    port = free_port()
    fe = FrontendSection(
        "fe",
        "127.0.0.1",
        port,
        "be",
        {
            "stick-table": "type ip size 1000 expire 60s",
            "tcp-request connection": rules(
                "reject if { src_conn_rate ge 50 }", "reject if src 127.64.0.0/10"
            ),
            "backlog": "4096",
        },
    )
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", server.port)])
    lb = balancers.start([fe], [be], global_={"stats socket": sock_path})
    first = served("127.0.0.1", port)
    assert first is not None
    reset(first)
    assert wait_until(lambda: frontend_stat(sock_path, "fe")["scur"] == "0", TIMEOUT)
    baseline = lb.fd_count()

    total = 20_000
    batch = 500
    deadline = time.monotonic() + 60
    sources = (f"127.64.{n // 250}.{n % 250 + 1}" for n in range(total))
    for done in range(0, total, batch):
        assert time.monotonic() < deadline, f"flood too slow: {done} connections"
        socks = []
        for _ in range(batch):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(TIMEOUT)
            sock.bind((next(sources), 0))
            try:
                sock.connect(("127.0.0.1", port))
            except ConnectionResetError:
                # Refused before this process saw its connect complete.
                pass
            socks.append(sock)
        for sock in socks:
            reset(sock)
        # Keep the accept queue short: let the balancer catch up.
        assert wait_until(
            lambda: int(frontend_stat(sock_path, "fe")["stot"]) >= done + batch + 1 - batch // 2,
            TIMEOUT,
        )
    assert wait_until(lambda: int(frontend_stat(sock_path, "fe")["stot"]) == total + 1, TIMEOUT)
    header = admin(sock_path, "show table fe").splitlines()[0]
    fields = dict(part.split(":") for part in header[2:].replace(" ", "").split(",")[1:])
    assert fields["size"] == "1000" and fields["used"] == "1000", header
    assert int(fields["evicted"]) >= total - 1000, header
    assert frontend_stat(sock_path, "fe")["dcon"] == str(total)
    assert wait_until(lambda: lb.fd_count() <= baseline, TIMEOUT), "\n".join(lb.fd_targets())
    last = served("127.0.0.1", port)
    assert last is not None
    reset(last)
    assert server.accepted == 2
    assert os.path.exists(sock_path)


def test_session_rate_delays_accepting_without_refusing(
    balancers: BalancerFactory, servers: StartServer, tmp_path: Path
) -> None:
    """
    With C{rate-limit sessions = 5}, eleven clients connecting at once are
    all served, none refused, but the last only after two more seconds of
    the clock began: the frontend accepted at most five per second.
    """
    server = servers(EchoServer("s1"))
    sock_path = str(tmp_path / "admin.sock")
    port = free_port()
    fe = FrontendSection("fe", "127.0.0.1", port, "be", {"rate-limit sessions": "5"})
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", server.port)])
    lb = balancers.start([fe], [be], global_={"stats socket": sock_path})
    started = time.monotonic()
    socks = [connect_from("127.0.0.1", port) for _ in range(11)]
    try:
        for sock in socks:
            name, _ = read_line(sock)
            assert name == b"s1"
        elapsed = time.monotonic() - started
    finally:
        for sock in socks:
            reset(sock)
    assert elapsed > 0.9, elapsed
    records = lb.wait_for_records(11)
    assert all(r.termination != "PR" for r in records)
    row = frontend_stat(sock_path, "fe")
    assert row["rate_lim"] == "5" and row["dcon"] == "0"
