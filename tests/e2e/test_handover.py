"""
Upgrades under load, end to end: l4lb runs from a copy of its code, and
each upgrade rewrites the copy's version before SIGUSR2 or C{l4lb upgrade}
re-executes it, as C{pip install -U l4lb} followed by one command does.

Five upgrades in a row run under 600 new TCP connections a second, 50
clients streaming and checking every byte, and one datagram a millisecond
through a C{mode udp} frontend; then runtime state across an upgrade;
upgrades that fail (a broken file, a new process killed while it starts);
and the systemd notifications of the process that takes over.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import attr
import pytest

from .backends import EchoServer
from .conftest import UNHANDLED, StartServer
from .handover_kit import (
    CodeCopy,
    LoadProcess,
    Switch,
    UpgradingBalancer,
    process_gone,
)
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    echo_once,
    free_port,
    l4lb_path,
    render_config,
    runtime_command,
    show_stat,
    subprocess_env,
    wait_until,
)

HARD_STOP_AFTER = 15.0
"""Seconds an old process may keep its connections after an upgrade."""

UPGRADES = 5
"""Upgrades in a row under load."""

RATE = 600
"""New TCP connections a second the load asks for (500 must be reached)."""

STREAMS = 50
"""Clients streaming at once."""

BETWEEN = 1.5
"""Seconds of load on each new process before the next upgrade: long
enough that streams started on one process are still open at the next
upgrade, so that every process hands over live connections."""


def free_udp_port() -> int:
    """
    A UDP port of 127.0.0.1 that was free a moment ago.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plain_echo(port: int, payload: bytes) -> bytes:
    """
    Send C{payload} through the balancer to the load's plain echo server
    (no name line), close our side, and return everything that came back.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return got
            got += chunk


def version(generation: int) -> str:
    """
    The version the copy reports while generation C{generation} starts.
    """
    return f"0.1.0+upgrade{generation}"


def check_output_clean(lb: UpgradingBalancer) -> None:
    """
    Fail when any process of C{lb} let an exception escape.
    """
    crashes = [
        line for line in lb.lines() + lb.stderr_lines() if any(m in line for m in UNHANDLED)
    ]
    assert not crashes, f"unhandled errors in the output\n{lb.output(200)}"


class Upgrading:
    """
    Starts balancers from a copy of the code; stops every process of them
    after the test.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.code = CodeCopy(root / "code")
        self.socket_path = str(root / "admin.sock")
        self.started: List[UpgradingBalancer] = []
        rundir = root / "run"
        rundir.mkdir()
        self.rundir = str(rundir)

    def start(
        self,
        frontends: List[FrontendSection],
        backends: List[BackendSection],
        global_: Optional[Dict[str, str]] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> UpgradingBalancer:
        """
        Write a config whose C{stats socket} exposes its listeners, start
        l4lb from the copy and wait until it serves as generation 1.
        """
        settings = {
            "stats socket": f"{self.socket_path} expose-fd listeners",
            "hard-stop-after": f"{HARD_STOP_AFTER:.0f}s",
            **(global_ or {}),
        }
        self.config = self.root / "lb.ini"
        self.config.write_text(render_config(frontends, backends, global_=settings))
        lb = UpgradingBalancer(
            str(self.config),
            self.rundir,
            [fe.name for fe in frontends],
            self.socket_path,
            self.code,
            env,
        )
        self.started.append(lb)
        lb.start()
        lb.wait_ready()
        lb.wait_generation(1)
        return lb

    def start_echo(
        self, echo: LoadProcess, global_: Optional[Dict[str, str]] = None
    ) -> Tuple[UpgradingBalancer, int]:
        """
        Start a balancer with one TCP frontend in front of the plain echo
        server of C{echo} (a C{handover_load.py echo} process), without
        connection logs.

        @return: The balancer and its frontend's port.
        """
        port = free_port()
        lb = self.start(
            [FrontendSection("tcp_in", "127.0.0.1", port, "echo_tcp")],
            [BackendSection("echo_tcp", [ServerLine("e1", "127.0.0.1", int(echo.first_line.split()[1]))])],
            global_={"log": "none", **(global_ or {})},
        )
        return lb, port

    def stop(self) -> None:
        """
        Stop every process started, then fail on tracebacks.
        """
        self.code.release()
        for lb in self.started:
            lb.stop_all()
        for lb in self.started:
            check_output_clean(lb)


@pytest.fixture
def upgrading(twistd: str, tmp_path: Path) -> Iterator[Upgrading]:
    """
    An L{Upgrading} for one test.
    """
    factory = Upgrading(tmp_path)
    try:
        yield factory
    finally:
        factory.stop()


# -- five upgrades under load -----------------------------------------------


@attr.s(auto_attribs=True)
class FiveUpgrades:
    """
    What one run of five upgrades under load saw.

    @ivar switches: Each upgrade, in order.
    @ivar infos: C{show info} of each generation, right after it took over.
    @ivar commands: Each C{l4lb upgrade} run.
    @ivar tcp: The TCP load's counts.
    @ivar udp: The UDP load's counts.
    @ivar gone_at: When each old process was first seen gone.
    @ivar output: Everything the processes printed.
    """

    switches: List[Switch]
    infos: List[Dict[str, str]]
    commands: List["subprocess.CompletedProcess[str]"]
    tcp: Dict[str, Any]
    udp: Dict[str, Any]
    gone_at: Dict[int, float]
    output: str


class ExitWatch:
    """
    Notes when each old process of a balancer is first seen gone.
    """

    def __init__(self, lb: UpgradingBalancer) -> None:
        self.lb = lb
        self.gone_at: Dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 300.0
        while not self._stop.is_set() and time.monotonic() < deadline:
            for pid in self.lb.pids[:-1]:
                if pid not in self.gone_at and self.lb.gone(pid):
                    self.gone_at[pid] = time.monotonic()
            time.sleep(0.02)

    def all_gone(self) -> bool:
        """
        Whether every process but the newest was seen gone.
        """
        return all(pid in self.gone_at for pid in self.lb.pids[:-1])

    def stop(self) -> None:
        """
        Stop watching.
        """
        self._stop.set()
        self._thread.join(5.0)


@pytest.fixture(scope="module")
def five_upgrades(twistd: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiveUpgrades]:
    """
    Run the load through generation 1, upgrade five times in a row (SIGUSR2
    and C{l4lb upgrade} in turn), then stop the load and wait for every old
    process to exit.
    """
    factory = Upgrading(tmp_path_factory.mktemp("five-upgrades"))
    factory.code.set_version(version(1))
    loads: List[LoadProcess] = []
    echo = LoadProcess(["echo"], ready="READY")
    watch: Optional[ExitWatch] = None
    try:
        echo_tcp, echo_udp = (int(word) for word in echo.first_line.split()[1:3])
        tcp_port, udp_port = free_port(), free_udp_port()
        lb = factory.start(
            [
                FrontendSection("tcp_in", "127.0.0.1", tcp_port, "echo_tcp"),
                FrontendSection(
                    "udp_in", "127.0.0.1", udp_port, "echo_udp",
                    {"mode": "udp", "timeout udp": "2s"},
                ),
            ],
            [
                BackendSection("echo_tcp", [ServerLine("e1", "127.0.0.1", echo_tcp)]),
                BackendSection(
                    "echo_udp", [ServerLine("u1", "127.0.0.1", echo_udp)], extra={"mode": "udp"}
                ),
            ],
            # Connection logs would cost l4lb more than the relaying does.
            global_={"log": "none"},
        )
        infos = [lb.info()]
        watch = ExitWatch(lb)
        loads.append(
            LoadProcess(
                ["tcp", "--port", str(tcp_port), "--rate", str(RATE),
                 "--streams", str(STREAMS), "--max-seconds", "90"]
            )
        )
        loads.append(LoadProcess(["udp", "--port", str(udp_port), "--max-seconds", "90"]))
        time.sleep(1.0)  # load on generation 1 alone
        switches: List[Switch] = []
        commands: List["subprocess.CompletedProcess[str]"] = []
        for generation in range(2, UPGRADES + 2):
            factory.code.set_version(version(generation))
            old = lb.current
            triggered = time.monotonic()
            if generation % 2 == 0:
                lb.signal_upgrade()
            else:
                commands.append(lb.command_upgrade())
            seen = lb.wait_generation(generation)
            up = time.monotonic()
            infos.append(seen)
            switches.append(
                Switch(generation, old, int(seen["Pid"]), triggered, up, seen.get("Version", ""))
            )
            time.sleep(BETWEEN)  # load on the new process before the next upgrade
        udp = loads[1].stop()
        tcp = loads[0].stop()
        wait_until(watch.all_gone, HARD_STOP_AFTER + 10.0)
        watch.stop()
        yield FiveUpgrades(
            switches, infos, commands, tcp, udp, dict(watch.gone_at),
            lb.output(400),
        )
    finally:
        if watch is not None:
            watch.stop()
        for load in loads:
            load.kill()
        factory.stop()
        echo.kill()


def per_second(times: List[float], start: float, end: float) -> List[int]:
    """
    How many of C{times} fall in each whole second from C{start} to C{end}.
    """
    buckets = [0] * max(1, int(end - start))
    for t in times:
        if start <= t < start + len(buckets):
            buckets[int(t - start)] += 1
    return buckets


def test_every_upgrade_runs_the_new_code(five_upgrades: FiveUpgrades) -> None:
    """
    Each upgrade starts a new process (a new pid) that imports the code as
    it is on disk then: C{show info} reports generations 1 to 6, each with
    the version written before its upgrade.
    """
    got = [(i.get("Generation"), i.get("Version")) for i in five_upgrades.infos]
    assert got == [(str(g), version(g)) for g in range(1, UPGRADES + 2)]
    pids = [int(i["Pid"]) for i in five_upgrades.infos]
    assert len(set(pids)) == len(pids), pids


def test_upgrade_command_reports_the_new_process(five_upgrades: FiveUpgrades) -> None:
    """
    C{l4lb upgrade} waits for the outcome and prints the new process's pid,
    generation and version, exiting 0.
    """
    by_generation = {s.generation: s for s in five_upgrades.switches}
    assert five_upgrades.commands, "no upgrade was made with the command"
    for done, generation in zip(five_upgrades.commands, (3, 5)):
        switch = by_generation[generation]
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert str(switch.new_pid) in done.stdout, done.stdout
        assert str(generation) in done.stdout, done.stdout
        assert version(generation) in done.stdout, done.stdout


def test_new_connections_never_fail(
    five_upgrades: FiveUpgrades, client_counts: Callable[..., None]
) -> None:
    """
    Through five upgrades, at 500 new connections a second or more, no
    connection is refused, reset, cut or answered wrongly.
    """
    tcp = five_upgrades.tcp
    switches = five_upgrades.switches
    span_start, span_end = switches[0].triggered, switches[-1].up
    during = [t for t in tcp["done_at"] if span_start <= t <= span_end]
    rate = len(during) / (span_end - span_start)
    seconds = per_second(tcp["done_at"], span_start, span_end)
    client_counts(
        "new connections",
        attempted=tcp["attempted"],
        ok=tcp["ok"],
        failures=tcp["failures"] or 0,
        held_back=tcp["skipped"],
        rate_during_upgrades=f"{rate:.0f}/s",
        slowest_second=min(seconds),
        handovers_ms=",".join(f"{(s.up - s.triggered) * 1000:.0f}" for s in switches),
    )
    connection_failures = {k: v for k, v in tcp["failures"].items() if not k.startswith("stream")}
    assert connection_failures == {}, tcp["examples"]
    # Starts the load left out while 400 connections were in flight (a slow
    # moment, e.g. PyPy's new process warming up) are reported; the pace
    # is checked by the rate below, the outcome of every start made here.
    assert tcp["ok"] == tcp["attempted"]
    assert rate >= 500, f"{rate:.0f} connections/s during the upgrades; per second: {seconds}"


def test_streams_keep_every_byte(
    five_upgrades: FiveUpgrades, client_counts: Callable[..., None]
) -> None:
    """
    Streams open across upgrades finish on the process they started on:
    every byte sent comes back, in order, both ways, none lost or changed.
    """
    tcp = five_upgrades.tcp
    client_counts(
        "streams",
        streams=tcp["streams_done"],
        failed=tcp["streams_failed"],
        bytes_checked=tcp["stream_bytes_checked"],
        longest_s=tcp["stream_longest"],
    )
    stream_failures = {k: v for k, v in tcp["failures"].items() if k.startswith("stream")}
    assert stream_failures == {}, tcp["examples"]
    assert tcp["streams_failed"] == 0
    assert tcp["unfinished_tasks"] == 0
    assert tcp["streams_done"] >= 2 * STREAMS
    assert tcp["stream_bytes_checked"] == tcp["stream_bytes_sent"] > 0
    assert tcp["stream_longest"] < HARD_STOP_AFTER


def test_old_processes_exit_once_their_connections_end(five_upgrades: FiveUpgrades) -> None:
    """
    Every replaced process exits by itself once its last connection ended,
    well before C{hard-stop-after} would have cut one.
    """
    for switch in five_upgrades.switches:
        assert switch.old_pid in five_upgrades.gone_at, f"pid {switch.old_pid} still runs"
        assert process_gone(switch.old_pid)
        lived = five_upgrades.gone_at[switch.old_pid] - switch.up
        assert lived < HARD_STOP_AFTER, (switch, lived)
    assert "hard-stop-after reached" not in five_upgrades.output


def test_udp_loses_nothing_once_the_new_process_is_up(
    five_upgrades: FiveUpgrades, client_counts: Callable[..., None]
) -> None:
    """
    A datagram every millisecond through a C{mode udp} frontend: every one
    sent outside a switch (from the signal until the new process answers
    C{show info}) gets its reply; the few lost inside a switch are counted.
    """
    udp = five_upgrades.udp
    switches = five_upgrades.switches
    per_switch = [0] * len(switches)
    outside: List[Tuple[int, float]] = []
    for seq, sent in zip(udp["lost"], udp["lost_sent_at"]):
        for n, switch in enumerate(switches):
            if switch.triggered <= sent <= switch.up:
                per_switch[n] += 1
                break
        else:
            outside.append((seq, sent))
    client_counts(
        "datagrams",
        sent=udp["sent"],
        replied=udp["replied"],
        lost_per_switch=",".join(map(str, per_switch)),
        corrupt=udp["corrupt"],
        duplicate=udp["duplicate"],
    )
    assert udp["sent"] >= 1000 * (UPGRADES * BETWEEN)
    assert udp["corrupt"] == udp["unknown"] == 0
    assert outside == [], (
        f"{len(outside)} datagram(s) lost outside the switches "
        f"{[(s.triggered, s.up) for s in switches]}: first {outside[:10]}"
    )


# -- runtime state -----------------------------------------------------------


def test_runtime_state_survives_an_upgrade(upgrading: Upgrading, servers: StartServer) -> None:
    """
    A drained server, a weight set at run time and a server added at run
    time are as they were right after an upgrade, and a server whose checks
    failed is still DOWN in the new process's first answer, although a
    fresh start would count it UP until three checks failed.
    """
    s1, s2, s4 = (servers(EchoServer(name)) for name in ("s1", "s2", "s4"))
    port = free_port()
    checked = "check inter 400ms fall 3 rise 2 init-state fully-up"
    lb = upgrading.start(
        [FrontendSection("www", "127.0.0.1", port, "web")],
        [
            BackendSection(
                "web",
                [
                    ServerLine("s1", "127.0.0.1", s1.port, checked),
                    ServerLine("s2", "127.0.0.1", s2.port, f"{checked} weight 10"),
                    ServerLine("s3", "127.0.0.1", free_port(), checked),
                ],
            )
        ],
    )
    sock = upgrading.socket_path
    for command in (
        "set server web/s1 state drain",
        "set weight web/s2 50",
        f"add server web/s4 127.0.0.1:{s4.port} {checked}",
        "enable server web/s4",
    ):
        answer = runtime_command(sock, command).strip()
        assert "No such" not in answer and "Usage" not in answer, (command, answer)

    def status() -> Dict[str, str]:
        return {sv: row["status"] for (px, sv), row in show_stat(sock).items() if px == "web"}

    assert wait_until(lambda: status().get("s3") == "DOWN" and status().get("s4") == "UP", 10.0), status()
    before = status()
    lb.signal_upgrade()
    lb.wait_generation(2)
    first = status()
    assert first == before, f"before the upgrade {before}, right after it {first}"
    assert first["s1"] == "DRAIN" and first["s3"] == "DOWN" and first["s4"] == "UP"
    assert runtime_command(sock, "get weight web/s2").strip() == "50 (initial 10)"
    # New connections go to s2 and s4 only: s1 drains, s3 is down; s2
    # weighs 50 and s4 1, so 51 connections reach s4 at least once.
    names = {echo_once(port, b"x").server for _ in range(51)}
    assert names == {"s2", "s4"}, names
    state = runtime_command(sock, "show servers state web")
    assert "s4 127.0.0.1" in state and str(s4.port) in state, state


# -- upgrades that fail ------------------------------------------------------


def test_failed_upgrades_leave_the_old_process_serving(
    upgrading: Upgrading, servers: StartServer
) -> None:
    """
    An upgrade with a broken file, and one whose new process is killed
    while it starts (before it asked for the sockets, and after it received
    them), each make C{l4lb upgrade} exit non-zero while the old process
    serves on, generation 1, without a failed connection; the next upgrade
    then succeeds.
    """
    echo = LoadProcess(["echo"], ready="READY")
    load: Optional[LoadProcess] = None
    try:
        lb, port = upgrading.start_echo(echo)
        first = lb.current
        load = LoadProcess(
            ["tcp", "--port", str(port), "--rate", "200", "--streams", "10", "--max-seconds", "90"]
        )
        good = upgrading.config.read_text()

        # A broken file: the new process validates it and exits.
        upgrading.config.write_text(good.replace("balance = roundrobin", "balance = nosuch"))
        done = lb.command_upgrade()
        assert done.returncode != 0, done.stdout
        assert "nosuch" in done.stdout + done.stderr, (done.stdout, done.stderr)
        upgrading.config.write_text(good)
        assert lb.info()["Generation"] == "1" and int(lb.info()["Pid"]) == first

        # Killed while starting, then killed once it holds the sockets.
        for flag in ("hold-start", "hold-fds"):
            upgrading.code.hold(flag)
            upgrade = subprocess.Popen(
                [l4lb_path(), "upgrade", "--socket", lb.socket_path],
                env=subprocess_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                if not wait_until(lambda: upgrading.code.held_pid() is not None, 20.0):
                    upgrade.kill()
                    pytest.fail(f"no new process reached {flag}: {lb.output()}")
                held = upgrading.code.held_pid()
                assert held is not None and held != first
                os.kill(held, signal.SIGKILL)
                upgrading.code.release()
                out, err = upgrade.communicate(timeout=60)
            finally:
                if upgrade.poll() is None:
                    upgrade.kill()
            assert upgrade.returncode != 0, (flag, out, err)
            assert wait_until(lambda: process_gone(held), 5.0)
            now = lb.info()
            assert (now["Generation"], int(now["Pid"])) == ("1", first), (flag, now)
            assert plain_echo(port, b"still here") == b"still here"

        # And the next upgrade goes through.
        done = lb.command_upgrade()
        assert done.returncode == 0, (done.stdout, done.stderr)
        lb.wait_generation(2)
        counts = load.stop()
        assert counts["failures"] == {}, counts["examples"]
        assert counts["ok"] == counts["attempted"] > 0
        assert counts["streams_failed"] == 0
    finally:
        if load is not None:
            load.kill()
        echo.kill()


# -- systemd -----------------------------------------------------------------


SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)
"""Linux's ancillary message type for a sender's credentials (PyPy's
socket module does not name it)."""

SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)
"""Linux's option to receive the sender's credentials."""


