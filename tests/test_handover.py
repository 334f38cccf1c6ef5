"""
Tests for L{l4lb.handover}: the runtime state a new process receives and
builds from (through the same constructors as a start), the refusals of
the running process, the new process's reading of the answer with its
descriptors, the upgrade's start and failure report, C{l4lb upgrade}'s
exit status and the systemd notification.

The handover between real processes, under load, is in
C{tests/e2e/test_handover.py}.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from l4lb.admin.commands import AdminCommands
from l4lb.admin.protocol import AdminFactory
from l4lb.cli import main as cli_main
from l4lb.config import parse_config
from l4lb.handover.donor import REPORT_ENV, TAKEOVER_ENV, Donor
from l4lb.handover.sockets import bind_key
from l4lb.handover.state import capture, dump, load
from l4lb.handover.taker import HandoverError, take_over
from l4lb.logs import MemorySink
from l4lb.sdnotify import notify
from l4lb.service import BalancerService
from tests.test_reload import BASE, Reactor, start

CHECKED = BASE.replace("127.0.10.1:80", "127.0.10.1:80 check").replace(
    "127.0.10.2:80", "127.0.10.2:80 check weight 10"
)
EXPOSED = CHECKED.replace(
    "hard-stop-after = 5s\n", "hard-stop-after = 5s\nstats socket = /run/x.sock expose-fd listeners\n"
)


def hand_over(service: BalancerService, text: str) -> BalancerService:
    """
    The service a new process builds from C{text} with the state
    C{service} sends, carried as the JSON line carries it.
    """
    line = json.dumps(dump(capture(service, service.generation + 1)))
    carried = load(json.loads(line))
    new = BalancerService(parse_config(text, "lb.ini"), Reactor(), sink=MemorySink(), carried=carried)
    new.startService()
    return new


def test_runtime_state_reaches_the_new_process_by_name() -> None:
    """
    A drain, a weight set at run time, a server added at run time, a
    frontend's maxconn set at run time, a server DOWN by its checks and a
    server's counters are in the runtime the new process builds from the
    same file, as a reload would keep them; the generation goes up by one.
    """
    service, _ = start(CHECKED)
    commands = AdminCommands(service, service.reactor)
    commands.run("set server be/s1 state drain")
    commands.run("set weight be/s2 50")
    commands.run("add server be/s3 127.0.10.3:80 check")
    commands.run("set maxconn frontend fe 7")
    health = service.monitor.find("be", "s2")
    health.state.health = 0
    health.server.set_health(False)
    health.server.health_text = "DOWN"
    service.backends["be"].server("s1").total = 41
    new = hand_over(service, CHECKED)
    be = new.backends["be"]
    assert new.generation == 2
    assert be.server("s1").admin == "drain"
    assert be.server("s1").total == 41
    assert be.server("s2").user_weight == 50
    assert not be.server("s2").up and be.server("s2").health_text == "DOWN"
    assert new.monitor.find("be", "s2").state.health == 0
    assert be.server("s3").admin == "maint"
    assert ("be", "s3") in new.added_servers
    assert new.frontends["fe"].gate.maxconn == 7


def test_the_new_file_wins_where_it_changed() -> None:
    """
    As on a reload: a weight the new file changes is the file's, and a
    server whose checks are now made differently restarts from its
    C{init-state} instead of staying DOWN.
    """
    service, _ = start(CHECKED)
    service.backends["be"].server("s2").set_weight(50)
    health = service.monitor.find("be", "s1")
    health.state.health = 0
    health.server.set_health(False)
    changed = CHECKED.replace("weight 10", "weight 20").replace(
        "127.0.10.1:80 check", "127.0.10.1:80 check inter 5s"
    )
    new = hand_over(service, changed)
    assert new.backends["be"].server("s2").user_weight == 20
    assert new.backends["be"].server("s1").up


def test_bad_state_is_refused() -> None:
    """
    A state of another layout, or missing fields, is an error, not a half
    applied state.
    """
    with pytest.raises(ValueError):
        load({"layout": 99})
    with pytest.raises(ValueError):
        load({"layout": 1, "generation": 2})


def test_ssl_endpoints_are_bound_afresh() -> None:
    """
    Only plain listening sockets are passed: an C{ssl:} endpoint's TLS
    lives in its port.
    """
    binds = parse_config(BASE, "lb.ini").frontends[0].binds
    assert bind_key(False, binds[0]) == ("tcp", binds[0].endpoint)
    assert bind_key(True, binds[0]) == ("udp", binds[0].endpoint)
    ssl = type(binds[0])("ssl:443:privateKey=k.pem")
    assert bind_key(False, ssl) is None


# -- the running process's answers ------------------------------------------


class FdTransport(StringTransport):
    """
    A UNIX connection's transport that records the descriptors sent.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fds: List[int] = []

    def sendFileDescriptor(self, fd: int) -> None:
        self.fds.append(fd)


