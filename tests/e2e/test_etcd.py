"""
Servers from etcd, end to end: a real etcd on loopback, C{etcdctl} changing
the keys, l4lb run by C{twistd} with C{servers-from}, real clients.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .etcddaemon import Etcd
from .harness import (
    runtime_command,
    BackendSection,
    FrontendSection,
    connect,
    free_port,
    read_line,
    show_stat,
    wait_until,
)

PREFIX = "/l4lb/backends/web/"

#: What the issue asks: a change in etcd reaches the balancer within this.
WITHIN = 1.0


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    """
    A running one-member etcd on free loopback ports; stopped after the test.
    """
    directory = tmp_path / "etcd"
    directory.mkdir()
    store = Etcd(str(directory))
    try:
        yield store.start()
    finally:
        store.stop()


def admin(path: str, command: str) -> str:
    """
    One command on the runtime API's socket, its whole answer.
    """
    return runtime_command(path, command)


def info(path: str) -> Dict[str, str]:
    """
    C{show info} as a dictionary.
    """
    lines = admin(path, "show info").splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def names(port: int, count: int) -> List[str]:
    """
    The servers that answer C{count} new connections, in order.
    """
    seen = []
    for _ in range(count):
        sock = connect(port)
        try:
            seen.append(read_line(sock)[0].decode())
        finally:
            sock.close()
    return seen


def answers(port: int) -> str:
    """
    The server that answers one new connection, or C{""} when the
    connection is closed without one.
    """
    try:
        return names(port, 1)[0]
    except (EOFError, OSError):
        return ""


def test_servers_follow_etcd(
    etcd: Etcd, servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """
    A put adds a server that takes connections within a second; C{drain}
    in its value drains it while its connection goes on; a delete removes
    it once that connection ends; with etcd stopped, the servers stay and
    C{show info} counts the outage; etcd started again, the watch resumes
    from the revision it had and a new put is served within a second.
    """
    s1, s2, s3 = servers(EchoServer("s1")), servers(EchoServer("s2")), servers(EchoServer("s3"))
    sock_path = os.path.join(str(tmp_path), "admin.sock")
    be = BackendSection("web", [], extra={"servers-from": f"etcd {etcd.url} {PREFIX}"})
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "web")
    lb = balancers.start([fe], [be], global_={"stats socket": sock_path})
    assert wait_until(lambda: info(sock_path).get("EtcdWatches") == "1", 5)
    assert info(sock_path)["EtcdUnreachable"] == "0"

    # A put: served within a second.
    etcd.put(PREFIX + "s1", f"127.0.0.1:{s1.port}")
    put_at = time.monotonic()
    assert wait_until(lambda: answers(fe.port) == "s1", WITHIN, 0.02), lb.output()
    assert time.monotonic() - put_at <= WITHIN

    etcd.put(PREFIX + "s2", f"127.0.0.1:{s2.port} weight 1")
    assert wait_until(lambda: answers(fe.port) == "s2", WITHIN, 0.02), lb.output()
    assert set(names(fe.port, 4)) == {"s1", "s2"}

    # Hold a connection to s2, then drain s2 through its value.
    held = connect(fe.port)
    while read_line(held)[0] != b"s2":
        held.close()
        held = connect(fe.port)
    etcd.put(PREFIX + "s2", f"127.0.0.1:{s2.port} weight 1 drain")
    assert wait_until(lambda: show_stat(sock_path)[("web", "s2")]["status"] == "DRAIN", WITHIN)
    assert set(names(fe.port, 4)) == {"s1"}
    held.sendall(b"still here\n")
    assert read_line(held)[0] == b"still here"

    # A delete: s2 stays while its connection is open, then goes.
    etcd.delete(PREFIX + "s2")
    time.sleep(0.3)  # a removal would take a few milliseconds
    assert ("web", "s2") in show_stat(sock_path)
    held.sendall(b"and now\n")
    assert read_line(held)[0] == b"and now"
    held.close()
    assert wait_until(lambda: ("web", "s2") not in show_stat(sock_path), 3), lb.output()

    # etcd stopped: the servers stay, the outage is counted and logged once.
    before = {k: v["status"] for k, v in show_stat(sock_path).items() if k[0] == "web"}
    revision = json.loads(etcd.ctl("get", PREFIX, "--prefix", "-w", "json").stdout)["header"]["revision"]
    etcd.stop()
    assert wait_until(lambda: info(sock_path)["EtcdUnreachable"] == "1", 5), lb.output()
    time.sleep(1.5)  # a few retries fail meanwhile
    assert {k: v["status"] for k, v in show_stat(sock_path).items() if k[0] == "web"} == before
    assert set(names(fe.port, 3)) == {"s1"}
    outage = [line for line in lb.lines() if "is unreachable" in line]
    assert len(outage) == 1, outage
    assert "(etcd closed the watch); its 1 server(s) from etcd stay as last known" in outage[0]

    # etcd back: the watch resumes where it was and takes new puts.
    etcd.start()
    assert wait_until(lambda: info(sock_path)["EtcdUnreachable"] == "0", 15), lb.output()
    resumed = [line for line in lb.lines() if "answers again" in line]
    assert len(resumed) == 1, resumed
    assert f"watching {PREFIX} from revision {int(revision) + 1}." in resumed[0], resumed
    etcd.put(PREFIX + "s3", f"127.0.0.1:{s3.port}")
    assert wait_until(lambda: answers(fe.port) == "s3", WITHIN, 0.02), lb.output()
    assert set(names(fe.port, 4)) == {"s1", "s3"}


def test_reload_keeps_servers_and_watch(
    etcd: Etcd, servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """
    A reload of the same file keeps the servers from etcd and their watch
    (no new listing, no server added twice), and later puts still apply.
    """
    s1, s2 = servers(EchoServer("s1")), servers(EchoServer("s2"))
    sock_path = os.path.join(str(tmp_path), "admin.sock")
    be = BackendSection("web", [], extra={"servers-from": f"etcd {etcd.url} {PREFIX}"})
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "web")
    etcd.put(PREFIX + "s1", f"127.0.0.1:{s1.port}")
    lb = balancers.start([fe], [be], global_={"stats socket": sock_path})
    assert wait_until(lambda: answers(fe.port) == "s1", 5, 0.02), lb.output()

    admin(sock_path, "reload")
    assert wait_until(lambda: any("Reload:" in line for line in lb.lines()), 5), lb.output()
    assert set(names(fe.port, 3)) == {"s1"}
    etcd.put(PREFIX + "s2", f"127.0.0.1:{s2.port}")
    assert wait_until(lambda: answers(fe.port) == "s2", WITHIN, 0.02), lb.output()
    added = [line for line in lb.lines() if "added from etcd" in line]
    assert [("web/s1" in line, "web/s2" in line) for line in added] == [(True, False), (False, True)]
