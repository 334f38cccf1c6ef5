"""
Tests for L{l4lb.workers}: the C{nbproc} keyword, the AMP commands between
the main process and a worker (over L{twisted.test.iosim}), the worker
pool's spawning, restarting and stopping (with a fake process reactor and
a L{Clock}), and the aggregation of the workers' counters.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Dict, List, Tuple

import pytest
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient

from l4lb.admin.commands import AdminCommands
from l4lb.admin.stats import stat_rows
from l4lb.config import ConfigError, parse_config
from l4lb.reactor import L4lbEPollReactor
from l4lb.tcp import lean
from l4lb.service import BalancerService
from l4lb.workers import REACTOR_NAME, child, commands, counters, pool
from tests.test_reactor import close_reactor

CONFIG = """\
[global]
nbproc = 2
hard-stop-after = 10s

[defaults]
mode = tcp
timeout connect = 1s
timeout client = 5s
timeout server = 5s

[frontend fe]
bind = 127.0.0.1:8080
default_backend = be

[backend be]
server s1 = 127.0.0.1:9001 on-marked-down shutdown-sessions
server s2 = 127.0.0.1:9002
server b1 = 127.0.0.1:9003 backup
"""


def config(text: str = CONFIG) -> Any:
    """The configuration of C{text}."""
    return parse_config(text, "lb.ini")


class FakeSession:
    """A relay session that records how it was killed."""

    def __init__(self, state: str = "established") -> None:
        self.state = state
        self.killed: List[str] = []

    def kill(self, termination: str) -> None:
        """Record the termination state."""
        self.killed.append(termination)


class FakeProcess:
    """An L{IProcessTransport} that records signals."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: List[str] = []

    def signalProcess(self, name: str) -> None:
        """Record the signal."""
        self.signals.append(name)


class FakeProcessReactor(Clock):
    """
    Time, C{spawnProcess} and C{adoptStreamConnection}: processes are only
    recorded; an adopted channel is connected to a L{StringTransport}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: List[Tuple[Any, List[str], Dict[int, Any], FakeProcess]] = []
        self.channels: List[Tuple[Any, StringTransport]] = []
        self.adopted: List[int] = []
        self._next_pid = 1000

    def spawnProcess(
        self, protocol: Any, executable: str, args: List[str], env: Any = None, childFDs: Any = None
    ) -> FakeProcess:
        """Record the process."""
        self._next_pid += 1
        process = FakeProcess(self._next_pid)
        self.spawned.append((protocol, list(args), dict(childFDs), process))
        return process

    def adoptStreamConnection(self, fd: int, family: Any, factory: Any) -> None:
        """
        Connect the factory's protocol to a memory transport.  Keep a
        duplicate of C{fd}, and set its open file to blocking mode unless
        the default timeout is 0, as PyPy's socket objects do to what they
        wrap.
        """
        self.adopted.append(os.dup(fd))
        if socket.getdefaulttimeout() != 0:
            os.set_blocking(fd, True)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.channels.append((protocol, transport))


class FakePort:
    """A listening port with a descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        """The descriptor."""
        return self.fd


def main_service(reactor: Any = None) -> BalancerService:
    """The main process's service of L{CONFIG}, not started, with one bound TCP port."""
    service = BalancerService(config(), reactor or FakeProcessReactor())
    service.ports["fe"] = [FakePort(42)]
    add_frontend(service)
    return service


def add_frontend(service: Any) -> Any:
    """Give C{service} the runtime state of frontend fe, as a start would (without binding)."""
    from l4lb.tcp.frontend import FrontendState

    spec = service.config.frontends[0]
    state = FrontendState(spec, service.backends["be"], service.limiter.gate(0), service.reactor, None)
    service.frontends["fe"] = state
    return state


def worker_service() -> child.WorkerService:
    """A worker's service of L{CONFIG}, not started."""
    return child.WorkerService(config(), MemoryReactorClock(), {("fe", 0): 4})


def capture(monkeypatch: pytest.MonkeyPatch, module: Any) -> List[str]:
    """Capture what C{module}'s logger logs, formatted."""
    from twisted.logger import formatEvent

    lines: List[str] = []
    monkeypatch.setattr(
        module, "_log", Logger(namespace="l4lb", observer=lambda e: lines.append(formatEvent(e)))
    )
    return lines


