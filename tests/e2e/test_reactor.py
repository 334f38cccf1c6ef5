"""
l4lb under C{twistd --reactor=l4lb-epoll}: the reactor plugin is found, the
process runs on L{l4lb.reactor.L4lbEPollReactor}, and relays bytes intact
on both data paths.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .backends import EchoServer, HashServer, TRAILER_SIZE, pattern_digest
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    echo_once,
    free_port,
    hash_exchange,
    render_config,
    run_command,
    twistd_path,
    wait_until,
)

MiB = 1 << 20


def test_relays_intact_on_l4lb_epoll(
    servers: StartServer, balancers: BalancerFactory, both_relays: str
) -> None:
    """
    With C{--reactor=l4lb-epoll}, twistd reports l4lb's reactor class;
    8 MiB each way through the relay arrive intact (SHA-256 equal at both
    ends), half-closes included; short echo connections alternate between
    two servers; start-up objects were frozen out of the garbage
    collector's sight; and the process stops cleanly on SIGTERM with nothing
    unhandled in its output (checked by the C{balancers} fixture).
    """
    balancers.reactor = "l4lb-epoll"
    size = 8 * MiB
    hasher = servers(HashServer(reply_size=size, seed=5))
    e1, e2 = servers(EchoServer("e1")), servers(EchoServer("e2"))
    hash_be = BackendSection("hb", [ServerLine("h", "127.0.0.1", hasher.port)])
    echo_be = BackendSection(
        "eb", [ServerLine("e1", "127.0.0.1", e1.port), ServerLine("e2", "127.0.0.1", e2.port)]
    )
    hash_fe = FrontendSection("hf", "127.0.0.1", free_port(), "hb")
    echo_fe = FrontendSection("ef", "127.0.0.1", free_port(), "eb")
    lb = balancers.start([hash_fe, echo_fe], [hash_be, echo_be])

    printed = lb.lines() + lb.stderr_lines()
    assert any("L4lbEPollReactor" in line for line in printed), lb.output()
    frozen = re.compile(r"Froze \d+ start-up objects")
    assert wait_until(lambda: any(frozen.search(line) for line in lb.lines())), lb.output()
    for seed in (1, 2):
        ex = hash_exchange(hash_fe.port, send_size=size, reply_size=size, seed=seed)
        assert ex.server_received_digest == ex.sent_digest == pattern_digest(size, seed)
        assert ex.received == size
        assert ex.received_digest == ex.server_sent_digest == pattern_digest(size, 5)
    names = []
    for i in range(6):
        result = echo_once(echo_fe.port, b"ping %d" % i)
        assert result.echoed == b"ping %d" % i
        names.append(result.server)
    assert set(names) == {"e1", "e2"}
    records = lb.wait_for_records(8)
    hashed = [r for r in records if r.frontend == "hf"]
    assert [(r.termination, r.bytes) for r in hashed] == [("--", size + TRAILER_SIZE)] * 2


def test_reactor_is_listed_by_twistd(rundir: Path) -> None:
    """
    C{twistd --help-reactors} lists C{l4lb-epoll} from the installed
    plugin dropin.
    """
    out = run_command([twistd_path(), "--help-reactors"], str(rundir))
    assert out.returncode == 0, out.stderr
    assert any(line.split()[:1] == ["l4lb-epoll"] for line in out.stdout.splitlines()), out.stdout


@pytest.mark.parametrize("name", ["l4lb-epoll", "epoll"])
def test_check_runs_under_either_reactor(rundir: Path, tmp_path: Path, name: str) -> None:
    """
    C{--check} with C{--reactor} validates as without it: a valid file exits
    0 under l4lb's reactor and Twisted's own.
    """
    config = tmp_path / "lb.ini"
    be = BackendSection("be", [ServerLine("s", "127.0.0.1", free_port())])
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    config.write_text(render_config([fe], [be]))
    out = run_command(
        [twistd_path(), "-n", "--pidfile=", f"--reactor={name}", "l4lb", "--config", str(config), "--check"],
        str(rundir),
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    "given, expected",
    [(None, "L4lbEPollReactor"), ("epoll", "twisted.internet.epollreactor.EPollReactor")],
)
def test_default_reactor_is_l4lbs(
    servers: StartServer, balancers: BalancerFactory, given: str, expected: str
) -> None:
    """
    C{twistd l4lb} without C{--reactor} runs on l4lb's reactor (the fast
    path is what the documented command runs); a reactor named on the
    command line is kept.  Either way short connections are relayed.
    """
    balancers.reactor = given
    echo = servers(EchoServer("e1"))
    be = BackendSection("eb", [ServerLine("e1", "127.0.0.1", echo.port)])
    fe = FrontendSection("ef", "127.0.0.1", free_port(), "eb")
    lb = balancers.start([fe], [be])
    printed = lb.lines() + lb.stderr_lines()
    chosen = [line for line in printed if "reactor class:" in line]
    assert chosen and expected in chosen[0], lb.output()
    for i in range(4):
        assert echo_once(fe.port, b"hello %d" % i).echoed == b"hello %d" % i
