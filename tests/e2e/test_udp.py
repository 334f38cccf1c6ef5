"""
UDP load balancing through C{twistd}: two real DNS servers behind a C{mode
udp} frontend, queried with Twisted's resolver and with C{dig}; failover
when a server stops; a 60,000-byte datagram; idle expiry that leaves no
socket open.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
from twisted.names import dns

from .conftest import BalancerFactory
from .harness import Balancer, BackendSection, FrontendSection, ServerLine, wait_until

HERE = Path(__file__).resolve().parent

UDPLOG = re.compile(
    r"(?P<client>\S+):(?P<port>\d+) \[[^\]]+\] (?P<frontend>\S+) (?P<backend>[^\s/]+)/(?P<server>\S+)"
    r" (?P<ms>\d+) (?P<dgin>\d+)/(?P<bin>\d+) (?P<dgout>\d+)/(?P<bout>\d+) (?P<dropped>\d+)"
    r" (?P<termination>\S\S) (?P<reason>[a-z]+) (?P<fe>\d+)/(?P<be>\d+)/(?P<srv>\d+)$"
)
"""One UDP session log line."""

NS1, NS2 = "192.0.2.1", "192.0.2.2"


def free_udp_port() -> int:
    """
    A UDP port of 127.0.0.1 that was free a moment ago.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def udp_records(lb: Balancer) -> List["re.Match[str]"]:
    """
    Every UDP session line the balancer printed so far.
    """
    return [m for m in (UDPLOG.search(line) for line in lb.lines()) if m is not None]


class DnsServer:
    """
    A C{dnsserver.py} process answering every A query with one address.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "dnsserver.py"), address],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise AssertionError(f"DNS server did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        """
        Stop the process (SIGTERM, then SIGKILL) and reap it.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def dns_servers() -> Iterator[List[DnsServer]]:
    """
    Two DNS servers on 127.0.0.1, stopped after the test.
    """
    started: List[DnsServer] = []
    try:
        started.append(DnsServer(NS1))
        started.append(DnsServer(NS2))
        yield started
    finally:
        for server in started:
            server.stop()