def receive_notifications(
    sock: socket.socket, until: Callable[[List[Tuple[int, str]]], bool], timeout: float
) -> List[Tuple[int, str]]:
    """
    Read sd_notify datagrams with their sender's pid (SO_PASSCRED) until
    C{until} holds for what was read, or C{timeout} passes.
    """
    got: List[Tuple[int, str]] = []
    deadline = time.monotonic() + timeout
    size = struct.calcsize("iII")
    while not until(got) and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(size))
        except socket.timeout:
            break
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:size])[0]
        got.append((pid, data.decode("utf-8", "replace")))
    return got


def test_new_process_notifies_systemd(upgrading: Upgrading, servers: StartServer) -> None:
    """
    Under systemd (C{NOTIFY_SOCKET} set), the first process sends
    C{READY=1} once it serves, and after an upgrade the new process sends
    C{MAINPID=} with its own pid and C{READY=1}, so that with
    C{NotifyAccess=all} systemd follows it as the service's main process.
    """
    path = str(upgrading.root / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(path)
        notify.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
        s1 = servers(EchoServer("s1"))
        lb = upgrading.start(
            [FrontendSection("www", "127.0.0.1", free_port(), "web")],
            [BackendSection("web", [ServerLine("s1", "127.0.0.1", s1.port)])],
            env={"NOTIFY_SOCKET": path},
        )
        first = lb.current

        def says(pid: int, words: str) -> Callable[[List[Tuple[int, str]]], bool]:
            return lambda got: any(p == pid and words in text.split("\n") for p, text in got)

        started = receive_notifications(notify, says(first, "READY=1"), 10.0)
        assert says(first, "READY=1")(started), started
        lb.signal_upgrade()
        new = int(lb.wait_generation(2)["Pid"])

        def both(seen: List[Tuple[int, str]]) -> bool:
            return says(new, f"MAINPID={new}")(seen) and says(new, "READY=1")(seen)

        seen = receive_notifications(notify, both, 10.0)
        assert both(seen), seen
        # MAINPID comes no later than READY: systemd must know whom to
        # follow before it counts the service as started again.
        lines = [line for pid, text in seen if pid == new for line in text.split("\n")]
        assert lines.index(f"MAINPID={new}") <= lines.index("READY=1"), seen


# -- nbproc ------------------------------------------------------------------


def test_upgrade_with_workers(upgrading: Upgrading) -> None:
    """
    With C{nbproc 2}, the new main process takes the sockets, starts its
    own workers on them, and the old main process and its workers exit
    once their connections end: under load, no connection fails.
    """
    echo = LoadProcess(["echo"], ready="READY")
    load: Optional[LoadProcess] = None
    try:
        lb, port = upgrading.start_echo(echo, {"nbproc": "2"})
        first = lb.current
        load = LoadProcess(
            ["tcp", "--port", str(port), "--rate", "100", "--streams", "5", "--max-seconds", "60"]
        )
        time.sleep(1.0)
        done = lb.command_upgrade()
        assert done.returncode == 0, (done.stdout, done.stderr)
        lb.wait_generation(2)
        time.sleep(2.0)
        counts = load.stop()
        assert counts["failures"] == {}, counts["examples"]
        assert counts["ok"] == counts["attempted"] > 100
        assert counts["streams_failed"] == 0
        assert wait_until(lambda: lb.gone(first), HARD_STOP_AFTER), "the old main process still runs"
        workers = [
            line for line in lb.lines() if "exited with status 0" in line and "Worker" in line
        ]
        assert len(workers) >= 2, lb.output(60)
    finally:
        if load is not None:
            load.kill()
        echo.kill()
