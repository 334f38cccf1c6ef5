"""
Servers changed while twistd runs, as an operator does it over the stats
socket: C{add server}, C{del server}, C{set server ... addr}, and the
server-state file across a restart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    runtime_command,
    BackendSection,
    FrontendSection,
    ServerLine,
    connect,
    free_port,
    l4lb_path,
    read_line,
    render_config,
    run_command,
    wait_until,
)


def ask(path: str, command: str) -> str:
    """
    One command on the runtime socket at C{path}; the answer, without the
    empty line that ends it.
    """
    return runtime_command(path, command).rstrip("\n")


def greetings(port: int, count: int) -> List[bytes]:
    """
    The names the servers greet C{count} new connections with.
    """
    names = []
    for _ in range(count):
        sock = connect(port)
        names.append(read_line(sock)[0])
        sock.close()
    return names


def test_add_enable_delete_server(
    servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """
    A server added over the socket starts in maintenance and takes no
    connection; enabled, it takes its share; C{del server} is refused while
    it is ready and while it holds a connection, and accepted once it is in
    maintenance without one.
    """
    s1, s2 = servers(EchoServer("s1")), servers(EchoServer("s2"))
    sock_path = str(tmp_path / "admin.sock")
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
    balancers.start([fe], [be], global_={"stats socket": sock_path})

    assert ask(sock_path, f"add server be/s2 127.0.0.1:{s2.port} weight 1") == (
        "New server registered."
    )
    assert set(greetings(fe.port, 4)) == {b"s1"}
    bad = ask(sock_path, "add server be/s3 127.0.0.1:80 wieght 2")
    assert "unknown server option 'wieght'" in bad
    assert "Already exists" in ask(sock_path, f"add server be/s2 127.0.0.1:{s2.port}")

    assert ask(sock_path, "enable server be/s2") == ""
    assert set(greetings(fe.port, 6)) == {b"s1", b"s2"}
    assert " s2 " in ask(sock_path, "show servers state be")

    assert ask(sock_path, "del server be/s2") == (
        "Only servers in maintenance mode can be deleted."
    )
    ask(sock_path, "disable server be/s1")
    held = connect(fe.port)
    assert read_line(held)[0] == b"s2"
    ask(sock_path, "disable server be/s2")
    assert ask(sock_path, "del server be/s2") == (
        "Server still has connections attached to it, cannot remove it."
    )
    held.sendall(b"still flowing\n")
    assert read_line(held)[0] == b"still flowing"
    held.close()
    assert wait_until(
        lambda: ask(sock_path, "del server be/s2") == "Server deleted.", timeout=10
    ), "s2 was not deleted once its connection closed"
    assert " s2 " not in ask(sock_path, "show servers state be")
    ask(sock_path, "enable server be/s1")
    assert set(greetings(fe.port, 3)) == {b"s1"}


def test_set_server_addr_moves_new_connections_only(
    servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """
    C{set server be/s1 addr 127.0.0.1 port P} sends the new connections to
    the new address, while a connection opened before keeps flowing to the
    old server; the reply and the log say HAProxy's words.
    """
    old, new = servers(EchoServer("old")), servers(EchoServer("new"))
    sock_path = str(tmp_path / "admin.sock")
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", old.port)])
    lb = balancers.start([fe], [be], global_={"stats socket": sock_path})

    held = connect(fe.port)
    assert read_line(held)[0] == b"old"
    reply = ask(sock_path, f"set server be/s1 addr 127.0.0.1 port {new.port}")
    assert reply == (
        f"port changed from '{old.port}' to '{new.port}' by 'stats socket command'"
    )
    assert set(greetings(fe.port, 3)) == {b"new"}
    for turn in range(3):
        held.sendall(b"turn %d\n" % turn)
        assert read_line(held)[0] == b"turn %d" % turn
    held.close()
    assert wait_until(
        lambda: any(
            f"be/s1 changed its port from {old.port} to {new.port} by stats socket command"
            in line
            for line in lb.lines()
        ),
        timeout=5,
    ), lb.output()


def test_state_file_survives_a_restart(
    servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """
    With C{server-state-file} and C{load-server-state-from-file = global}, a
    drained server, a changed weight and a server added at run time come
    back after a restart once C{l4lb ctl --output} wrote the file.
    """
    s1, s2, s3 = servers(EchoServer("s1")), servers(EchoServer("s2")), servers(EchoServer("s3"))
    sock_path = str(tmp_path / "admin.sock")
    state_path = str(tmp_path / "servers.state")
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    be = BackendSection(
        "be",
        [ServerLine("s1", "127.0.0.1", s1.port), ServerLine("s2", "127.0.0.1", s2.port)],
    )
    text = render_config(
        [fe],
        [be],
        global_={"maxconn": "4096", "log": "stdout", "stats socket": sock_path,
                 "server-state-file": state_path},
        defaults={"load-server-state-from-file": "global"},
    )
    config = balancers.write(text)
    first = balancers.start_file(config, ["fe"])
    ask(sock_path, "set server be/s1 state drain")
    ask(sock_path, "set server be/s2 weight 7")
    ask(sock_path, f"add server be/s3 127.0.0.1:{s3.port} check inter 1s")
    ask(sock_path, "enable server be/s3")
    done = run_command(
        [l4lb_path(), "ctl", "--socket", sock_path, "--output", state_path,
         "show servers state"],
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert Path(state_path).read_text().startswith("1\n# be_id be_name srv_id")
    first.stop()
    assert wait_until(lambda: not os.path.exists(sock_path) or _refused(sock_path), timeout=10)

    balancers.start_file(config, ["fe"])
    state = {
        line.split()[3]: line.split()
        for line in ask(sock_path, "show servers state be").splitlines()[2:]
        if not line.startswith("#")
    }
    assert state["s1"][6] == "8"
    assert (state["s2"][7], state["s2"][8]) == ("7", "1")
    assert state["s3"][6] == "0"
    assert int(state["s3"][18]) == s3.port
    assert set(greetings(fe.port, 8)) == {b"s2", b"s3"}


def _refused(path: str) -> bool:
    try:
        ask(path, "help")
    except OSError:
        return True
    return False
