"""
A SIGHUP reload of a running C{twistd l4lb} applies a setting exactly as a
restart with the same file does: C{rate-limit sessions}, C{timeout udp},
C{maxsessions}, C{spread-checks}, C{tune.relay}, C{udp-responses},
C{retries} and a frontend's C{maxconn}.

Each test starts l4lb without the setting, writes it into the file and
sends SIGHUP, reads every effective setting of the running objects
(C{show settings} on the runtime API), stops, starts again from the same
file and reads them again: the two must be equal, and must differ from
what ran before the reload where the setting shows.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import connect, finish, free_port, show_stat, wait_until
from .test_admin import socat
from .test_reload import hup

#: The settings walked: (name, where it goes, the line, the keys of
#: C{show settings} that show it).
SETTINGS: List[Tuple[str, str, str, Tuple[str, ...]]] = [
    ("rate-limit sessions", "fe", "rate-limit sessions = 4", ("frontend fe: rate-limit sessions",)),
    ("timeout udp", "udp", "timeout udp = 7s", ("frontend udp: timeout udp",)),
    ("maxsessions", "udp", "maxsessions = 64", ("frontend udp: maxsessions",)),
    ("spread-checks", "global", "spread-checks = 20", ("checks be/s1: spread",)),
    ("tune.relay", "global", "tune.relay = classic", ("frontend fe: relay",)),
    ("udp-responses", "dns", "udp-responses = 1", ("frontend udp: udp-responses",)),
    ("retries", "dns", "retries = 1", ("frontend udp: retries",)),
    ("maxconn", "fe", "maxconn = 2", ("frontend fe: maxconn",)),
]


def config(sock: str, fe: int, udp: int, server: int, extra: Dict[str, str]) -> str:
    """
    The file: a TCP frontend and a UDP one, each with its backend, and
    C{extra} lines added to the sections named.
    """
    sections = {
        "global": f"stats socket = {sock}\nhard-stop-after = 2s\n",
        "defaults": "timeout connect = 2s\ntimeout client = 30s\ntimeout server = 30s\n",
        "be": f"server s1 = 127.0.0.1:{server} check inter 1s\n",
        "dns": f"mode = udp\nserver d1 = 127.0.0.1:{server}\n",
        "fe": f"bind = 127.0.0.1:{fe}\ndefault_backend = be\n",
        "udp": f"mode = udp\nbind = 127.0.0.1:{udp}\ndefault_backend = dns\n",
    }
    headers = {
        "global": "[global]",
        "defaults": "[defaults]",
        "be": "[backend be]",
        "dns": "[backend dns]",
        "fe": "[frontend fe]",
        "udp": "[frontend udp]",
    }
    return "".join(
        f"{headers[name]}\n{extra.get(name, '')}{body}" for name, body in sections.items()
    )


def settings(sock: str) -> Dict[str, str]:
    """
    C{show settings}, by key.
    """
    answer = socat(sock, "show settings")
    pairs = (line.split(" = ", 1) for line in answer.splitlines() if " = " in line)
    return {key: value for key, value in pairs}


@pytest.mark.parametrize(
    "name, where, line, keys", SETTINGS, ids=[setting[0] for setting in SETTINGS]
)
def test_reload_applies_setting_as_restart(
    servers: StartServer,
    balancers: BalancerFactory,
    tmp_path: Path,
    name: str,
    where: str,
    line: str,
    keys: Tuple[str, ...],
) -> None:
    """
    After SIGHUP with the setting written, every effective setting of the
    running objects is what a fresh start from the same file gives, and
    the setting's own entry changed from what ran before.
    """
    s1 = servers(EchoServer("s1"))
    sock = str(tmp_path / "admin.sock")
    fe, udp = free_port(), free_port()
    path = balancers.write(config(sock, fe, udp, s1.port, {}))
    lb = balancers.start_file(path, ["fe", "udp"])
    before = settings(sock)
    summary = hup(lb, path, config(sock, fe, udp, s1.port, {where: line + "\n"}))
    assert "Reload: " in summary and "no change" not in summary, summary
    reloaded = settings(sock)
    lb.stop()
    restarted_lb = balancers.start_file(path, ["fe", "udp"])
    restarted = settings(sock)
    differ = {
        key: (reloaded.get(key), restarted.get(key))
        for key in set(reloaded) | set(restarted)
        if reloaded.get(key) != restarted.get(key)
    }
    assert differ == {}, restarted_lb.output()
    for key in keys:
        assert before[key] != reloaded[key], key


def test_reloaded_maxconn_holds_connections_in_the_backlog(
    servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """
    A frontend given C{maxconn = 2} by a reload takes two connections and
    leaves the next ones waiting, as after a restart: two clients get the
    server's greeting, C{show stat} counts two, and a third gets it once
    one of the two leaves.
    """
    s1 = servers(EchoServer("s1"))
    sock = str(tmp_path / "admin.sock")
    fe, udp = free_port(), free_port()
    path = balancers.write(config(sock, fe, udp, s1.port, {}))
    lb = balancers.start_file(path, ["fe", "udp"])
    hup(lb, path, config(sock, fe, udp, s1.port, {"fe": "maxconn = 2\n"}))
    clients = [connect(fe) for _ in range(4)]
    try:
        for client in clients:
            client.settimeout(0.2)

        greeted: List[socket.socket] = []

        def count() -> bool:
            for client in clients:
                if client in greeted:
                    continue
                try:
                    if client.recv(16):
                        greeted.append(client)
                except socket.timeout:
                    pass
            return len(greeted) >= 2

        assert wait_until(count, 10)
        assert not wait_until(lambda: count() and len(greeted) > 2, 1.5)
        assert show_stat(sock)[("fe", "FRONTEND")]["scur"] == "2"
        finish(greeted[0])
        assert wait_until(lambda: count() and len(greeted) == 3, 10)
    finally:
        for client in clients:
            client.close()


def listen_backlog(port: int) -> int:
    """
    The listen backlog the kernel holds for C{127.0.0.1:port} (C{ss}'s
    C{Send-Q} of a listening socket).
    """
    done = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 0, f"ss (iproute2) is needed: {done.stderr}"
    (line,) = done.stdout.splitlines()
    return int(line.split()[2])


def test_reloaded_backlog_applies_to_a_kept_bind(
    servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """
    A frontend's C{backlog} changed by a reload applies to its bind that
    stays (same socket, no rebind), as a restart would.
    """
    s1 = servers(EchoServer("s1"))
    sock = str(tmp_path / "admin.sock")
    fe, udp = free_port(), free_port()
    path = balancers.write(config(sock, fe, udp, s1.port, {"fe": "backlog = 16\n"}))
    lb = balancers.start_file(path, ["fe", "udp"])
    assert listen_backlog(fe) == 16
    hup(lb, path, config(sock, fe, udp, s1.port, {"fe": "backlog = 64\n"}))
    assert listen_backlog(fe) == 64
    lb.stop()
    balancers.start_file(path, ["fe", "udp"])
    assert listen_backlog(fe) == 64
