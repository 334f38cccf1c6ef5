"""
C{nbproc 2} under twistd: the main process binds and checks, two worker
processes accept and relay.  Which worker holds a connection is read from
C{/proc}: the worker whose descriptors include the accepted socket.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from typing import Dict, List, Optional, Set, Tuple

from .backends import EchoOnPort, EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    Balancer,
    BackendSection,
    FrontendSection,
    ServerLine,
    connect,
    echo_once,
    free_port,
    read_line,
    show_stat,
    wait_until,
)

CHECKS = "check inter 200 rise 2 fall 2"
HELD_MAX = 60
"""The most connections held open at once while looking for both workers."""


def worker_pids(lb: Balancer) -> Dict[int, int]:
    """The pid of each worker number, from the latest C{Worker N started (pid P).} lines."""
    pids: Dict[int, int] = {}
    for line in lb.lines():
        m = re.search(r"Worker (\d+) started \(pid (\d+)\)\.", line)
        if m:
            pids[int(m.group(1))] = int(m.group(2))
    return pids


def socket_inode(local_port: int, remote_port: int) -> Optional[str]:
    """The inode of the established IPv4 socket 127.0.0.1:local_port <-> :remote_port."""
    local = f"0100007F:{local_port:04X}"
    remote = f"0100007F:{remote_port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == local and fields[2] == remote and fields[3] == "01":
                return fields[9]
    return None


def owner(pids: Dict[int, int], frontend_port: int, client_port: int) -> Optional[int]:
    """The number of the worker holding the accepted end of the client's connection."""
    inode = socket_inode(frontend_port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for number, pid in pids.items():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return number
            except OSError:
                continue
    return None


def hold_until_both(lb: Balancer, port: int) -> Tuple[Set[int], List[str]]:
    """
    Open connections, keeping them open, until each worker holds one (at
    most L{HELD_MAX}); then close them.

    The workers share one listening socket and the kernel wakes every idle
    one for a new connection: the first to accept takes it, so on an idle
    machine one worker may take them all.  A worker seen holding a
    connection is therefore paused (C{SIGSTOP}) until the others have
    taken one, and resumed before returning.

    @return: The workers seen and the server name of every connection.
    """
    pids = worker_pids(lb)
    seen: Set[int] = set()
    names: List[str] = []
    held: List[socket.socket] = []
    paused: List[int] = []
    try:
        while len(seen) < len(pids) and len(held) < HELD_MAX:
            sock = connect(port)
            held.append(sock)
            name, _ = read_line(sock)
            names.append(name.decode("ascii"))
            client_port = sock.getsockname()[1]
            found: List[int] = []

            def located() -> bool:
                number = owner(pids, port, client_port)
                if number is not None:
                    found.append(number)
                return number is not None

            if not wait_until(located, 5.0):
                lb.fail(f"no worker holds the connection from port {client_port}")
            seen.add(found[0])
            if len(seen) < len(pids) and pids[found[0]] not in paused:
                os.kill(pids[found[0]], signal.SIGSTOP)
                paused.append(pids[found[0]])
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        for sock in held:
            sock.close()
    return seen, names


def start(balancers: BalancerFactory, s1: EchoServer, s2: EchoServer, admin: str) -> Tuple[Balancer, int]:
    """l4lb with nbproc 2 in front of s1 and s2, ready once both workers accept."""
    be = BackendSection(
        "be",
        [ServerLine("s1", "127.0.0.1", s1.port, CHECKS), ServerLine("s2", "127.0.0.1", s2.port, CHECKS)],
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be], global_={"nbproc": "2", "stats socket": admin})
    for number in (1, 2):
        if not wait_until(
            lambda: any(f"Worker {number}: Proxy fe started." in line for line in lb.lines()), 15.0
        ):
            lb.fail(f"worker {number} did not start")
    return lb, fe.port


def test_both_workers_serve_and_a_down_server_is_left_by_each(
    servers: StartServer, balancers: BalancerFactory, tmp_path: object
) -> None:
    """Both workers accept connections; a server the main process's checks mark DOWN gets no connection from either worker; the counters of show stat are the workers' added up."""
    s1 = servers(EchoOnPort("s1"))
    s2 = servers(EchoServer("s2"))
    admin = os.path.join(str(tmp_path), "admin.sock")
    lb, port = start(balancers, s1, s2, admin)
    assert len(worker_pids(lb)) == 2
    seen, names = hold_until_both(lb, port)
    assert seen == {1, 2}, lb.output()
    assert set(names) <= {"s1", "s2"}
    total = len(names)

    # Workers report their counters; the main process adds them up.
    def counted() -> bool:
        return show_stat(admin)[("fe", "FRONTEND")]["stot"] == str(total)

    assert wait_until(counted, 10.0), show_stat(admin)
    rows = show_stat(admin)
    servers_total = int(rows[("be", "s1")]["stot"]) + int(rows[("be", "s2")]["stot"])
    assert servers_total == total
    assert rows[("be", "BACKEND")]["stot"] == str(total)

    s1.stop()
    assert wait_until(lambda: any("Server be/s1 is DOWN" in line for line in lb.lines()), 10.0)
    seen, names = hold_until_both(lb, port)
    assert seen == {1, 2}, lb.output()
    assert set(names) == {"s2"}, names
    assert not any("Unhandled" in line for line in lb.lines())