def amp_pair(worker: Any) -> Tuple[Any, Any, Any]:
    """
    A main-process channel connected in memory to a worker responder of
    C{worker}; returns (channel, responder, pump) and the stops recorded
    in C{responder.stopped}.
    """
    stopped: List[bool] = []
    responder = child.WorkerResponder(worker, lambda: stopped.append(True))
    responder.stopped = stopped  # type: ignore[attr-defined]
    record = pool.Worker(1, 0.0)
    channel, server, pump = connectedServerAndClient(
        lambda: responder, lambda: pool.WorkerChannel(record)
    )
    record.channel = channel
    return channel, responder, pump


def answer(pump: Any, d: Any) -> Any:
    """Pump until C{d} fires and return its result."""
    results: List[Any] = []
    d.addBoth(results.append)
    pump.flush()
    assert results, "no answer"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


# -- the keyword ------------------------------------------------------------


def test_nbproc_defaults_to_one_and_no_workers() -> None:
    """Without nbproc there is one process: no worker pool, the service as before."""
    text = CONFIG.replace("nbproc = 2\n", "")
    parsed = config(text)
    assert parsed.global_settings.nbproc == 1
    service = BalancerService(parsed, MemoryReactorClock())
    assert service.workers is None
    assert service.getServiceNamed("health") is service.monitor


def test_nbproc_parsed_and_builds_a_pool() -> None:
    """nbproc = 2 gives a WorkerPool of two as a child service."""
    service = BalancerService(config(), MemoryReactorClock())
    assert isinstance(service.workers, pool.WorkerPool)
    assert service.workers.count == 2
    assert service.getServiceNamed("workers") is service.workers


@pytest.mark.parametrize("value", ["0", "65", "two", "-1"])
def test_nbproc_out_of_range_is_an_error_with_file_line_and_key(value: str) -> None:
    """A wrong nbproc is an error naming the file, the line, the key and the range."""
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.replace("nbproc = 2", f"nbproc = {value}"), "lb.ini")
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 1
    assert problems[0].startswith("lb.ini:2: [global] key 'nbproc': ")
    assert "1 to 64" in problems[0] or "from 1 to 64" in problems[0], problems[0]


def test_ssl_endpoint_cannot_be_shared(tmp_path: Any) -> None:
    """With nbproc above 1 an ssl: endpoint description is refused, with the way out; 'ssl crt' is shared."""
    from tests.tlskit import make_pki

    pem = make_pki(str(tmp_path)).server
    text = CONFIG.replace(
        "bind = 127.0.0.1:8080",
        f"bind = ssl:8443:interface=127.0.0.1:privateKey={pem}:certKey={pem}",
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "lb.ini")
    (problem,) = [str(p) for p in caught.value.problems]
    assert problem.startswith("lb.ini:12: [frontend fe] key 'bind': ")
    assert "ssl crt PATH" in problem and "nbproc" in problem
    parse_config(text.replace("nbproc = 2\n", ""), "lb.ini")
    parse_config(CONFIG.replace("bind = 127.0.0.1:8080", f"bind = 127.0.0.1:8443 ssl crt {pem}"), "lb.ini")


# -- the worker's configuration and state ---------------------------------


def test_worker_runs_tcp_only_without_admin_checks_or_nested_workers() -> None:
    """A worker's configuration has no stats socket, no UDP proxies and nbproc 1; it has no checks."""
    text = CONFIG.replace("[global]\n", "[global]\nstats socket = /tmp/x.sock\n") + (
        "\n[frontend dns]\nmode = udp\nbind = 127.0.0.1:5353\ndefault_backend = ns\n"
        "timeout udp = 5s\n\n[backend ns]\nmode = udp\nserver n1 = 127.0.0.1:53\n"
    )
    worker = child.worker_config(config(text))
    assert worker.global_settings.nbproc == 1
    assert worker.global_settings.stats_socket is None
    assert [f.name for f in worker.frontends] == ["fe"]
    assert [b.name for b in worker.backends] == ["be"]
    service = worker_service()
    assert service.workers is None
    assert service.monitor.servers == []
    with pytest.raises(KeyError):
        service.getServiceNamed("health")


