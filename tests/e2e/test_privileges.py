"""
Running as root only to bind: C{twistd --uid/--gid} after binding a port
below 1024, the file-descriptor limit raised at start, and the listen
backlog of each bind as the kernel reports it.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, List, Sequence

import pytest

from .backends import EchoServer
from .conftest import StartServer
from .harness import (
    Balancer,
    BackendSection,
    FrontendSection,
    ServerLine,
    echo_once,
    free_port,
    port_is_free,
    render_config,
    subprocess_env,
    twistd_path,
)

USER = "nobody"
GROUP = "nogroup"


def require_root() -> None:
    """
    Fail (not skip) when not root: dropping privileges cannot be shown
    otherwise, and CI runs as root.
    """
    if os.geteuid() != 0:
        pytest.fail("binding a port below 1024 and --uid/--gid need root: run as root (CI does)")


def user_ids() -> "tuple[int, int]":
    """
    The uid of L{USER} and the gid of L{GROUP}.
    """
    return pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """
    A directory under /tmp that the unprivileged user can read (pytest's
    own temporary directories are private to root).
    """
    path = Path(tempfile.mkdtemp(prefix="l4lb-priv-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def privileged_port(host: str = "127.0.0.1") -> int:
    """
    A free port below 1024 on C{host}.
    """
    for port in range(1023, 900, -1):
        if port_is_free(port, host):
            return port
    pytest.fail("no free port between 901 and 1023 on 127.0.0.1")


def ids_line(pid: int, name: str) -> List[int]:
    """
    The four ids (real, effective, saved, filesystem) of C{Uid:} or
    C{Gid:} in C{/proc/PID/status}, or the list of C{Groups:}.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return [int(v) for v in line.split()[1:]]
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def start(argv: Sequence[str], cwd: Path, frontends: Sequence[str]) -> Balancer:
    """
    Start a balancer from a full command line and wait until it is ready.
    """
    ready = [rf"\bProxy {re.escape(name)} started\." for name in frontends]
    return Balancer(argv, str(cwd), ready).start().wait_ready()


def twistd_argv(config: Path, *before: str) -> List[str]:
    """
    C{twistd -n --pidfile= [OPTIONS] l4lb --config FILE}.
    """
    return [twistd_path(), "-n", "--pidfile=", *before, "l4lb", "--config", str(config)]


def test_bind_privileged_port_then_run_as_nobody(
    servers: StartServer, public_dir: Path
) -> None:
    """
    Started as root with C{--uid nobody --gid nogroup}, l4lb listens on a
    port below 1024, runs with real and effective ids of nobody (no root
    group left), balances through that port, hands its runtime API socket
    to nobody (so it can serve it and remove it when stopping), and stops
    cleanly.
    """
    require_root()
    uid, gid = user_ids()
    run = public_dir / "run"
    run.mkdir()
    os.chown(run, uid, gid)
    sock = run / "admin.sock"
    s1 = servers(EchoServer("s1"))
    s2 = servers(EchoServer("s2"))
    port = privileged_port()
    text = render_config(
        [FrontendSection("fe", "127.0.0.1", port, "be")],
        [BackendSection("be", [ServerLine("s1", s1.host, s1.port), ServerLine("s2", s2.host, s2.port)])],
        global_={"stats socket": f"{sock} mode 660"},
    )
    config = public_dir / "lb.ini"
    config.write_text(text)
    config.chmod(0o644)
    lb = start(twistd_argv(config, "--uid", USER, "--gid", GROUP), public_dir, ["fe"])
    try:
        names = [echo_once(port, b"ping").server for _ in range(4)]
        assert sorted(names) == ["s1", "s1", "s2", "s2"], lb.output()
        assert ids_line(lb.pid, "Uid") == [uid] * 4
        assert ids_line(lb.pid, "Gid") == [gid] * 4
        assert 0 not in ids_line(lb.pid, "Groups")
        info = os.stat(sock)
        assert (info.st_uid, info.st_gid) == (uid, gid)
        assert stat.S_IMODE(info.st_mode) == 0o660
        answer = subprocess.run(
            ["socat", "stdio", f"UNIX-CONNECT:{sock}"],
            input="show info\n",
            capture_output=True,
            text=True,
            timeout=15,
            env=subprocess_env(),
        )
        assert f"Pid: {lb.pid}" in answer.stdout, answer
    finally:
        status = lb.stop()
    assert status == 0
    assert not sock.exists(), "the unprivileged process could not remove its socket"
    assert not any("Traceback" in line for line in lb.lines() + lb.stderr_lines()), lb.output()


