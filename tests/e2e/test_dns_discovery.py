"""
DNS service discovery end to end: a real C{twistd l4lb} resolving through
a real DNS server on loopback (C{dnszone.py}, on C{twisted.names}, whose
records the tests rewrite), with C{[resolvers]}, C{server-template} and a
server following its host name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

from .backends import EchoOnPort, EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import connect, free_port, read_line, wait_until, runtime_command

HERE = Path(__file__).resolve().parent

SRV = "_app._tcp.example.test"
WEB = "web.example.test"


class ZoneServer:
    """
    A C{dnszone.py} process serving the JSON zone at C{path}.
    """

    def __init__(self, path: Path, port: int = 0) -> None:
        self.path = path
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "dnszone.py"), str(path), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise AssertionError(f"the DNS server did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        """
        Stop the process and reap it.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class Zone:
    """
    The records served, written to the zone file on every change.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: Dict[str, Dict[str, Any]] = {"A": {}, "SRV": {}}
        self.write()

    def write(self) -> None:
        """
        Replace the file at once, so that the server never reads half of it.
        """
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.records))
        temporary.replace(self.path)


@pytest.fixture
def zone(tmp_path: Path) -> Iterator[Any]:
    """
    A zone and its DNS server (C{zone.server}), stopped after the test.
    """
    records = Zone(tmp_path / "zone.json")
    records.server = ZoneServer(records.path)  # type: ignore[attr-defined]
    yield records
    records.server.stop()  # type: ignore[attr-defined]


def config(dns_port: int, port: int, sock: str, backend: str) -> str:
    """
    An lb.ini resolving through the zone server, every 300 ms.
    """
    return f"""\
[global]
stats socket = {sock} level admin

[defaults]
timeout connect = 2s
timeout client = 30s
timeout server = 30s

[resolvers zone]
nameserver ns1 = 127.0.0.1:{dns_port}
timeout resolve = 300ms
timeout retry = 200ms
resolve_retries = 2
hold obsolete = 1s
hold timeout = 30s

[frontend fe]
bind = 127.0.0.1:{port}
default_backend = be

