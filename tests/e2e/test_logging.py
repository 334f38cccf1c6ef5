"""
Logs through C{twistd}: connection lines to a syslog server over UDP with
RFC 3164 framing, C{log-format json} for TCP and UDP sessions, C{option
dontlognull}, and C{option log-health-checks}.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from .backends import CloseFirstServer, EchoServer
from .conftest import BalancerFactory, StartServer
from .test_admin import socat, stat_rows
from .harness import (
    Balancer,
    BackendSection,
    FrontendSection,
    ServerLine,
    connect,
    echo_once,
    free_port,
    parse_tcplog,
    wait_until,
)

SYSLOG = re.compile(
    r"^<(?P<pri>\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (?P<host>\S+) l4lb\[(?P<pid>\d+)\]: (?P<msg>.*)$"
)


@pytest.fixture
def syslog_server() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 standing in for a syslog server."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    yield s
    s.close()


def receive(server: socket.socket, want: "re.Pattern[str]", timeout: float = 10.0) -> List[Tuple[int, str]]:
    """
    Read syslog datagrams until a message matches C{want}; return every
    (PRI, message) read, the match last.
    """
    got: List[Tuple[int, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            datagram = server.recv(65535)
        except socket.timeout:
            break
        match = SYSLOG.match(datagram.decode("utf-8"))
        assert match is not None, datagram
        got.append((int(match.group("pri")), match.group("msg")))
        if want.search(match.group("msg")):
            return got
    raise AssertionError(f"no syslog message matching {want.pattern!r}; got {got!r}")


def json_lines(lb: Balancer) -> List[dict]:
    """Every JSON object the balancer printed on stdout."""
    found = []
    for line in lb.lines():
        start = line.find("{")
        if start >= 0 and line.rstrip().endswith("}"):
            try:
                found.append(json.loads(line[start:]))
            except ValueError:
                continue
    return found


def test_syslog_over_udp(servers: StartServer, balancers: BalancerFactory, syslog_server: socket.socket) -> None:
    """With log = udp@127.0.0.1:PORT local0, connection lines arrive as local0.info and a server going DOWN as local0.warning."""
    s1 = servers(EchoServer("s1"))
    dead = free_port()
    be = BackendSection(
        "be",
        [
            ServerLine("s1", "127.0.0.1", s1.port),
            ServerLine("s2", "127.0.0.1", dead, "check inter 200 rise 1 fall 1"),
        ],
        balance="first",
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    port = syslog_server.getsockname()[1]
    lb = balancers.start([fe], [be], global_={"log": f"udp@127.0.0.1:{port} local0"})
    down = receive(syslog_server, re.compile(r"Server be/s2 is DOWN"))
    assert down[-1][0] == 16 * 8 + 4
    assert (16 * 8 + 6, "Proxy fe started.") in down
    assert echo_once(fe.port, b"hello").echoed == b"hello"
    got = receive(syslog_server, re.compile(r" fe be/s1 "))
    pri, message = got[-1]
    assert pri == 16 * 8 + 6
    record = parse_tcplog(message)
    assert record is not None and record.termination == "--" and record.bytes == len(b"s1\nhello")
    assert not any(parse_tcplog(line) for line in lb.lines()), "connection lines went to syslog only"


def test_json_logs_for_tcp_and_udp(
    balancers: BalancerFactory, servers: StartServer, syslog_server: socket.socket, tmp_path: Path
) -> None:
    """With log-format json, TCP connections and UDP sessions are logged as one JSON object each, sent to syslog as local3.info; show stat lists the UDP proxy."""
    s1 = servers(EchoServer("s1"))
    udp_backend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_backend.bind(("127.0.0.1", 0))
    udp_backend.settimeout(10)
    tcp_fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    tcp_be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
    udp_port = free_port()
    udp_fe = FrontendSection("dns", "127.0.0.1", udp_port, "dns", {"mode": "udp"})
    udp_be = BackendSection(
        "dns",
        [ServerLine("ns1", "127.0.0.1", udp_backend.getsockname()[1])],
        extra={"mode": "udp", "udp-responses": "1"},
    )
    port = syslog_server.getsockname()[1]
    try:
        balancers.start(
            [tcp_fe, udp_fe],
            [tcp_be, udp_be],
            defaults={"log-format": "json"},
            global_={"log": f"udp@127.0.0.1:{port} local3", "stats socket": str(tmp_path / "admin.sock")},
        )
        assert echo_once(tcp_fe.port, b"hello").echoed == b"hello"
        got = receive(syslog_server, re.compile(r'^\{"mode":"tcp"'))
        pri, message = got[-1]
        assert pri == 19 * 8 + 6
        tcp = json.loads(message)
        assert (tcp["frontend_name"], tcp["backend_name"], tcp["server_name"]) == ("fe", "be", "s1")
        assert tcp["bytes_read"] == len(b"s1\nhello") and tcp["termination_state"] == "--"
        assert tcp["Tt"] >= tcp["Tc"] >= 0 and tcp["Tw"] == 0

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            client.sendto(b"query", ("127.0.0.1", udp_port))
            data, relay = udp_backend.recvfrom(65535)
            assert data == b"query"
            udp_backend.sendto(b"answer!", relay)
            assert client.recv(65535) == b"answer!"
            client_port = client.getsockname()[1]
        got = receive(syslog_server, re.compile(r'^\{"mode":"udp"'))
        udp = json.loads(got[-1][1])
        assert udp["client_port"] == client_port and udp["server_name"] == "ns1"
        assert (udp["datagrams_in"], udp["bytes_uploaded"]) == (1, 5)
        assert (udp["datagrams_out"], udp["bytes_read"]) == (1, 7)
        assert (udp["termination_state"], udp["reason"]) == ("--", "responses")

        rows = stat_rows(socat(str(tmp_path / "admin.sock"), "show stat"))
        assert (rows["dns/FRONTEND"]["mode"], rows["dns/FRONTEND"]["stot"]) == ("udp", "1")
        assert (rows["dns/FRONTEND"]["req_tot"], rows["dns/FRONTEND"]["bin"]) == ("1", "5")
        assert (rows["dns/ns1"]["stot"], rows["dns/ns1"]["bout"], rows["dns/ns1"]["status"]) == ("1", "7", "no check")
        assert rows["dns/BACKEND"]["mode"] == "udp"
        info = socat(str(tmp_path / "admin.sock"), "show info")
        assert "DroppedLogs: 0" in info
    finally:
        udp_backend.close()


def test_syslog_unix_socket(servers: StartServer, balancers: BalancerFactory, tmp_path: Path) -> None:
    """log = unix@PATH sends framed lines without a host name to a UNIX datagram socket, as to /dev/log."""
    s1 = servers(EchoServer("s1"))
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dev_log:
        dev_log.bind(path)
        dev_log.settimeout(10)
        be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
        fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
        lb = balancers.start([fe], [be], global_={"log": f"unix@{path} daemon"})
        echo_once(fe.port, b"x")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            datagram = dev_log.recv(65535).decode()
            if " fe be/s1 " in datagram:
                break
        assert re.match(rf"^<30>[A-Z][a-z]{{2}} [ \d]\d \d\d:\d\d:\d\d l4lb\[{lb.pid}\]: 127\.0\.0\.1:", datagram), datagram


def test_json_to_stdout(servers: StartServer, balancers: BalancerFactory) -> None:
    """log-format json on one frontend writes JSON lines to stdout; tcplog stays on the other."""
    s1 = servers(EchoServer("s1"))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
    js = FrontendSection("js", "127.0.0.1", free_port(), "be", {"log-format": "json"})
    plain = FrontendSection("plain", "127.0.0.1", free_port(), "be")
    lb = balancers.start([js, plain], [be])
    echo_once(js.port, b"abc")
    echo_once(plain.port, b"abcd")
    assert wait_until(lambda: len(json_lines(lb)) >= 1 and len(lb.log_records()) >= 1, 10.0), lb.output()
    (record,) = json_lines(lb)
    assert record["frontend_name"] == "js" and record["bytes_read"] == len(b"s1\nabc")
    (line,) = lb.log_records()
    assert line.frontend == "plain" and line.bytes == len(b"s1\nabcd")


def test_dontlognull(servers: StartServer, balancers: BalancerFactory) -> None:
    """With option dontlognull, connections that carried no byte either way are not logged and one with data is."""
    quiet = servers(CloseFirstServer(b""))
    talker = servers(EchoServer("s1"))
    backends = [
        BackendSection("quiet", [ServerLine("q1", "127.0.0.1", quiet.port)]),
        BackendSection("talk", [ServerLine("s1", "127.0.0.1", talker.port)]),
    ]
    silent = FrontendSection("silent", "127.0.0.1", free_port(), "quiet")
    busy = FrontendSection("busy", "127.0.0.1", free_port(), "talk")
    lb = balancers.start([silent, busy], backends, defaults={"option dontlognull": "true"})
    for _ in range(3):
        with connect(silent.port) as sock:
            assert sock.recv(1) == b""
    assert wait_until(lambda: quiet.accepted >= 3, 10.0)
    assert echo_once(busy.port, b"data").echoed == b"data"
    records = lb.wait_for_records(1)
    assert [(r.frontend, r.server) for r in records] == [("busy", "s1")], lb.output()


@pytest.mark.parametrize("enabled", [True, False])
def test_log_health_checks(servers: StartServer, balancers: BalancerFactory, enabled: bool) -> None:
    """option log-health-checks logs each check that changes a server's status; without it only the state change is logged."""
    s1 = servers(EchoServer("s1"))
    dead = free_port()
    extra = {"option log-health-checks": "true"} if enabled else {}
    be = BackendSection(
        "be",
        [
            ServerLine("s1", "127.0.0.1", s1.port),
            ServerLine("s2", "127.0.0.1", dead, "check inter 200 rise 2 fall 2"),
        ],
        extra=extra,
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be])
    assert wait_until(lambda: any("Server be/s2 is DOWN" in line for line in lb.lines()), 10.0)
    checks = [line for line in lb.lines() if "Health check for server be/s2 failed" in line]
    if enabled:
        assert checks, lb.output()
        assert all("Connection refused" in line and ", status: " in line for line in checks), checks
    else:
        assert checks == []