def test_nofile_soft_limit_is_raised_and_too_small_a_limit_is_reported(
    servers: StartServer, public_dir: Path
) -> None:
    """
    Started with a soft limit of 1024 and a hard limit of 4096, l4lb runs
    with 4096 for both, and warns that maxconn 4000 needs 8064 descriptors.
    """
    if shutil.which("prlimit") is None:
        pytest.fail("prlimit (util-linux) is needed for this test")
    s1 = servers(EchoServer("s1"))
    port = free_port()
    text = render_config(
        [FrontendSection("fe", "127.0.0.1", port, "be")],
        [BackendSection("be", [ServerLine("s1", s1.host, s1.port)])],
        global_={"maxconn": "4000"},
    )
    config = public_dir / "lb.ini"
    config.write_text(text)
    argv = ["prlimit", "--nofile=1024:4096", *twistd_argv(config)]
    lb = start(argv, public_dir, ["fe"])
    try:
        with open(f"/proc/{lb.pid}/limits") as f:
            limits = [line for line in f if line.startswith("Max open files")]
        assert limits[0].split()[3:5] == ["4096", "4096"], limits
        assert echo_once(port, b"x").server == "s1"
        output = lb.lines() + lb.stderr_lines()
        assert any("File-descriptor limit raised from 1024 to 4096." in line for line in output)
        warnings = [line for line in output if "maxconn 4000 needs 8064 file descriptors" in line]
        assert warnings and "the limit is 4096" in warnings[0], lb.output()
    finally:
        lb.stop()


def listen_queue(port: int) -> int:
    """
    The backlog of the socket listening on C{127.0.0.1:port}, as C{ss}
    shows it (its Send-Q column for a listening socket).
    """
    done = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=15
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()]
    assert len(rows) == 1, done.stdout
    return int(rows[0][2])


def test_listen_backlog_as_the_kernel_reports_it(
    servers: StartServer, public_dir: Path
) -> None:
    """
    A bind's C{backlog N} option, the frontend's C{backlog} key, and the
    frontend's C{maxconn} (when neither is set) become the listening
    sockets' backlog; Twisted's default of 50 is never used.
    """
    if shutil.which("ss") is None:
        pytest.fail("ss (iproute2) is needed for this test")
    s1 = servers(EchoServer("s1"))
    ports = [free_port() for _ in range(3)]
    backend = BackendSection("be", [ServerLine("s1", s1.host, s1.port)])
    frontends = [
        FrontendSection("keyed", "127.0.0.1", ports[0], "be", {"backlog": "123"}),
        FrontendSection(
            "optioned",
            "127.0.0.1",
            ports[1],
            "be",
            {"backlog": "123", "bind": f"127.0.0.1:{ports[1]} backlog 77"},
        ),
        FrontendSection("limited", "127.0.0.1", ports[2], "be", {"maxconn": "300"}),
    ]
    config = public_dir / "lb.ini"
    config.write_text(render_config(frontends, [backend]))
    lb = start(twistd_argv(config), public_dir, [fe.name for fe in frontends])
    try:
        assert [listen_queue(p) for p in ports] == [123, 77, 300]
        assert all(echo_once(p, b"x").server == "s1" for p in ports)
    finally:
        lb.stop()