[backend be]
{backend}
"""


def command(sock: str, line: str) -> str:
    """
    One command on the runtime socket, and its reply.
    """
    return runtime_command(sock, line)


def states(sock: str) -> Dict[str, Dict[str, str]]:
    """
    C{show servers state be} by server name.
    """
    lines = command(sock, "show servers state be").splitlines()
    header = next(line for line in lines if line.startswith("#")).lstrip("# ").split()
    rows = [dict(zip(header, line.split())) for line in lines[1:] if line and not line.startswith("#")]
    return {row["srv_name"]: row for row in rows}


def greeting(port: int) -> str:
    """
    The name of the echo server a new connection reaches.
    """
    sock = connect(port)
    try:
        line, _ = read_line(sock)
        return line.decode().strip()
    finally:
        sock.close()


def start(balancers: BalancerFactory, zone: Any, backend: str) -> Any:
    """
    Write the configuration and start l4lb with it.
    """
    port = free_port()
    sock = str(balancers.tmp_path / "admin.sock")
    path = balancers.write(config(zone.server.port, port, sock, backend))
    lb = balancers.start_file(path, ["fe"])
    lb.port, lb.sock, lb.path = port, sock, path
    return lb


TEMPLATE = f"server-template sv = 3 {SRV} resolvers zone"


def test_srv_records_fill_three_slots_with_ports_and_weights(
    balancers: BalancerFactory, servers: StartServer, zone: Any
) -> None:
    """Three SRV records fill three template slots with their targets'
    address, their ports and their weights mapped as HAProxy maps them, and
    each slot takes connections."""
    echoes = [servers(EchoServer(f"s{i}")) for i in (1, 2, 3)]
    zone.records["A"] = {f"t{i}.example.test": ["127.0.0.1"] for i in (1, 2, 3)}
    zone.records["SRV"][SRV] = [
        [0, weight, echo.port, f"t{i}.example.test"]
        for i, (echo, weight) in enumerate(zip(echoes, (0, 2560, 65535)), 1)
    ]
    zone.write()
    lb = start(balancers, zone, TEMPLATE + "\nbalance = roundrobin")
    wait_until(lambda: all(s["srv_addr"] == "127.0.0.1" for s in states(lb.sock).values()), 10)
    found = states(lb.sock)
    assert [(found[f"sv{i}"]["srv_port"], found[f"sv{i}"]["srv_uweight"]) for i in (1, 2, 3)] == [
        (str(echoes[0].port), "1"),
        (str(echoes[1].port), "11"),
        (str(echoes[2].port), "256"),
    ], lb.output()
    seen = {greeting(lb.port) for _ in range(300)}
    assert seen == {"s1", "s2", "s3"}


def test_removed_record_empties_its_slot_while_its_connection_finishes(
    balancers: BalancerFactory, servers: StartServer, zone: Any
) -> None:
    """A record removed from the SRV answer empties its slot (maintenance,
    logged in HAProxy's words) after hold obsolete, while the connection
    established through it keeps flowing."""
    echoes = [servers(EchoServer(f"s{i}")) for i in (1, 2)]
    zone.records["A"] = {"t1.example.test": ["127.0.0.1"], "t2.example.test": ["127.0.0.1"]}
    zone.records["SRV"][SRV] = [[0, 0, e.port, f"t{i}.example.test"] for i, e in enumerate(echoes, 1)]
    zone.write()
    lb = start(balancers, zone, TEMPLATE + "\nbalance = roundrobin")
    wait_until(lambda: states(lb.sock)["sv2"]["srv_addr"] == "127.0.0.1", 10)
    held: Optional[socket.socket] = None
    for _ in range(20):
        sock = connect(lb.port)
        name, _ = read_line(sock)
        if name.strip() == b"s2":
            held = sock
            break
        sock.close()
    assert held is not None, "no connection reached s2"
    try:
        zone.records["SRV"][SRV] = zone.records["SRV"][SRV][:1]
        zone.write()
        wait_until(
            lambda: any("be/sv2 is going DOWN for maintenance (No IP for server )" in line
                        for line in lb.lines()),
            10,
        )
        assert states(lb.sock)["sv2"]["srv_admin_state"] != "0"
        held.sendall(b"still here\n")
        line, _ = read_line(held)
        assert line.strip() == b"still here"
        assert {greeting(lb.port) for _ in range(10)} == {"s1"}
    finally:
        held.close()


def test_changed_a_record_moves_new_connections(
    balancers: BalancerFactory, servers: StartServer, zone: Any
) -> None:
    """A server following its host name sends new connections to the new
    address once the A record changes, logged as HAProxy logs it."""
    first = servers(EchoServer("first", host="127.0.0.2"))
    servers(EchoOnPort("second", first.port, host="127.0.0.3"))
    zone.records["A"][WEB] = ["127.0.0.2"]
    zone.write()
    lb = start(
        balancers, zone, f"server web = {WEB}:{first.port} resolvers zone resolve-prefer ipv4 init-addr none"
    )
    wait_until(lambda: states(lb.sock)["web"]["srv_addr"] == "127.0.0.2", 10)
    assert greeting(lb.port) == "first"
    zone.records["A"][WEB] = ["127.0.0.3"]
    zone.write()
    wait_until(lambda: states(lb.sock)["web"]["srv_addr"] == "127.0.0.3", 10)
    assert greeting(lb.port) == "second"
    assert any("be/web changed its IP from 127.0.0.2 to 127.0.0.3 by DNS cache" in line
               for line in lb.lines()), lb.output()


def test_dns_server_stopped_keeps_servers_as_last_known(
    balancers: BalancerFactory, servers: StartServer, zone: Any
) -> None:
    """With the DNS server stopped, resolutions time out and the servers stay
    as last known (within hold timeout): still UP, still taking connections."""
    echoes = [servers(EchoServer(f"s{i}")) for i in (1, 2)]
    zone.records["A"] = {"t1.example.test": ["127.0.0.1"], "t2.example.test": ["127.0.0.1"]}
    zone.records["SRV"][SRV] = [[0, 0, e.port, f"t{i}.example.test"] for i, e in enumerate(echoes, 1)]
    zone.write()
    lb = start(balancers, zone, TEMPLATE + "\nbalance = roundrobin")
    wait_until(lambda: states(lb.sock)["sv2"]["srv_addr"] == "127.0.0.1", 10)
    before = states(lb.sock)
    zone.server.stop()
    wait_until(
        lambda: any(f"resolution of '{SRV}' failed (DNS timeout status)" in line
                    for line in lb.lines()),
        10,
    )
    failed_at = len(lb.lines())
    # For two more seconds (several resolutions, each failing after 2 x
    # 200 ms), new connections still reach both servers.
    seen = set()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        seen.add(greeting(lb.port))
    assert seen == {"s1", "s2"}
    after = states(lb.sock)
    keys = ("srv_addr", "srv_port", "srv_admin_state", "srv_uweight")
    assert [[after[n][k] for k in keys] for n in ("sv1", "sv2")] == [
        [before[n][k] for k in keys] for n in ("sv1", "sv2")
    ]
    assert not any("maintenance" in line for line in lb.lines()[failed_at:]), lb.output()


def test_reload_keeps_what_dns_said(
    balancers: BalancerFactory, servers: StartServer, zone: Any
) -> None:
    """A reload (SIGHUP, same file) while the DNS server is down gives the
    servers built afresh the addresses, ports and weights DNS gave: a reload
    is a restart plus what DNS said."""
    echoes = [servers(EchoServer(f"s{i}")) for i in (1, 2)]
    zone.records["A"] = {"t1.example.test": ["127.0.0.1"], "t2.example.test": ["127.0.0.1"]}
    zone.records["SRV"][SRV] = [
        [0, weight, e.port, f"t{i}.example.test"] for i, (e, weight) in enumerate(zip(echoes, (0, 2560)), 1)
    ]
    zone.write()
    lb = start(balancers, zone, TEMPLATE + "\nbalance = roundrobin")
    wait_until(lambda: states(lb.sock)["sv2"]["srv_addr"] == "127.0.0.1", 10)
    before = states(lb.sock)
    zone.server.stop()
    seen = len(lb.lines())
    os.kill(lb.pid, signal.SIGHUP)
    assert wait_until(
        lambda: any("Reload: " in line and line.rstrip().endswith(".") for line in lb.lines()[seen:]),
        10,
    ), lb.output()
    after = states(lb.sock)
    keys = ("srv_addr", "srv_port", "srv_admin_state", "srv_uweight")
    assert [[after[n][k] for k in keys] for n in ("sv1", "sv2", "sv3")] == [
        [before[n][k] for k in keys] for n in ("sv1", "sv2", "sv3")
    ]
    assert {greeting(lb.port) for _ in range(10)} == {"s1", "s2"}