def test_adopted_listening_socket_stays_nonblocking() -> None:
    """A worker adopting the main process's listening socket leaves the open file non-blocking, for itself and for the main process (PyPy's socket objects set a descriptor they wrap to blocking mode, and a blocking listener stops the worker in accept); it accepts through it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    reactor = L4lbEPollReactor()
    service = child.WorkerService(config(), reactor, {("fe", 0): listener.fileno()})
    add_frontend(service)
    spec = service.config.frontends[0]
    port = service.listen(spec, spec.binds[0])
    client = socket.create_connection(listener.getsockname())
    try:
        assert not os.get_blocking(listener.fileno())
        assert not os.get_blocking(port.fileno())
        # Twice the queue: the second read finds it empty and returns.
        port.doRead()
        port.doRead()
    finally:
        client.close()
        port.connectionLost(None)
        close_reactor(reactor)
        listener.close()


def test_set_server_down_stops_new_connections_to_it() -> None:
    """SetServer with up=False takes the server out of the worker's balancer."""
    worker = worker_service()
    channel, _, pump = amp_pair(worker)
    result = answer(
        pump,
        channel.callRemote(
            commands.SetServer, backend="be", server="s1", up=False, admin="ready", weight=1, maxconn=0
        ),
    )
    assert result == {"known": True}
    backend = worker.backends["be"]
    assert backend.server("s1").up is False
    assert {backend.pick(None).name for _ in range(6)} == {"s2"}


def test_set_server_admin_weight_and_maxconn() -> None:
    """SetServer applies drain, weight and maxconn as the main process has them."""
    worker = worker_service()
    channel, _, pump = amp_pair(worker)
    answer(
        pump,
        channel.callRemote(
            commands.SetServer, backend="be", server="s2", up=True, admin="drain", weight=7, maxconn=3
        ),
    )
    server = worker.backends["be"].server("s2")
    assert (server.admin, server.weight, server.maxconn) == ("drain", 7, 3)


def test_set_unknown_server_answers_unknown() -> None:
    """A server the worker does not have is answered known=False and changes nothing."""
    worker = worker_service()
    channel, _, pump = amp_pair(worker)
    for backend, server in (("be", "nope"), ("nope", "s1")):
        result = answer(
            pump,
            channel.callRemote(
                commands.SetServer, backend=backend, server=server, up=False, admin="ready", weight=1, maxconn=0
            ),
        )
        assert result == {"known": False}
    assert all(s.up for s in worker.backends["be"].servers)


def test_marked_down_shuts_sessions_when_configured() -> None:
    """A server going DOWN with on-marked-down shutdown-sessions has its worker sessions killed DD/DC."""
    worker = worker_service()
    s1 = worker.backends["be"].server("s1")
    s2 = worker.backends["be"].server("s2")
    established, connecting, other = FakeSession(), FakeSession("connecting"), FakeSession()
    s1.sessions.update({established, connecting})
    s2.sessions.add(other)
    assert child.apply_server_state(worker, "be", "s1", False, "ready", 1, 0)
    assert established.killed == ["DD"] and connecting.killed == ["DC"]
    assert child.apply_server_state(worker, "be", "s2", False, "ready", 1, 0)
    assert other.killed == []


def test_begin_lets_the_worker_open() -> None:
    """Begin fires the worker's begun Deferred (its ports accept only then)."""
    worker = worker_service()
    channel, _, pump = amp_pair(worker)
    assert not worker.begun.called
    answer(pump, channel.callRemote(commands.Begin))
    assert worker.begun.called


def test_shutdown_sessions_and_maxconn_and_clear() -> None:
    """ShutdownSessions kills with KD, SetFrontendMaxconn changes the gate, ClearCounters resets totals."""
    worker = worker_service()
    channel, _, pump = amp_pair(worker)
    session = FakeSession()
    worker.backends["be"].server("s2").sessions.add(session)
    killed = answer(pump, channel.callRemote(commands.ShutdownSessions, backend="be", server="s2"))
    assert killed == {"killed": 1} and session.killed == ["KD"]
    state = add_frontend(worker)
    assert answer(pump, channel.callRemote(commands.SetFrontendMaxconn, frontend="fe", maxconn=9)) == {
        "known": True
    }
    assert state.gate.maxconn == 9
    state.total = 5
    worker.backends["be"].server("s1").total = 4
    answer(pump, channel.callRemote(commands.ClearCounters))
    assert state.total == 0 and worker.backends["be"].server("s1").total == 0