def test_killed_worker_is_restarted_and_the_listener_stays(
    servers: StartServer, balancers: BalancerFactory, tmp_path: object
) -> None:
    """A worker killed with SIGKILL is logged and restarted; connections made meanwhile all succeed (the listening socket stays in the main process); the main process leaks no descriptor; SIGTERM stops every process with status 0."""
    s1 = servers(EchoServer("s1"))
    s2 = servers(EchoServer("s2"))
    admin = os.path.join(str(tmp_path), "admin.sock")
    lb, port = start(balancers, s1, s2, admin)
    assert echo_once(port, b"warm").echoed == b"warm"
    fds_before = lb.fd_count()
    old = worker_pids(lb)
    os.kill(old[1], signal.SIGKILL)
    restarted = re.compile(rf"Worker 1 \(pid {old[1]}\) killed by signal 9, restarting\.")
    served = 0

    def back() -> bool:
        nonlocal served
        result = echo_once(port, b"ping")
        assert result.echoed == b"ping"
        served += 1
        pids = worker_pids(lb)
        return (
            any(restarted.search(line) for line in lb.lines())
            and pids.get(1) not in (None, old[1])
            and sum("Worker 1: Proxy fe started." in line for line in lb.lines()) == 2
        )

    assert wait_until(back, 20.0), lb.output()
    assert served > 0
    new = worker_pids(lb)
    assert new[2] == old[2]
    seen, _ = hold_until_both(lb, port)
    assert seen == {1, 2}
    assert wait_until(lambda: lb.fd_count() == fds_before, 5.0), "\n".join(lb.fd_targets())
    lb.stop()
    for pid in new.values():
        assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 5.0) or _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether C{pid} is only a zombie (exited, not yet reaped by its parent's parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_reload_replaces_workers_and_keeps_their_connections(
    servers: StartServer, balancers: BalancerFactory, tmp_path: object
) -> None:
    """SIGHUP starts new workers with the new file and stops the old ones gracefully: a connection open through an old worker keeps flowing, new ones follow the new file, and the main process holds no more descriptors than before."""
    s1 = servers(EchoServer("s1"))
    s2 = servers(EchoServer("s2"))
    admin = os.path.join(str(tmp_path), "admin.sock")
    lb, port = start(balancers, s1, s2, admin)
    fds_before = lb.fd_count()
    old = worker_pids(lb)
    held = connect(port)
    read_line(held)
    config = lb.argv[lb.argv.index("--config") + 1]
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(re.sub(r"server s1 = .*\n", "", text))
    os.kill(lb.pid, signal.SIGHUP)
    assert wait_until(
        lambda: any("Reload: 2 worker(s) restarted" in line for line in lb.lines()), 10.0
    ), lb.output()
    assert wait_until(
        lambda: sum("Proxy fe started." in line and "Worker" in line for line in lb.lines()) == 4,
        15.0,
    ), lb.output()
    new = worker_pids(lb)
    assert set(new.values()).isdisjoint(old.values())
    held.sendall(b"still here")
    got = b""
    while len(got) < len(b"still here"):
        chunk = held.recv(64)
        assert chunk, "the held connection was closed by the reload"
        got += chunk
    assert got == b"still here"
    seen, names = hold_until_both(lb, port)
    assert seen == {1, 2} and set(names) == {"s2"}, (seen, names)
    held.close()
    for number, pid in old.items():
        done = re.compile(rf"Worker {number} \(pid {pid}\) exited with status 0\.")
        assert wait_until(lambda: any(done.search(line) for line in lb.lines()), 10.0), lb.output()
    assert not any("restarting" in line for line in lb.lines())
    assert wait_until(lambda: lb.fd_count() == fds_before, 5.0), "\n".join(lb.fd_targets())


def test_worker_signals(servers: StartServer, balancers: BalancerFactory, tmp_path: object) -> None:
    """A worker ignores SIGHUP (the main process reloads) and stops gracefully on SIGTERM, after which the main process starts it again."""
    s1 = servers(EchoServer("s1"))
    s2 = servers(EchoServer("s2"))
    admin = os.path.join(str(tmp_path), "admin.sock")
    lb, port = start(balancers, s1, s2, admin)
    old = worker_pids(lb)
    os.kill(old[2], signal.SIGHUP)
    os.kill(old[2], signal.SIGTERM)
    stopped = re.compile(rf"Worker 2 \(pid {old[2]}\) exited with status 0, restarting\.")
    assert wait_until(lambda: any(stopped.search(line) for line in lb.lines()), 10.0), lb.output()
    assert wait_until(
        lambda: sum("Worker 2: Proxy fe started." in line for line in lb.lines()) == 2, 15.0
    ), lb.output()
    assert worker_pids(lb)[1] == old[1]
    assert echo_once(port, b"after").echoed == b"after"


def test_workers_run_on_the_main_process_reactor(
    servers: StartServer, balancers: BalancerFactory, tmp_path: object
) -> None:
    """Under twistd --reactor=l4lb-epoll both workers are started on that reactor, freeze their start-up objects, and relay."""
    s1 = servers(EchoServer("s1"))
    s2 = servers(EchoServer("s2"))
    balancers.reactor = "l4lb-epoll"
    admin = os.path.join(str(tmp_path), "admin.sock")
    lb, port = start(balancers, s1, s2, admin)
    pids = worker_pids(lb)
    for pid in pids.values():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert argv[argv.index(b"--reactor") + 1] == b"l4lb-epoll"
    seen, _ = hold_until_both(lb, port)
    assert seen == {1, 2}, lb.output()
    for number in (1, 2):
        assert wait_until(
            lambda: any(f"Worker {number}: Froze " in line for line in lb.lines()), 10.0
        ), lb.output()
    assert echo_once(port, b"bytes").echoed == b"bytes"