def admin_line(service: Any, line: str) -> FdTransport:
    """
    Send C{line} on a new runtime API connection to C{service}.
    """
    factory = AdminFactory(AdminCommands(service, service.reactor), None, Clock())
    protocol = factory.buildProtocol(None)
    transport = FdTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(line.encode() + b"\n")
    return transport


class FakePort:
    """
    A listening port with a descriptor.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.reading = True

    def fileno(self) -> int:
        return self.fd

    def stopReading(self) -> None:
        self.reading = False

    def stopListening(self) -> None:
        self.reading = False


def exposing(text: str) -> Any:
    """
    A started service of C{text} whose file has C{stats socket ...
    expose-fd listeners} (the memory reactor cannot listen on it: a port
    with a descriptor stands for it).
    """
    service, reactor = start(CHECKED)
    if text == EXPOSED:
        service.config = parse_config(EXPOSED, "lb.ini")
    service.admin_port = FakePort(99)
    for number, port in enumerate(p for ports in service.ports.values() for p in ports):
        port.fileno = (lambda fd: lambda: fd)(100 + number)
    return service, reactor


def donor_for(text: str) -> BalancerService:
    service, reactor = exposing(text)
    service.handover = Donor(service, reactor, ["/usr/bin/python3", "twistd", "l4lb"])
    return service


def test_handover_needs_expose_fd() -> None:
    """
    Without C{expose-fd listeners} the sockets are not handed out, and the
    reply names the option.
    """
    service = donor_for(CHECKED)
    sent = admin_line(service, '_handover {"pid": 5, "version": "9"}')
    assert b"expose-fd listeners" in sent.value()
    assert sent.fds == [] and service.handover.busy is None


def test_handover_sends_each_socket_with_a_byte_of_the_line() -> None:
    """
    The answer is one JSON line naming each socket, its descriptors sent
    in the same order; a second handover meanwhile is refused; the
    running process keeps its sockets until the commit.
    """
    service = donor_for(EXPOSED)
    sent = admin_line(service, '_handover {"pid": 5, "version": "9"}')
    line = sent.value().split(b"\n")[0]
    answer = json.loads(line)
    assert answer["donor"]["generation"] == 1
    assert ["stats socket", "/run/x.sock"] in answer["sockets"]
    assert len(sent.fds) == len(answer["sockets"]) and 99 in sent.fds
    assert service.handover.busy == "takeover by process 5"
    second = admin_line(service, '_handover {"pid": 6, "version": "9"}')
    assert b"another handover is under way" in second.value()
    assert second.fds == []
    assert service.admin_port is not None and service.admin_port.reading


def test_a_stopping_process_does_not_hand_over() -> None:
    """
    A process that is stopping (SIGTERM, within its C{grace}) refuses a
    handover: its listeners are about to close.
    """
    service = donor_for(EXPOSED)
    service.instance_state = "stopping"
    sent = admin_line(service, '_handover {"pid": 5, "version": "9"}')
    assert b"the process is stopping" in sent.value() and sent.fds == []


def test_a_lost_session_frees_the_running_process() -> None:
    """
    A new process that goes away before it commits leaves the running one
    as it was, ready for the next handover.
    """
    service = donor_for(EXPOSED)
    factory = AdminFactory(AdminCommands(service, service.reactor), None, Clock())
    protocol = factory.buildProtocol(None)
    transport = FdTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b'_handover {"pid": 5, "version": "9"}\n')
    protocol.connectionLost(None)
    assert service.handover.busy is None and not service.handover.retired
    assert service.instance_state == "ready"


class SpawningReactor(Clock):
    """
    A clock that records the processes spawned.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: List[Dict[str, Any]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: List[str], env: Dict[str, str], path: str, childFDs: Dict[int, Any]) -> None:
        self.spawned.append({"protocol": protocol, "args": args, "env": env, "path": path, "fds": childFDs})

        class Transport:
            pid = 4242

        protocol.makeConnection(Transport())


class Ended(Exception):
    def __init__(self, code: Optional[int]) -> None:
        self.exitCode = code
        self.signal = None


def test_upgrade_runs_the_same_command_line_and_reports_a_failure(tmp_path: Path) -> None:
    """
    An upgrade starts this process's command line again, told where to
    take over and where to report, from the directory it started in; a new
    process that exits with an error fails the upgrade with what it
    reported, and the pid file renamed to C{.oldbin} comes back.
    """
    from twisted.python.failure import Failure

    service, _ = exposing(EXPOSED)
    reactor = SpawningReactor()
    pidfile = tmp_path / "twistd.pid"
    pidfile.write_text("1\n")
    donor = Donor(service, reactor, ["/py", "/bin/twistd", "-n", "l4lb", "--config", "lb.ini"], str(pidfile), {"A": "1"}, cwd=str(tmp_path))
    outcomes: List[Any] = []
    donor.upgrade().addCallback(outcomes.append)
    (spawn,) = reactor.spawned
    assert spawn["args"] == ["/py", "/bin/twistd", "-n", "l4lb", "--config", "lb.ini"]
    assert spawn["env"][TAKEOVER_ENV] == "/run/x.sock" and spawn["env"]["A"] == "1"
    assert spawn["fds"][int(spawn["env"][REPORT_ENV])] == "r"
    assert spawn["path"] == str(tmp_path)
    assert not pidfile.exists() and (tmp_path / "twistd.pid.oldbin").exists()
    again: List[Any] = []
    donor.upgrade().addCallback(again.append)
    assert not again[0].ok and "another handover is under way" in again[0].text
    process = spawn["protocol"]
    process.childDataReceived(3, b"lb.ini:3: unknown balance 'nosuch'\n")
    process.processEnded(Failure(Ended(1)))
    (outcome,) = outcomes
    assert not outcome.ok
    assert "exited with status 1" in outcome.text and "nosuch" in outcome.text
    assert pidfile.read_text() == "1\n"
    assert donor.busy is None