def test_reopen_logs_reopens_the_workers_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGUSR1's re-open in the main process is passed on: ReopenLogs re-opens the worker's log."""
    worker = worker_service()
    reopened: List[bool] = []
    monkeypatch.setattr(worker, "reopen_logs", lambda: reopened.append(True))
    channel, _, pump = amp_pair(worker)
    answer(pump, channel.callRemote(commands.ReopenLogs))
    assert reopened == [True]


def test_stop_asks_the_worker_to_stop() -> None:
    """Stop is answered at once and stops the worker on the next turn of its reactor."""
    worker = worker_service()
    channel, responder, pump = amp_pair(worker)
    answer(pump, channel.callRemote(commands.Stop))
    assert responder.stopped == []
    worker.reactor.advance(0)
    assert responder.stopped == [True]


def test_log_from_worker_is_logged_with_its_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's Log command is logged by the main process as 'Worker N: text' at its level."""
    lines = capture(monkeypatch, pool)
    worker = worker_service()
    channel, responder, pump = amp_pair(worker)
    responder.callRemote(commands.Log, level="warn", text="Proxy fe started.")
    pump.flush()
    assert lines == ["Worker 1: Proxy fe started."]


# -- counters ---------------------------------------------------------------


def reading(rows: List[Any], current: int = 0, total: int = 0) -> Dict[str, Any]:
    """A counters reading."""
    return {"rows": rows, "current": current, "total": total}


def test_add_sums_and_keeps_the_highest_qmax() -> None:
    """Readings add up column by column; qmax is the highest."""
    a = reading([["fe", "FRONTEND", {"scur": 1, "stot": 5}], ["be", "BACKEND", {"qmax": 3}]], 1, 5)
    b = reading([["fe", "FRONTEND", {"scur": 2, "stot": 7}], ["be", "BACKEND", {"qmax": 2}]], 2, 7)
    total = counters.add([a, b])
    assert total["rows"] == [
        ["fe", "FRONTEND", {"scur": 3, "stot": 12}],
        ["be", "BACKEND", {"qmax": 3}],
    ]
    assert (total["current"], total["total"]) == (3, 12)


def test_cumulative_drops_current_values() -> None:
    """What is kept of a gone worker: totals, not its open connections."""
    kept = counters.cumulative(reading([["be", "s1", {"scur": 2, "stot": 9, "bin": 100, "qcur": 1}]], 2, 9))
    assert kept == reading([["be", "s1", {"stot": 9, "bin": 100}]], 0, 9)


def test_merge_adds_into_matching_rows_only() -> None:
    """merge adds to the main process's row of the same proxy and server, and skips unknown ones."""
    rows = [{"pxname": "fe", "svname": "FRONTEND", "scur": "0", "stot": "2"}]
    counters.merge(rows, reading([["fe", "FRONTEND", {"scur": 3, "stot": 4}], ["gone", "BACKEND", {"stot": 1}]]))
    assert rows == [{"pxname": "fe", "svname": "FRONTEND", "scur": "3", "stot": "6"}]


def test_pages_round_trip() -> None:
    """A reading cut in pages parses back whole."""
    original = reading([["be", f"s{i}", {"stot": i}] for i in range(100)], 1, 2)
    parts = counters.pages(original, 100)
    assert len(parts) > 1 and all(len(p) <= 100 for p in parts)
    assert counters.parse("".join(parts)) == original
    with pytest.raises(ValueError):
        counters.parse("[]")


def test_snapshot_of_a_worker_counts_its_traffic() -> None:
    """A worker's snapshot carries its frontend, server and backend counters and open connections."""
    worker = worker_service()
    state = add_frontend(worker)
    state.total, state.bytes_in = 5, 50
    s1 = worker.backends["be"].server("s1")
    s1.total, s1.bytes_out, s1.failed_connects = 5, 70, 1
    worker.backends["be"].total = 5
    snap = counters.snapshot(worker, 0.0)
    rows = {(px, sv): values for px, sv, values in snap["rows"]}
    assert rows[("fe", "FRONTEND")]["stot"] == 5 and rows[("fe", "FRONTEND")]["bin"] == 50
    assert rows[("be", "s1")]["bout"] == 70 and rows[("be", "s1")]["econ"] == 1
    assert rows[("be", "BACKEND")]["stot"] == 5
    assert snap["total"] == 5 and snap["current"] == 0 and snap["pipes"] == lean.PIPES.open


