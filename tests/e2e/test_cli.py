"""
l4lb's command line as a user meets it: the twistd plugin listing, config
checking (C{--check} and C{l4lb check}), and refusing to start on a bad
config.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import List, Tuple

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    Balancer,
    BackendSection,
    FrontendSection,
    ServerLine,
    echo_once,
    free_port,
    l4lb_path,
    port_is_free,
    render_config,
    run_command,
    twistd_path,
)

BAD_CONFIG = """\
[global]
maxconn = 4096
log = stdout

[defaults]
mode = tcp
timeout connect = 2s
timeout client = 30 parsecs
timeout server = 30s
frobnicate = yes

[frontend fe]
bind = 127.0.0.1:{port}
default_backend = nowhere

[backend be]
balance = roundrobin
server s1 = 127.0.0.1:{server_port}
"""


def bad_config(tmp_path: Path) -> Tuple[Path, int, List[int]]:
    """
    Write a config with three errors: a bad time value, an unknown key and
    a frontend whose backend does not exist.

    @return: The file, the frontend's port and the error lines (1-based).
    """
    port = free_port()
    text = BAD_CONFIG.format(port=port, server_port=free_port())
    lines = text.splitlines()
    errors = [
        lines.index(marker) + 1
        for marker in (
            "timeout client = 30 parsecs",
            "frobnicate = yes",
            "default_backend = nowhere",
        )
    ]
    path = tmp_path / "bad.ini"
    path.write_text(text)
    return path, port, errors


def assert_errors_located(path: Path, output: str, lines: List[int]) -> None:
    """
    Every error line number appears in C{output} as C{FILE:LINE:}.
    """
    for line in lines:
        where = re.compile(rf"(?:^|\s|/){re.escape(path.name)}:{line}:", re.M)
        assert where.search(output), f"no {path.name}:{line}: in output:\n{output}"


def test_twistd_lists_l4lb(rundir: Path) -> None:
    """
    C{twistd --help} lists the C{l4lb} plugin.
    """
    result = run_command([twistd_path(), "--help"], str(rundir))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\s+l4lb\s", result.stdout, re.M), result.stdout


def test_check_accepts_valid_config(tmp_path: Path, rundir: Path) -> None:
    """
    A valid config passes C{--check} and C{l4lb check} with exit 0, and
    checking binds nothing.
    """
    port = free_port()
    text = render_config(
        [FrontendSection("fe", "127.0.0.1", port, "be")],
        [BackendSection("be", [ServerLine("s1", "127.0.0.1", free_port())])],
    )
    path = tmp_path / "good.ini"
    path.write_text(text)
    for argv in (
        [twistd_path(), "-n", "--pidfile=", "l4lb", "--config", str(path), "--check"],
        [l4lb_path(), "check", str(path)],
    ):
        result = run_command(argv, str(rundir))
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"$ {' '.join(argv)}\n{output}"
        assert "Configuration file is valid" in output, output
    assert port_is_free(port)


def test_check_reports_every_error(tmp_path: Path, rundir: Path) -> None:
    """
    A config with an unknown key, a bad time value and a missing backend
    fails C{--check} and C{l4lb check} with every error given as FILE:LINE.
    """
    path, port, lines = bad_config(tmp_path)
    for argv in (
        [twistd_path(), "-n", "--pidfile=", "l4lb", "--config", str(path), "--check"],
        [l4lb_path(), "check", str(path)],
    ):
        result = run_command(argv, str(rundir))
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"$ {' '.join(argv)}\n{output}"
        assert_errors_located(path, output, lines)
        assert "Configuration file is valid" not in output
    assert port_is_free(port)


def test_bad_config_does_not_start(
    tmp_path: Path, rundir: Path, balancers: BalancerFactory
) -> None:
    """
    Starting with a config that has errors exits non-zero, prints every
    error with file and line, and binds nothing.
    """
    path, port, lines = bad_config(tmp_path)
    lb = Balancer.l4lb(str(path), str(rundir), ["fe"])
    balancers.started.append(lb)
    lb.start()
    assert lb.process is not None
    try:
        status = lb.process.wait(15)
    except subprocess.TimeoutExpired:
        lb.kill()
        lb.fail("still running 15s after start with a bad config")
    lb.join_output()
    output = "\n".join(lb.lines() + lb.stderr_lines())
    assert status != 0, output
    assert_errors_located(path, output, lines)
    assert not any(re.search(r"\bProxy \S+ started\.", line) for line in lb.lines()), output
    assert port_is_free(port)


def test_sigterm_stops_cleanly(servers: StartServer, balancers: BalancerFactory) -> None:
    """
    SIGTERM stops a running balancer with exit status 0 and releases its
    port.
    """
    s1 = servers(EchoServer("s1"))
    port = free_port()
    lb = balancers.start(
        [FrontendSection("fe", "127.0.0.1", port, "be")],
        [BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])],
    )
    assert echo_once(port, b"before stop").echoed == b"before stop"
    lb.wait_for_records(1)
    assert lb.stop() == 0
    assert port_is_free(port)


def test_bind_failure_exits_with_the_reason(
    tmp_path: Path, rundir: Path, balancers: BalancerFactory
) -> None:
    """
    A frontend that cannot bind (its second address is taken) makes l4lb
    exit 1 with one line naming the frontend, the address and the reason,
    and the first address, bound already, is released again.
    """
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    busy = taken.getsockname()[1]
    first = free_port()
    text = render_config(
        [FrontendSection("fe", "127.0.0.1", first, "be")],
        [BackendSection("be", [ServerLine("s1", "127.0.0.1", free_port())])],
    ).replace(f"bind = 127.0.0.1:{first}", f"bind = 127.0.0.1:{first}, 127.0.0.1:{busy}")
    assert f"127.0.0.1:{busy}" in text
    path = tmp_path / "busy.ini"
    path.write_text(text)
    lb = Balancer.l4lb(str(path), str(rundir), ["fe"])
    balancers.started.append(lb)
    try:
        lb.start()
        assert lb.process is not None
        status = lb.process.wait(15)
        lb.join_output()
        output = "\n".join(lb.lines() + lb.stderr_lines())
        assert status == 1, output
        assert (
            f"frontend 'fe' cannot listen on '127.0.0.1:{busy}': Address already in use"
            in output
        ), output
        assert "Traceback" not in output
        assert port_is_free(first)
    finally:
        taken.close()


#: HAProxy's words for a file without errors that listens nowhere.
NO_LISTENER = "Configuration file has no error but will not start (no listener)"


def test_check_refuses_a_file_without_listener(tmp_path: Path, rundir: Path) -> None:
    """
    An empty file, and one cut short after its global settings, fail
    C{l4lb check} and C{--check} with HAProxy's message and exit status 2,
    as C{haproxy -c} does; nothing says the file is valid.
    """
    cut = render_config([], [BackendSection("be", [ServerLine("s1", "127.0.0.1", free_port())])])
    for name, text in (("empty.ini", ""), ("cut.ini", cut)):
        path = tmp_path / name
        path.write_text(text)
        for argv in (
            [l4lb_path(), "check", str(path)],
            [twistd_path(), "-n", "--pidfile=", "l4lb", "--config", str(path), "--check"],
        ):
            result = run_command(argv, str(rundir))
            output = result.stdout + result.stderr
            assert result.returncode == 2, f"$ {' '.join(argv)}\n{output}"
            assert f"{path}: {NO_LISTENER}" in result.stderr, output
            assert "Configuration file is valid" not in output


def test_file_without_listener_does_not_start(
    tmp_path: Path, rundir: Path, balancers: BalancerFactory
) -> None:
    """
    Starting with a file that has no frontend exits 1 with HAProxy's
    message, and opens nothing: not even the runtime API's socket it
    names.
    """
    sock_path = tmp_path / "admin.sock"
    text = render_config(
        [],
        [BackendSection("be", [ServerLine("s1", "127.0.0.1", free_port())])],
        global_={"stats socket": str(sock_path)},
    )
    path = tmp_path / "cut.ini"
    path.write_text(text)
    lb = Balancer.l4lb(str(path), str(rundir), [])
    balancers.started.append(lb)
    lb.start()
    assert lb.process is not None
    try:
        status = lb.process.wait(15)
    except subprocess.TimeoutExpired:
        lb.kill()
        lb.fail("still running 15s after start with a file without listener")
    lb.join_output()
    output = "\n".join(lb.lines() + lb.stderr_lines())
    assert status == 1, output
    assert f"{path}: {NO_LISTENER}" in output
    assert "Traceback" not in output
    assert not sock_path.exists()