def query(port: int, count: int, concurrency: int = 20) -> dict:
    """
    Run C{count} queries with Twisted's resolver through 127.0.0.1:PORT.

    @return: The tally printed by C{dnsquery.py}.
    """
    done = subprocess.run(
        [sys.executable, str(HERE / "dnsquery.py"), str(port), str(count), str(concurrency)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def start_dns_balancer(
    balancers: BalancerFactory, servers: List[DnsServer], extra: Optional[dict] = None
) -> tuple:
    port = free_udp_port()
    frontend = FrontendSection("dns", "127.0.0.1", port, "ns", {"mode": "udp"})
    backend = BackendSection(
        "ns",
        [ServerLine(f"ns{i}", "127.0.0.1", s.port) for i, s in enumerate(servers, 1)],
        extra={"mode": "udp", "udp-responses": "1", "timeout udp": "5s", **(extra or {})},
    )
    return balancers.start([frontend], [backend]), port


def test_dns_queries_are_all_answered_and_spread(
    balancers: BalancerFactory, dns_servers: List[DnsServer]
) -> None:
    """1,000 resolver queries through l4lb are all answered, half by each server (roundrobin), each session logged."""
    lb, port = start_dns_balancer(balancers, dns_servers)
    tally = query(port, 1000)
    assert tally["failures"] == 0, tally
    assert sum(tally["answers"].values()) == 1000
    assert abs(tally["answers"][NS1] - tally["answers"][NS2]) <= 20, tally
    assert wait_until(lambda: len(udp_records(lb)) >= 1000, 10), lb.output()
    records = udp_records(lb)
    assert {r["termination"] + " " + r["reason"] for r in records} == {"-- responses"}
    assert {r["server"] for r in records} == {"ns1", "ns2"}
    assert all(r["dgin"] == "1" and r["dgout"] == "1" for r in records)


def test_queries_in_flight_from_one_port_are_all_answered(
    balancers: BalancerFactory, dns_servers: List[DnsServer]
) -> None:
    """With udp-responses 1, two queries sent at once from one client port (as glibc sends A and AAAA) both get their answers, and no session ends before its last answer."""
    lb, port = start_dns_balancer(balancers, dns_servers)
    for client in range(10):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            for qid in (1, 2):
                message = dns.Message(id=qid, recDes=True)
                message.addQuery(f"c{client}-{qid}.example.com", dns.A)
                s.sendto(message.toStr(), ("127.0.0.1", port))
            answered = set()
            for _ in range(2):
                try:
                    data, _ = s.recvfrom(4096)
                except socket.timeout:
                    break
                reply = dns.Message()
                reply.fromStr(data)
                answered.add(reply.id)
            assert answered == {1, 2}, f"client {client}: answers to {sorted(answered)} only"
    # Usually each pair shares one session; when the first answer comes back
    # before l4lb has read the second query, that query opens a session of
    # its own.  Either way no session ends before all its answers.
    assert wait_until(lambda: sum(int(r["dgin"]) for r in udp_records(lb)) >= 20, 10), lb.output()
    records = udp_records(lb)
    assert all(r["dgin"] == r["dgout"] and r["reason"] == "responses" for r in records), lb.output()
    assert sum(int(r["dgin"]) for r in records) == 20, lb.output()


def test_dig_queries_are_all_answered_and_spread(
    balancers: BalancerFactory, dns_servers: List[DnsServer], tmp_path: Path
) -> None:
    """1,000 queries with dig (batch mode) are all answered, spread over both servers."""
    assert shutil.which("dig"), "dig is needed: apt-get install dnsutils"
    lb, port = start_dns_balancer(balancers, dns_servers)
    batch = tmp_path / "queries"
    batch.write_text("".join(f"d{i}.example.com A\n" for i in range(1000)))
    done = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+short", "+tries=2", "+time=2", "-f", str(batch)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    answers = done.stdout.split()
    assert len(answers) == 1000, done.stdout[-500:] + done.stderr[-500:]
    assert set(answers) == {NS1, NS2}
    assert abs(answers.count(NS1) - answers.count(NS2)) <= 20


def test_stopped_server_is_marked_down_by_its_dns_check(
    balancers: BalancerFactory, dns_servers: List[DnsServer]
) -> None:
    """With udp-check dns, a stopped server is DOWN within fall x inter, and then every query goes to the other."""
    lb, port = start_dns_balancer(
        balancers,
        dns_servers,
        {"udp-check dns": "health.example.com", "default-server": "check inter 500ms rise 2 fall 2"},
    )
    assert query(port, 100)["failures"] == 0
    stopped = time.monotonic()
    dns_servers[1].stop()
    down = re.compile(r"Server ns/ns2 is DOWN, reason: Layer4 connection problem")
    assert wait_until(lambda: any(down.search(line) for line in lb.lines()), 5), lb.output()
    # fall (2) checks, inter (500ms) apart, plus the time the first one waits.
    assert time.monotonic() - stopped < 2 * 0.5 + 1.0 + 1.0
    tally = query(port, 500)
    assert tally == {"answers": {NS1: 500}, "failures": 0}


def test_refused_queries_move_to_the_other_server(
    balancers: BalancerFactory, dns_servers: List[DnsServer]
) -> None:
    """Without checks, a stopped server's ICMP port unreachable sends each of its queries to the other server."""
    lb, port = start_dns_balancer(balancers, dns_servers)
    assert query(port, 100)["failures"] == 0
    dns_servers[1].stop()
    started = time.monotonic()
    # One query at a time keeps the ICMP errors under the kernel's rate
    # limit (net.ipv4.icmp_msgs_per_sec); see docs/udp.md.
    tally = query(port, 200, concurrency=1)
    assert tally == {"answers": {NS1: 200}, "failures": 0}
    # No query waited for a resolver retry (2 s): the refusal moved it.
    assert time.monotonic() - started < 20
    refused = [r for r in udp_records(lb) if r["reason"] == "refused"]
    assert len(refused) >= 50 and {r["server"] for r in refused} == {"ns2"}
    assert all(r["termination"] == "SC" for r in refused)


class UdpEcho:
    """
    A UDP echo server on 127.0.0.1 in a thread.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.sock.sendto(data, addr)

    def stop(self) -> None:
        """
        Stop serving and close the socket.
        """
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[UdpEcho]:
    """
    A UDP echo server, stopped after the test.
    """
    server = UdpEcho()
    yield server
    server.stop()


def start_echo_balancer(balancers: BalancerFactory, echo: UdpEcho, timeout: str) -> tuple:
    port = free_udp_port()
    frontend = FrontendSection("echo", "127.0.0.1", port, "be", {"mode": "udp", "timeout udp": timeout})
    backend = BackendSection("be", [ServerLine("e1", "127.0.0.1", echo.port)], extra={"mode": "udp"})
    return balancers.start([frontend], [backend]), port


def exchange(port: int, payload: bytes) -> bytes:
    """
    Send one datagram to 127.0.0.1:PORT from a new socket and return the reply.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.sendto(payload, ("127.0.0.1", port))
        data, _ = s.recvfrom(65535)
        return data


def test_large_datagram_echoes_intact(balancers: BalancerFactory, echo: UdpEcho) -> None:
    """A 60,000-byte datagram goes through and comes back unchanged."""
    lb, port = start_echo_balancer(balancers, echo, "30s")
    payload = bytes((i * 7 + 3) % 256 for i in range(60000))
    assert exchange(port, payload) == payload


def test_idle_sessions_expire_and_leave_no_socket(balancers: BalancerFactory, echo: UdpEcho) -> None:
    """After timeout udp every session has ended (logged as idle) and the fd count is back to its baseline."""
    # Long enough that the 20 sessions below are all open at once even on
    # a busy machine, short enough to wait for.
    lb, port = start_echo_balancer(balancers, echo, "3s")
    assert exchange(port, b"warm-up") == b"warm-up"
    assert wait_until(lambda: len(udp_records(lb)) == 1, 10), lb.output()
    assert wait_until(lambda: lb.fd_count() == lb.fd_count(), 1)
    baseline = lb.fd_count()
    for i in range(20):
        assert exchange(port, b"hello %d" % i) == b"hello %d" % i
    assert lb.fd_count() >= baseline + 20
    assert wait_until(lambda: len(udp_records(lb)) == 21, 10), lb.output()
    assert wait_until(lambda: lb.fd_count() == baseline, 10), "\n".join(lb.fd_targets())
    assert {r["reason"] for r in udp_records(lb)} == {"idle"}
    assert all(r["fe"] == "0" for r in udp_records(lb)[-1:])