def test_counters_are_read_in_pages_and_added_to_the_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool reads a worker's counters over AMP, page by page, and show stat / show info add them up."""
    monkeypatch.setattr(commands, "PAGE_SIZE", 40)
    # The worker and the main process share this test's process: 2 pipes
    # open in each.
    pipes = lean.Pipes(16)
    pipes.open = 2
    monkeypatch.setattr(lean, "PIPES", pipes)
    worker = worker_service()
    worker.backends["be"].server("s2").total = 3
    worker.backends["be"].server("s2").bytes_in = 30
    worker.backends["be"].total = 3
    channel, _, pump = amp_pair(worker)
    main = main_service(MemoryReactorClock())
    workers = main.workers
    record = channel.worker
    workers.workers[1] = record
    workers.poll()
    pump.flush()
    assert record.reading is not None
    workers.kept = reading([["be", "s2", {"stot": 2}], ["be", "BACKEND", {"stot": 2}]], 0, 2)
    rows = {(r["pxname"], r["svname"]): r for r in stat_rows(main, 0.0)}
    assert rows[("be", "s2")]["stot"] == "5"
    assert rows[("be", "s2")]["bin"] == "30"
    assert rows[("be", "BACKEND")]["stot"] == "5"
    assert rows[("be", "s1")]["stot"] == "0"
    info = AdminCommands(main, main.reactor).run("show info")
    assert "CumConns: 2\n" in info
    assert "PipesUsed: 4\n" in info


# -- the pool ---------------------------------------------------------------


def started_pool(monkeypatch: pytest.MonkeyPatch) -> Tuple[Any, FakeProcessReactor, List[str]]:
    """A pool of two over a fake reactor, started; and its log."""
    lines = capture(monkeypatch, pool)
    reactor = FakeProcessReactor()
    service = main_service(reactor)
    workers = service.workers
    workers.startService()
    return workers, reactor, lines


def boxes(transport: StringTransport) -> bytes:
    """What was written to a channel."""
    return bytes(transport.value())


def test_start_spawns_workers_with_the_listening_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting spawns nbproc workers, passing the TCP listeners as descriptors 4+ and the channel as 3, then sends each server's state and Begin."""
    workers, reactor, lines = started_pool(monkeypatch)
    assert len(reactor.spawned) == 2
    for number, (_, argv, fds, process) in enumerate(reactor.spawned, start=1):
        assert argv[1:3] == ["-m", "l4lb.workers"]
        assert argv[argv.index("--number") + 1] == str(number)
        assert json.loads(argv[argv.index("--listen") + 1]) == [["fe", 0, 4]]
        assert argv[argv.index("--reactor") + 1] == "default"
        assert fds[4] == 42 and isinstance(fds[3], int) and fds[1] == 1 and fds[2] == 2
    for _, transport in reactor.channels:
        sent = boxes(transport)
        assert sent.count(b"SetServer") == 3
        assert sent.rindex(b"Begin") > sent.rindex(b"SetServer")
    assert lines == ["Worker 1 started (pid 1001).", "Worker 2 started (pid 1002)."]
    # The reactor's ends of the channels are non-blocking, and the
    # adoption left them so.
    assert len(reactor.adopted) == 2
    try:
        assert [os.get_blocking(fd) for fd in reactor.adopted] == [False, False]
    finally:
        for fd in reactor.adopted:
            os.close(fd)


def test_workers_run_on_l4lb_reactor_when_the_main_process_does() -> None:
    """A main process on twistd --reactor=l4lb-epoll starts its workers on that reactor; on any other, on Twisted's default."""
    ours = L4lbEPollReactor()
    try:
        assert pool._on_l4lb_reactor(ours)
    finally:
        close_reactor(ours)
    assert not pool._on_l4lb_reactor(FakeProcessReactor())
    assert not pool._on_l4lb_reactor(Clock())
    assert child._arguments(["--config", "x", "--number", "1", "--channel", "3"]).reactor == "default"
    assert child._arguments(
        ["--config", "x", "--number", "1", "--channel", "3", "--reactor", REACTOR_NAME]
    ).reactor == REACTOR_NAME


