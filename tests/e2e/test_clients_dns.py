"""
Real DNS clients through l4lb to two real DNS servers (Debian's C{dnsmasq}),
with the configuration of the DNS example of C{docs/udp.md}: C{dnsperf}
keeping several queries in flight on each of its client ports, over UDP and
over TCP, and glibc's resolver (C{getent ahosts}), which sends its A and
AAAA queries at once from one socket. Every query must be answered: none
lost, none failed.

Debian packages: C{dnsperf}, C{dnsmasq-base}, C{util-linux} (C{unshare})
and C{libc-bin} (C{getent}). The glibc test runs as root: it binds l4lb to
port 53 (the resolver knows no other port) and gives C{getent} a private
C{/etc/resolv.conf} in a mount namespace.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

import attr
import pytest

from .conftest import BalancerFactory
from .daemons import require
from .dnsdaemons import Dnsmasq, free_port_both, host_records
from .harness import Balancer, BackendSection, FrontendSection, ServerLine, wait_until
from .test_udp import udp_records

RECORDS = host_records(10)
"""The names both servers answer, each with an A and an AAAA record."""

UDP_PASSES = 100
"""dnsperf's passes over its query file over UDP: 20 queries a pass, 2,000
in all."""

TCP_PASSES = 16
"""The same over TCP: 320 queries, 80 on each connection. dnsmasq closes a
TCP connection after its 100th query (even without l4lb), and dnsperf counts
the queries then in flight as lost: each connection stays below that."""

CLIENTS = 4
"""dnsperf's client sockets (source ports, or TCP connections)."""

IN_FLIGHT = 20
"""dnsperf's queries outstanding at once, spread over its clients."""

QUERY_TIMEOUT = 2
"""Seconds dnsperf waits for an answer before counting the query lost."""

RUN_LIMIT = 20
"""Seconds after which dnsperf stops sending, whatever is left."""

RESOLVER_ADDRESS = "127.53.0.1"
"""Where the glibc test binds l4lb's UDP frontend: port 53 of a loopback
address nothing else uses."""

RESOLVER_TIMEOUT = 2
"""glibc's C{options timeout:}: a lost answer costs this many seconds."""

LOOKUPS = 5
"""C{getent ahosts} runs, one name each."""


def dns_example(
    udp_address: Tuple[str, int],
    servers: List[Dnsmasq],
    tcp_address: Optional[Tuple[str, int]] = None,
) -> Tuple[List[FrontendSection], List[BackendSection]]:
    """
    The sections of C{docs/udp.md}'s DNS example in front of C{servers},
    with a C{mode tcp} frontend for DNS over TCP when C{tcp_address} is
    given.
    """
    lines = [ServerLine(f"ns{i}", s.address, s.port) for i, s in enumerate(servers, 1)]
    frontends = [
        FrontendSection("dns", *udp_address, "resolvers", {"mode": "udp", "maxsessions": "20000"})
    ]
    backends = [
        BackendSection(
            "resolvers",
            lines,
            extra={
                "mode": "udp",
                "udp-responses": "1",
                "timeout udp": "5s",
                "udp-check dns": RECORDS[0].name,
                "default-server": "check inter 2s rise 2 fall 3",
            },
        )
    ]
    if tcp_address is not None:
        frontends.append(FrontendSection("dns-tcp", *tcp_address, "resolvers-tcp"))
        backends.append(
            BackendSection(
                "resolvers-tcp",
                lines,
                extra={"default-server": "check inter 2s rise 2 fall 3"},
            )
        )
    return frontends, backends


@pytest.fixture
def nameservers(tmp_path: Path) -> Iterator[List[Dnsmasq]]:
    """
    Two C{dnsmasq} servers on 127.0.0.1 answering L{RECORDS}, stopped
    after the test.
    """
    started: List[Dnsmasq] = []
    try:
        for name in ("ns1", "ns2"):
            started.append(Dnsmasq(name, RECORDS, tmp_path / name).start())
        yield started
    finally:
        for server in started:
            server.close()


