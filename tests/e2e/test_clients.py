"""
Real clients through a real C{twistd l4lb} to real servers, all from
Debian's packages: C{redis-benchmark} to two C{redis-server}s, C{pgbench}
(one connection per client, then one per transaction) to PostgreSQL,
C{iperf3} over TCP, and C{socat} as a TLS client that half-closes.

The servers are started by the tests on free loopback ports, with their
files in temporary directories, and always stopped. Each test asserts that
the client saw no error and lost no reply, and records its counts with
C{client_counts}, which the run prints in its summary. Every load is
bounded in count, and every command in time.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Sequence, Tuple

import attr
import pytest

from tests.tlskit import make_pki

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .daemons import (
    Daemon,
    PostgresCluster,
    iperf3_server,
    redis_calls,
    redis_ready,
    redis_server,
    require,
)
from .harness import (
    Balancer,
    BackendSection,
    FrontendSection,
    ServerLine,
    TcpLogRecord,
    free_port,
    render_config,
    show_stat,
    subprocess_env,
    wait_until,
)

CLIENT_TIMEOUT = 120
"""Seconds any one client command may run; the loads take a few."""

StartDaemon = Callable[[Daemon], Daemon]


@pytest.fixture
def daemons(request: pytest.FixtureRequest) -> StartDaemon:
    """
    Start a Debian server for one test: C{daemons(redis_server(...))}; a
    finalizer stops it whatever happens.
    """

    def start(daemon: Daemon) -> Daemon:
        request.addfinalizer(daemon.stop)
        return daemon.start()

    return start


@pytest.fixture(scope="module")
def postgres(request: pytest.FixtureRequest) -> PostgresCluster:
    """
    One PostgreSQL cluster for the module's tests (C{initdb} takes a
    while); a finalizer stops it and removes its files.
    """
    cluster = PostgresCluster(free_port())
    request.addfinalizer(cluster.stop)
    return cluster.start()


def run(argv: Sequence[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """
    Run a client to completion, bounded in time, its output captured.
    """
    return subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        env=subprocess_env(),
    )


def shown(done: subprocess.CompletedProcess[str]) -> str:
    """
    A command line, its status and its output, for failure messages.
    """
    argv = done.args if isinstance(done.args, str) else " ".join(done.args)
    return f"$ {argv}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"


@attr.s(frozen=True, auto_attribs=True)
class Proxy:
    """
    A running l4lb in front of the servers under test.

    @ivar port: Its frontend's port.
    @ivar lb: The twistd process.
    @ivar admin: The path of its runtime API socket.
    """

    port: int
    lb: Balancer
    admin: str

    def endings(self, timeout: float = 15.0) -> Dict[str, int]:
        """
        Once every session of the frontend has ended and been logged, how
        many ended with each termination code.
        """

        def settled() -> bool:
            row = show_stat(self.admin)[("fe", "FRONTEND")]
            return row["scur"] == "0" and len(self.lb.log_records()) >= int(row["stot"])

        assert wait_until(settled, timeout), self.lb.output()
        return tally(self.lb.log_records())


def tally(records: Sequence[TcpLogRecord]) -> Dict[str, int]:
    """
    How many sessions ended with each termination code.
    """
    codes: Dict[str, int] = {}
    for record in records:
        codes[record.termination] = codes.get(record.termination, 0) + 1
    return codes


def describe(codes: Dict[str, int]) -> str:
    """
    Termination codes and their counts for the summary: C{17x--}.
    """
    return ",".join(f"{count}x{code}" for code, count in sorted(codes.items()))


def start_balancer(
    balancers: BalancerFactory, tmp_path: Path, ports: Sequence[int]
) -> Proxy:
    """
    l4lb with one frontend on a free port and a round-robin backend of the
    servers on C{ports}; every session logged in tcplog.
    """
    servers = [ServerLine(f"s{i + 1}", "127.0.0.1", port) for i, port in enumerate(ports)]
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    admin = str(tmp_path / "admin.sock")
    lb = balancers.start([fe], [BackendSection("be", servers)], global_={"stats socket": admin})
    return Proxy(fe.port, lb, admin)


def test_redis_benchmark_to_two_redis_servers(
    balancers: BalancerFactory,
    daemons: StartDaemon,
    tmp_path: Path,
    client_counts: Callable[..., None],
) -> None:
    """redis-benchmark's SETs and GETs through l4lb to two redis-servers
    all succeed, every one of them reaches a server (the servers' own
    command counts add up to the requests sent), and both servers serve
    some."""
    requests = 3000
    ports = [free_port(), free_port()]
    for port in ports:
        daemons(redis_server(port, str(tmp_path)))
        assert wait_until(lambda: redis_ready(port), 10), f"redis on {port} never answered PING"
    proxy = start_balancer(balancers, tmp_path, ports)
    benchmark = require("redis-benchmark", "redis-tools")
    done = run(
        [benchmark, "-h", "127.0.0.1", "-p", str(proxy.port),
         "-n", str(requests), "-c", "8", "-q", "-t", "set,get"]
    )
    # -q prints one "SET: N requests per second" line per test, and any
    # error (a lost connection, a protocol error) on its own line.
    rates = re.findall(r"^(SET|GET): ([\d.]+) requests per second", done.stdout, re.M)
    sets = [redis_calls(port, "set") for port in ports]
    gets = [redis_calls(port, "get") for port in ports]
    errors = [
        line for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and not re.match(r"^(SET|GET): ", line.split("\r")[-1])
    ]
    endings = proxy.endings()
    client_counts(
        "redis-benchmark",
        requests=2 * requests,
        served=sum(sets) + sum(gets),
        errors=len(errors),
        lost_replies=2 * requests - sum(sets) - sum(gets),
        per_server="/".join(str(s + g) for s, g in zip(sets, gets)),
        sessions=describe(endings),
    )
    assert done.returncode == 0, shown(done)
    assert [name for name, _ in rates] == ["SET", "GET"], shown(done)
    assert errors == [], shown(done)
    assert sum(sets) == requests and sum(gets) == requests, (sets, gets)
    assert all(s > 0 and g > 0 for s, g in zip(sets, gets)), (sets, gets)
    assert set(endings) == {"--"}, proxy.lb.output()


@pytest.mark.parametrize("connect", ["", "-C"], ids=["kept", "per-transaction"])
def test_pgbench_to_postgresql(
    balancers: BalancerFactory,
    postgres: PostgresCluster,
    tmp_path: Path,
    client_counts: Callable[..., None],
    connect: str,
) -> None:
    """pgbench initialises its tables through l4lb, then runs its TPC-B
    transactions through it, over kept connections and with a new
    connection per transaction (-C): every transaction is processed and
    none fails."""
    clients, transactions = 4, 40
    proxy = start_balancer(balancers, tmp_path, [postgres.port])
    pgbench = postgres.program("pgbench")
    target = ["-h", "127.0.0.1", "-p", str(proxy.port), "-U", "postgres", "postgres"]
    init = run([pgbench, "--initialize", "--quiet", *target])
    assert init.returncode == 0, shown(init)
    options = ["--client", str(clients), "--transactions", str(transactions), "--no-vacuum"]
    done = run([pgbench, *options, *([connect] if connect else []), *target])
    expected = clients * transactions
    processed = re.search(r"number of transactions actually processed: (\d+)/(\d+)", done.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    count = int(processed.group(1)) if processed else 0
    failures = int(failed.group(1)) if failed else None
    endings = proxy.endings()
    client_counts(
        f"pgbench {connect or '(kept connections)'}",
        transactions=expected,
        processed=count,
        failed=failures,
        lost_replies=expected - count,
        sessions=describe(endings),
    )
    assert done.returncode == 0, shown(done)
    assert processed is not None and processed.group(2) == str(expected), shown(done)
    assert count == expected, shown(done)
    # pgbench 15 and later count failed transactions; older ones stop at
    # the first error, which the processed count and the status catch.
    assert failures in (None, 0), shown(done)
    assert set(endings) == {"--"}, proxy.lb.output()


def iperf3_report(done: subprocess.CompletedProcess[str]) -> Dict[str, Any]:
    """
    The JSON report of an C{iperf3 -J} run, or fail with its output.
    """
    try:
        report = json.loads(done.stdout)
    except ValueError:
        pytest.fail(shown(done))
    assert isinstance(report, dict), shown(done)
    return report


def iperf3_bytes(report: Dict[str, Any]) -> Tuple[int, int]:
    """
    The bytes the sender sent and the receiver received, from a report.
    """
    end = report.get("end", {})
    return end.get("sum_sent", {}).get("bytes", 0), end.get("sum_received", {}).get("bytes", 0)


def test_iperf3_tcp(
    balancers: BalancerFactory,
    daemons: StartDaemon,
    tmp_path: Path,
    client_counts: Callable[..., None],
) -> None:
    """iperf3 over TCP through l4lb, its control and data connections both
    relayed to one server: the server sends 256 MiB (-R -n) and the client
    receives every byte, logged as a normal close of that size; then the
    client sends for two seconds (-t 2) without an error."""
    size = 256 * 1024 * 1024
    port = free_port()
    daemons(iperf3_server(port, str(tmp_path)))
    proxy = start_balancer(balancers, tmp_path, [port])
    iperf3 = require("iperf3", "iperf3")
    target = [iperf3, "-c", "127.0.0.1", "-p", str(proxy.port), "-J"]

    download = run([*target, "-R", "-n", str(size)])
    report = iperf3_report(download)
    sent, received = iperf3_bytes(report)
    endings = proxy.endings()
    client_counts(
        "iperf3 tcp -R -n 256M",
        bytes_sent=sent,
        bytes_received=received,
        errors=1 if "error" in report else 0,
        lost_bytes=sent - received,
        sessions=describe(endings),
    )
    assert download.returncode == 0 and "error" not in report, shown(download)
    assert sent == size and received == size, (sent, received)
    # The control connection and the data connection, both closed normally;
    # the data connection carried exactly what the server sent.
    records = proxy.lb.log_records()
    assert endings == {"--": 2}, [r.line for r in records]
    assert max(r.bytes for r in records) == size, [r.line for r in records]

    # iperf3's server stops counting when the client's end of test, on the
    # control connection, overtakes the last data on the data connection:
    # through any proxy (HAProxy too) it counts a little less than was sent,
    # so this direction checks for errors, and the exact byte count is the
    # download's above.
    upload = run([*target, "-t", "2"])
    report = iperf3_report(upload)
    sent, counted = iperf3_bytes(report)
    endings = proxy.endings()
    client_counts(
        "iperf3 tcp -t 2",
        bytes_sent=sent,
        server_counted=counted,
        errors=1 if "error" in report else 0,
        sessions=describe(endings),
    )
    assert upload.returncode == 0 and "error" not in report, shown(upload)
    assert sent > 0 and counted > 0, (sent, counted)
    # Its control connection ends normally; its data connection ends as
    # the server makes it (iperf3 may close it with data still unread).
    assert endings.get("--", 0) >= 3 and sum(endings.values()) == 4, endings


class PlainEcho(EchoServer):
    """
    Echoes what it receives until the client's end of stream, then closes
    its side: the reply is still in flight when the client has half-closed.
    """

    greeting = False


def test_socat_tls_client_that_half_closes(
    servers: StartServer,
    balancers: BalancerFactory,
    tmp_path: Path,
    client_counts: Callable[..., None],
) -> None:
    """socat, a TLS client that sends close_notify as soon as its input
    ends, gets the reply of a plain echo server behind an ssl crt bind: the
    server's bytes still in flight after the client's close_notify are
    delivered, and the session is logged as a normal close with those
    bytes."""
    socat = require("socat", "socat")
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = make_pki(str(pki_dir))
    echo = servers(PlainEcho("s1"))
    port = free_port()
    fe = FrontendSection("fe", "127.0.0.1", port, "be")
    text = render_config([fe], [BackendSection("be", [ServerLine("s1", "127.0.0.1", echo.port)])])
    bind = f"bind = 127.0.0.1:{port}"
    assert text.count(bind) == 1
    lb = balancers.start_file(
        balancers.write(text.replace(bind, f"{bind} ssl crt {pki.server}")), ["fe"]
    )
    runs = [
        run([socat, "-t1", "-", f"OPENSSL:127.0.0.1:{port},verify=0"], "hello-tls\n")
        for _ in range(3)
    ]
    records = lb.wait_for_records(len(runs))
    client_counts(
        "socat tls half-close",
        requests=len(runs),
        errors=sum(1 for done in runs if done.returncode != 0),
        lost_replies=sum(1 for done in runs if done.stdout != "hello-tls\n"),
        sessions=describe(tally(records)),
    )
    for done in runs:
        assert done.returncode == 0 and done.stdout == "hello-tls\n", shown(done)
    # The log tells the truth: a normal close, with the reply's 10 bytes.
    assert [(r.termination, r.bytes) for r in records] == [("--", 10)] * len(runs), [
        r.line for r in records
    ]