def test_server_change_is_sent_to_every_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A state change of a server in the main process is sent to each worker."""
    workers, reactor, _ = started_pool(monkeypatch)
    for _, transport in reactor.channels:
        transport.clear()
    workers.service.backends["be"].server("s2").set_admin("maint")
    for _, transport in reactor.channels:
        sent = boxes(transport)
        assert b"SetServer" in sent and b"maint" in sent and b"s2" in sent


def test_reopen_logs_is_sent_to_every_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The main process's reopen_logs (SIGUSR1) asks each worker to re-open its log."""
    workers, reactor, _ = started_pool(monkeypatch)
    workers.service.reopen_logs()
    for _, transport in reactor.channels:
        assert b"ReopenLogs" in boxes(transport)


def test_dead_worker_is_logged_and_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed by a signal is logged HAProxy-style and started again with the same number; its totals are kept."""
    workers, reactor, lines = started_pool(monkeypatch)
    first = workers.workers[1]
    first.reading = reading([["be", "s1", {"scur": 1, "stot": 4}]], 1, 4)
    reactor.advance(30)
    workers.ended(first, Failure(ProcessTerminated(signal=9)))
    assert "Worker 1 (pid 1001) killed by signal 9, restarting." in lines
    reactor.advance(0)
    assert len(reactor.spawned) == 3
    assert workers.workers[1].pid == 1003
    assert workers.reading()["rows"] == [["be", "s1", {"stot": 4}]]


def test_quick_exits_are_restarted_later_and_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker exiting right after its start is restarted after a growing delay."""
    workers, reactor, _ = started_pool(monkeypatch)
    workers.ended(workers.workers[2], Failure(ProcessTerminated(exitCode=1)))
    reactor.advance(0.1)
    assert len(reactor.spawned) == 2
    reactor.advance(0.2)
    assert len(reactor.spawned) == 3
    workers.ended(workers.workers[2], Failure(ProcessTerminated(exitCode=1)))
    reactor.advance(0.3)
    assert len(reactor.spawned) == 3
    reactor.advance(0.2)
    assert len(reactor.spawned) == 4


def test_stop_waits_for_every_worker_then_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping sends Stop to each worker, restarts none, and fires once all have exited."""
    workers, reactor, lines = started_pool(monkeypatch)
    d = workers.stopService()
    for _, transport in reactor.channels:
        assert b"Stop" in boxes(transport)
    fired: List[Any] = []
    d.addCallback(fired.append)
    for worker in list(workers.live()):
        assert not fired
        workers.ended(worker, Failure(ProcessDone(0)))
    assert fired == [None]
    reactor.advance(60)
    assert len(reactor.spawned) == 2
    assert "Worker 1 (pid 1001) exited with status 0." in lines


def test_stop_kills_workers_that_outlive_hard_stop_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker still running hard-stop-after plus the margin after the stop is killed."""
    workers, reactor, _ = started_pool(monkeypatch)
    workers.stopService()
    reactor.advance(10 + pool.KILL_MARGIN - 0.5)
    assert all(p.signals == [] for _, _, _, p in reactor.spawned)
    reactor.advance(1)
    assert all(p.signals == ["KILL"] for _, _, _, p in reactor.spawned)


def test_reload_replaces_the_workers_gracefully(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload starts new workers and tells the old ones to stop; their exit restarts nothing."""
    workers, reactor, lines = started_pool(monkeypatch)
    old = list(workers.workers.values())
    workers.reload()
    assert len(reactor.spawned) == 4
    assert workers.leaving == old
    for _, transport in reactor.channels[:2]:
        assert b"Stop" in boxes(transport)
    for worker in old:
        workers.ended(worker, Failure(ProcessDone(0)))
    reactor.advance(10)
    assert len(reactor.spawned) == 4
    assert sorted(w.pid for w in workers.workers.values()) == [1003, 1004]
    assert not any("restarting" in line for line in lines)


def test_poll_never_stops_on_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The periodic reading logs an error and keeps running."""
    workers, reactor, lines = started_pool(monkeypatch)
    calls: List[int] = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    monkeypatch.setattr(workers, "poll", broken)
    reactor.advance(pool.POLL_INTERVAL)
    reactor.advance(pool.POLL_INTERVAL)
    assert len(calls) == 2
    assert any("Reading the workers' counters failed" in line for line in lines)