# -- dnsperf -----------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DnsperfSummary:
    """
    What C{dnsperf} reported.

    @ivar sent: Queries sent.
    @ivar completed: Queries answered.
    @ivar lost: Queries without an answer within its timeout.
    @ivar interrupted: Queries cut by a closed connection (TCP).
    @ivar reconnections: Connections dnsperf had to open again (TCP).
    @ivar rcodes: Answers by response code (C{NOERROR}, ...).
    @ivar warnings: The warning and error lines it printed.
    @ivar returncode: Its exit status.
    @ivar output: Everything it printed, for failure messages.
    """

    sent: int
    completed: int
    lost: int
    interrupted: int
    reconnections: int
    rcodes: Dict[str, int]
    warnings: List[str]
    returncode: int
    output: str

    @property
    def errors(self) -> int:
        """
        Answers other than C{NOERROR}, interrupted queries, connections
        closed under dnsperf, warnings and a failed exit, all counted as
        errors.
        """
        bad = sum(n for code, n in self.rcodes.items() if code != "NOERROR")
        failed = self.interrupted + self.reconnections + len(self.warnings)
        return bad + failed + (self.returncode != 0)


def summary_count(text: str, label: str) -> int:
    """
    The number after C{label:} in dnsperf's statistics, 0 when absent.
    """
    found = re.search(rf"^\s*{re.escape(label)}:\s+(\d+)", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def parse_dnsperf(returncode: int, stdout: str, stderr: str) -> DnsperfSummary:
    """
    Read C{dnsperf}'s statistics.
    """
    output = stdout + stderr
    if "Queries sent:" not in stdout:
        raise AssertionError(f"dnsperf printed no statistics (exit {returncode}):\n{output[-3000:]}")
    rcodes: Dict[str, int] = {}
    found = re.search(r"^\s*Response codes:\s+(.*)$", stdout, re.MULTILINE)
    if found:
        for code, count in re.findall(r"([A-Z]+) (\d+)", found.group(1)):
            rcodes[code] = int(count)
    warnings = [
        line for line in output.splitlines() if re.match(r"\s*(Warning|Error|\[Error\])", line)
    ]
    return DnsperfSummary(
        sent=summary_count(stdout, "Queries sent"),
        completed=summary_count(stdout, "Queries completed"),
        lost=summary_count(stdout, "Queries lost"),
        interrupted=summary_count(stdout, "Queries interrupted"),
        reconnections=summary_count(stdout, "Reconnections"),
        rcodes=rcodes,
        warnings=warnings,
        returncode=returncode,
        output=output,
    )


def dnsperf(port: int, mode: str, queries: Path, passes: int) -> DnsperfSummary:
    """
    Run C{dnsperf} against 127.0.0.1:PORT over C{mode} (C{udp} or C{tcp})
    with L{CLIENTS} client sockets and L{IN_FLIGHT} queries outstanding,
    C{passes} times over C{queries}, for at most L{RUN_LIMIT} seconds.
    """
    program = require("dnsperf", "dnsperf")
    argv = [
        program,
        "-m", mode,
        "-s", "127.0.0.1",
        "-p", str(port),
        "-d", str(queries),
        "-c", str(CLIENTS),
        "-q", str(IN_FLIGHT),
        "-n", str(passes),
        "-l", str(RUN_LIMIT),
        "-t", str(QUERY_TIMEOUT),
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=RUN_LIMIT + QUERY_TIMEOUT + 30
    )
    return parse_dnsperf(done.returncode, done.stdout, done.stderr)


def query_file(directory: Path) -> Path:
    """
    dnsperf's input: an A and an AAAA query for each of L{RECORDS}.
    """
    path = directory / "queries.txt"
    path.write_text("".join(f"{r.name} A\n{r.name} AAAA\n" for r in RECORDS))
    return path


def start_dns(
    balancers: BalancerFactory, nameservers: List[Dnsmasq]
) -> Tuple[Balancer, int]:
    """
    l4lb with the DNS example on one port of 127.0.0.1, UDP and TCP.
    """
    port = free_port_both("127.0.0.1")
    frontends, backends = dns_example(("127.0.0.1", port), nameservers, ("127.0.0.1", port))
    return balancers.start(frontends, backends), port


def assert_no_loss(run: DnsperfSummary, passes: int) -> None:
    """
    Every query of C{passes} over the query file was sent and answered with
    NOERROR, and nothing went wrong.
    """
    expected = passes * 2 * len(RECORDS)
    shown = run.output[-3000:]
    assert run.sent == expected, shown
    assert run.lost == 0, shown
    assert run.completed == run.sent, shown
    assert run.errors == 0, shown
    assert run.rcodes == {"NOERROR": expected}, shown


def test_dnsperf_over_udp_loses_no_query(
    balancers: BalancerFactory,
    nameservers: List[Dnsmasq],
    tmp_path: Path,
    client_counts: Callable[..., None],
) -> None:
    """dnsperf with several queries in flight per client port gets every answer over UDP; each session ends once all its queries are answered."""
    lb, port = start_dns(balancers, nameservers)
    run = dnsperf(port, "udp", query_file(tmp_path), UDP_PASSES)
    client_counts(
        "dnsperf udp", queries=run.sent, completed=run.completed, lost=run.lost, errors=run.errors
    )
    assert_no_loss(run, UDP_PASSES)
    # Every session ends as soon as its last query is answered, and logs it.
    assert wait_until(
        lambda: sum(int(r["dgin"]) for r in udp_records(lb)) >= run.sent, 10
    ), lb.output()
    records = udp_records(lb)
    assert {r["termination"] + " " + r["reason"] for r in records} == {"-- responses"}
    assert all(r["dgin"] == r["dgout"] for r in records), lb.output()
    assert max(int(r["dgin"]) for r in records) > 1, "no session had two queries in flight"
    assert {r["server"] for r in records} == {"ns1", "ns2"}


def test_dnsperf_over_tcp_loses_no_query(
    balancers: BalancerFactory,
    nameservers: List[Dnsmasq],
    tmp_path: Path,
    client_counts: Callable[..., None],
) -> None:
    """dnsperf over TCP, several queries in flight on each connection, gets every answer, from both servers."""
    lb, port = start_dns(balancers, nameservers)
    run = dnsperf(port, "tcp", query_file(tmp_path), TCP_PASSES)
    client_counts(
        "dnsperf tcp", queries=run.sent, completed=run.completed, lost=run.lost, errors=run.errors
    )
    assert_no_loss(run, TCP_PASSES)
    records = lb.wait_for_records(CLIENTS)
    assert {r.server for r in records if r.frontend == "dns-tcp"} == {"ns1", "ns2"}


# -- glibc -------------------------------------------------------------------

NAMESPACE_SCRIPT = """
set -e
mount --bind "$1" /etc/resolv.conf
mount --bind "$2" /etc/nsswitch.conf
if [ -d /run/nscd ]; then mount -t tmpfs tmpfs /run/nscd; fi
shift 2
exec "$@"
"""
"""Runs a command with a private C{resolv.conf} and C{nsswitch.conf} (and
no C{nscd} cache), inside the mount namespace of C{unshare --mount}."""


class PrivateResolver:
    """
    Runs commands whose glibc resolver asks only l4lb: a C{resolv.conf}
    naming L{RESOLVER_ADDRESS}, bind-mounted over C{/etc/resolv.conf} in a
    mount namespace of their own, so that the system's file is untouched.
    """

    def __init__(self, directory: Path) -> None:
        if os.geteuid() != 0:
            pytest.fail(
                "the glibc resolver test must run as root: it binds port 53 and"
                " mounts a private /etc/resolv.conf in a mount namespace"
            )
        self.unshare = require("unshare", "util-linux")
        self.getent = require("getent", "libc-bin")
        self.resolv_conf = directory / "resolv.conf"
        # No single-request: glibc sends the A and AAAA queries at once
        # from one socket, the case a per-session reply count broke.
        self.resolv_conf.write_text(
            f"nameserver {RESOLVER_ADDRESS}\n"
            f"options timeout:{RESOLVER_TIMEOUT} attempts:1\n"
        )
        self.nsswitch = directory / "nsswitch.conf"
        self.nsswitch.write_text("hosts: dns\n")

    def run(self, *argv: str, timeout: float = 30.0) -> "subprocess.CompletedProcess[str]":
        """
        Run C{argv} in a new mount namespace with the private files.
        """
        return subprocess.run(
            [
                self.unshare, "--mount", "--", "sh", "-c", NAMESPACE_SCRIPT, "sh",
                str(self.resolv_conf), str(self.nsswitch), *argv,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def check(self) -> None:
        """
        Fail clearly when the namespace cannot be made (no permission, no
        mount namespaces in this container) or does not show our file.
        """
        done = self.run("cat", "/etc/resolv.conf")
        if done.returncode != 0 or done.stdout != self.resolv_conf.read_text():
            pytest.fail(
                "cannot give getent a private /etc/resolv.conf with"
                f" 'unshare --mount' (exit {done.returncode}): {done.stderr.strip()}"
            )

    def ahosts(self, name: str) -> Tuple[Set[str], float, str]:
        """
        C{getent ahosts NAME}: the addresses glibc found, the seconds it
        took, and what it printed.
        """
        started = time.monotonic()
        done = self.run(self.getent, "ahosts", name)
        elapsed = time.monotonic() - started
        addresses = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
        return addresses, elapsed, done.stdout + done.stderr


def port_53_free(address: str) -> bool:
    """
    Whether UDP port 53 of C{address} can be bound.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((address, 53))
        except OSError:
            return False
    return True


def test_glibc_resolver_gets_a_and_aaaa(
    balancers: BalancerFactory,
    nameservers: List[Dnsmasq],
    tmp_path: Path,
    client_counts: Callable[..., None],
) -> None:
    """glibc's getaddrinfo, sending A and AAAA at once from one socket through l4lb, gets both answers in one session: no query is lost and asked again."""
    resolver = PrivateResolver(tmp_path)
    resolver.check()
    assert port_53_free(RESOLVER_ADDRESS), f"UDP port 53 of {RESOLVER_ADDRESS} is taken"
    frontends, backends = dns_example((RESOLVER_ADDRESS, 53), nameservers)
    lb = balancers.start(frontends, backends)
    lookups = RECORDS[:LOOKUPS]
    missing_total = 0
    failures: List[str] = []
    for record in lookups:
        addresses, elapsed, output = resolver.ahosts(record.name)
        expected = {record.ipv4, record.ipv6}
        missing = expected - addresses
        missing_total += len(missing)
        if addresses != expected:
            failures.append(f"{record.name}: missing {sorted(missing)} ({elapsed:.2f}s):\n{output}")
    # A lost answer shows in l4lb's log whatever glibc does next: the
    # session that carried the pair ends before its second answer (fewer
    # datagrams out than in), and glibc's retry sends more queries than the
    # two per lookup.  glibc usually sends the pair at once, in one session;
    # when the first answer comes back before the second query leaves, the
    # second query opens a session of its own, which loses nothing.
    assert wait_until(
        lambda: sum(int(r["dgin"]) for r in udp_records(lb)) >= 2 * len(lookups), 10
    ), lb.output()
    records = udp_records(lb)
    shapes = [f"{r['dgin']}/{r['dgout']} {r['termination']} {r['reason']}" for r in records]
    client_counts(
        "getent ahosts",
        lookups=len(lookups),
        answers=2 * len(lookups) - missing_total,
        missing=missing_total,
        sessions=len(records),
    )
    assert not failures, "\n".join(failures)
    assert all(r["dgin"] == r["dgout"] for r in records), shapes
    assert {r["termination"] + " " + r["reason"] for r in records} == {"-- responses"}, shapes
    assert sum(int(r["dgin"]) for r in records) == 2 * len(lookups), shapes
    assert any(r["dgin"] == "2" for r in records), f"glibc never sent A and AAAA together: {shapes}"