def test_upgrade_gives_up_after_its_timeout() -> None:
    """
    A new process that never asks for the sockets fails the upgrade after
    a bounded time.
    """
    from l4lb.handover.donor import UPGRADE_TIMEOUT

    service, _ = exposing(EXPOSED)
    reactor = SpawningReactor()
    donor = Donor(service, reactor, ["/py"])
    outcomes: List[Any] = []
    donor.upgrade().addCallback(outcomes.append)
    reactor.advance(UPGRADE_TIMEOUT - 1)
    assert outcomes == []
    reactor.advance(1)
    assert not outcomes[0].ok and "within" in outcomes[0].text


# -- the new process's side ---------------------------------------------------


def answer_once(path: str, reply: bytes, fds: List[int]) -> threading.Thread:
    """
    Listen on C{path}; answer one connection's first line with C{reply},
    its first bytes carrying C{fds}, one each.
    """
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def run() -> None:
        connection, _ = server.accept()
        with connection, server:
            connection.settimeout(10)
            connection.recv(4096)
            for index, fd in enumerate(fds):
                socket.send_fds(connection, [reply[index : index + 1]], [fd])
            connection.sendall(reply[len(fds) :])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_take_over_reads_the_sockets_in_order(tmp_path: Path) -> None:
    """
    Each descriptor received is the socket named at its place in the line.
    """
    service, _ = start(CHECKED)
    state = dump(capture(service, 2))
    with socket.socket() as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        line = json.dumps(
            {"sockets": [["tcp", "tcp:1"], ["udp", "udp:2"]], "state": state, "donor": {"pid": 7, "generation": 1}}
        ).encode() + b"\n"
        path = str(tmp_path / "s")
        thread = answer_once(path, line, [a.fileno(), b.fileno()])
        taken = take_over(path, timeout=10)
        try:
            kinds = {key: socket.socket(fileno=os.dup(fd)).type for key, fd in taken.sockets.items()}
            assert kinds == {("tcp", "tcp:1"): socket.SOCK_STREAM, ("udp", "udp:2"): socket.SOCK_DGRAM}
            assert taken.donor_pid == 7 and taken.carried.generation == 2
        finally:
            for fd in taken.sockets.values():
                os.close(fd)
            taken.connection.close()
        thread.join(10)


def test_take_over_reports_a_refusal(tmp_path: Path) -> None:
    """
    The running process's refusal is the error, word for word.
    """
    path = str(tmp_path / "s")
    thread = answer_once(path, b"Handover refused: another handover is under way (x).\n", [])
    with pytest.raises(HandoverError, match="another handover is under way"):
        take_over(path, timeout=10)
    thread.join(10)


def test_take_over_without_a_running_process(tmp_path: Path) -> None:
    """
    No process on the socket: an error naming the socket.
    """
    with pytest.raises(HandoverError, match="cannot reach the running process"):
        take_over(str(tmp_path / "none"), timeout=1)


# -- l4lb upgrade, systemd ----------------------------------------------------


@pytest.mark.parametrize(
    "reply, status",
    [
        (b"Upgrade done: process 8 took over as generation 2, version 1.\n\n", 0),
        (b"Upgrade failed: the new process 8 exited with status 1.\n\n", 1),
    ],
)
def test_upgrade_command_exit_status(tmp_path: Path, capsys: Any, reply: bytes, status: int) -> None:
    """
    C{l4lb upgrade} prints the running process's answer and exits 0 only
    when the new process took over.
    """
    path = str(tmp_path / "s")
    thread = answer_once(path, reply, [])
    assert cli_main(["upgrade", "--socket", path, "--timeout", "10"]) == status
    assert capsys.readouterr().out == reply.decode()
    thread.join(10)


def test_notify_sends_to_the_socket_systemd_names(tmp_path: Path) -> None:
    """
    The message goes as one datagram to C{NOTIFY_SOCKET}; without it,
    nothing is sent.
    """
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        assert notify("MAINPID=5\nREADY=1", {"NOTIFY_SOCKET": path})
        assert sock.recv(100) == b"MAINPID=5\nREADY=1"
    assert not notify("READY=1", {})
