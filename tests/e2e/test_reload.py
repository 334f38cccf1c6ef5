"""
Reloading the configuration of a running C{twistd l4lb}: SIGHUP and the
runtime API's C{reload}, with clients streaming through it all along.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    Balancer,
    BackendSection,
    FrontendSection,
    ServerLine,
    connect,
    finish,
    free_port,
    l4lb_path,
    read_exactly,
    read_line,
    render_config,
    run_command,
    wait_until,
)
from .test_admin import socat
from .test_resources import settled_fd_count

#: Concurrent streaming clients.
CLIENTS = 50
#: Reloads while they stream.
RELOADS = 20
#: Bytes each client sends and reads back per round.
ROUND = 2048
#: The longest a streaming client runs, in seconds.
STREAM_LIMIT = 90.0
#: The most rounds a streaming client makes.
MAX_ROUNDS = 100_000


class Streamer(threading.Thread):
    """
    A client that keeps sending rounds of bytes unique to it and checks
    that each comes back whole and in order, until told to stop.

    @ivar rounds: Rounds completed.
    @ivar server: The server it reached.
    @ivar error: What went wrong, or C{None}.
    """

    def __init__(self, index: int, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.index = index
        self.port = port
        self.stop = stop
        self.rounds = 0
        self.server = ""
        self.error: Optional[str] = None

    def run(self) -> None:
        deadline = time.monotonic() + STREAM_LIMIT
        try:
            sock = connect(self.port)
            self.server = read_line(sock)[0].decode()
            while not self.stop.is_set() and time.monotonic() < deadline:
                if self.rounds >= MAX_ROUNDS:
                    break
                mark = f"{self.index}:{self.rounds}:".encode()
                payload = (mark * (ROUND // len(mark) + 1))[:ROUND]
                sock.sendall(payload)
                echoed = read_exactly(sock, ROUND)
                if echoed != payload:
                    self.error = f"round {self.rounds}: bytes lost or out of order"
                    break
                self.rounds += 1
            finish(sock)
        except Exception as e:  # the failure is the result
            self.error = f"round {self.rounds}: {e!r}"


def server_of(port: int) -> str:
    """
    The name of the server a new connection to C{port} reaches.
    """
    sock = connect(port)
    try:
        return read_line(sock)[0].decode()
    finally:
        finish(sock)


def refused(port: int) -> bool:
    """
    Whether nothing listens on C{port}.
    """
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def reload_lines(lb: Balancer) -> List[str]:
    """
    The reload summaries the balancer logged so far.
    """
    return [line for line in lb.lines() if "Reload: " in line or "Reload rejected" in line]


def hup(lb: Balancer, path: Path, text: str) -> str:
    """
    Write C{text} to the balancer's file, send SIGHUP and return the
    summary it logs.
    """
    seen = len(reload_lines(lb))
    path.write_text(text)
    os.kill(lb.pid, signal.SIGHUP)

    def summarised() -> bool:
        return any(
            "Reload: " in line and line.rstrip().endswith(".") or "Reload rejected" in line
            for line in reload_lines(lb)[seen:]
        )

    assert wait_until(summarised, 10), lb.output()
    return [
        line
        for line in reload_lines(lb)[seen:]
        if line.rstrip().endswith(".") and ("Reload: " in line or "Reload rejected" in line)
    ][-1]


def test_sighup_reloads_keep_streaming_clients(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    Twenty SIGHUP reloads (weights changed, a server added and removed, a
    frontend added and removed, once an invalid file) while 50 clients
    stream: no client connection fails or loses or reorders a byte, each
    reload's changes hold for the next new connections, the invalid file
    is rejected and logged, and the descriptors return to their count
    before the clients.
    """
    s1, s2, s3 = (servers(EchoServer(name)) for name in ("s1", "s2", "s3"))
    port, extra_port = free_port(), free_port()

    def config(weights: Sequence[int] = (1, 1), with_s3: bool = False, fe2: bool = False) -> str:
        lines = [
            ServerLine("s1", "127.0.0.1", s1.port, f"weight {weights[0]}"),
            ServerLine("s2", "127.0.0.1", s2.port, f"weight {weights[1]}"),
        ]
        if with_s3:
            lines.append(ServerLine("s3", "127.0.0.1", s3.port))
        frontends = [FrontendSection("fe", "127.0.0.1", port, "be")]
        if fe2:
            frontends.append(FrontendSection("fe2", "127.0.0.1", extra_port, "be"))
        return render_config(frontends, [BackendSection("be", lines)])

    path = balancers.write(config())
    lb = balancers.start_file(path, ["fe"])
    assert server_of(port) in ("s1", "s2")
    before = settled_fd_count(lb)

    # Half the clients start before the reloads, half once s3 was added,
    # so that some stream through s3 while later reloads remove it.
    stop = threading.Event()
    clients = [Streamer(i, port, stop) for i in range(CLIENTS)]
    for client in clients[: CLIENTS // 2]:
        client.start()
    assert wait_until(lambda: all(c.rounds > 0 for c in clients[: CLIENTS // 2]), 30)

    for step in range(RELOADS):
        kind = step % 4
        if step == 10:
            summary = hup(lb, path, config() + "[frontend broken]\nbind = 127.0.0.1:1\n")
            assert "Reload rejected" in summary
            assert any("default_backend" in line for line in lb.lines()), lb.output()
            assert server_of(port) in ("s1", "s2")
        if kind == 0:
            summary = hup(lb, path, config(weights=(1 + step % 3, 3)))
            assert " changed" in summary and "server" in summary, summary
            assert {server_of(port) for _ in range(8)} == {"s1", "s2"}
        elif kind == 1:
            summary = hup(lb, path, config(with_s3=True))
            assert "1 server added" in summary, summary
            assert "s3" in {server_of(port) for _ in range(6)}
            if step == 1:
                for client in clients[CLIENTS // 2 :]:
                    client.start()
                assert wait_until(lambda: all(c.rounds > 0 for c in clients), 30)
        elif kind == 2:
            summary = hup(lb, path, config(fe2=True))
            assert "1 server removed" in summary and "1 frontend added" in summary, summary
            assert "s3" not in {server_of(port) for _ in range(6)}
            assert server_of(extra_port) in ("s1", "s2")
        else:
            summary = hup(lb, path, config())
            assert "1 frontend removed" in summary, summary
            assert wait_until(lambda: refused(extra_port), 5)

    rounds_before_stop = [c.rounds for c in clients]
    assert wait_until(lambda: all(c.rounds > r for c, r in zip(clients, rounds_before_stop)), 30)
    stop.set()
    for client in clients:
        client.join(STREAM_LIMIT)
    errors = [f"client {c.index}: {c.error}" for c in clients if c.error or c.is_alive()]
    assert not errors, "\n".join(errors[:10])
    assert {c.server for c in clients} == {"s1", "s2", "s3"}
    assert wait_until(lambda: lb.fd_count() == before, 10), (
        f"{lb.fd_count()} descriptors open, {before} before the clients"
    )


def test_reload_command_through_socket(
    servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """
    C{reload} on the stats socket (socat, and C{l4lb ctl reload}) answers
    what changed and applies it, or answers the errors and changes nothing.
    """
    s1 = servers(EchoServer("s1"))
    sock_path = str(tmp_path / "admin.sock")
    port, extra_port = free_port(), free_port()
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
    fe = FrontendSection("fe", "127.0.0.1", port, "be")
    fe2 = FrontendSection("fe2", "127.0.0.1", extra_port, "be")
    glob = {"stats socket": sock_path}
    path = balancers.write(render_config([fe], [be], global_=glob))
    lb = balancers.start_file(path, ["fe"])

    path.write_text(render_config([fe, fe2], [be], global_=glob))
    answer = socat(sock_path, "reload")
    assert answer.strip().splitlines()[-1] == "Reload: 1 frontend added.", answer
    assert server_of(extra_port) == "s1"

    path.write_text(render_config([fe, fe2], [be], global_=glob) + "[backend be]\n")
    done = run_command([l4lb_path(), "ctl", "--socket", sock_path, "reload"], str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"{path}:" in done.stdout and "Reload rejected" in done.stdout, done.stdout
    assert server_of(extra_port) == "s1" and server_of(port) == "s1"
    assert any("Reload rejected" in line for line in lb.lines())


def test_reload_with_a_truncated_file_is_rejected(
    servers: StartServer, balancers: BalancerFactory, tmp_path: Path
) -> None:
    """
    A SIGHUP while the file is cut short (its globals written, its
    frontend not yet), and the runtime API's C{reload} with an empty file,
    are rejected in HAProxy's words: the port keeps accepting and an
    established connection keeps relaying.
    """
    s1 = servers(EchoServer("s1"))
    sock_path = str(tmp_path / "admin.sock")
    port = free_port()
    glob = {"stats socket": sock_path}
    text = render_config(
        [FrontendSection("fe", "127.0.0.1", port, "be")],
        [BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])],
        global_=glob,
    )
    path = balancers.write(text)
    lb = balancers.start_file(path, ["fe"])
    sock = connect(port)
    try:
        assert read_line(sock)[0] == b"s1"

        summary = hup(lb, path, text[: text.index("[frontend fe]")])
        assert "Reload rejected" in summary, summary
        assert any(
            f"{path}: Configuration file has no error but will not start (no listener)" in line
            for line in lb.lines()
        ), lb.output()
        assert not refused(port)
        assert server_of(port) == "s1"
        sock.sendall(b"still here")
        assert read_exactly(sock, len(b"still here")) == b"still here"

        path.write_text("")
        answer = socat(sock_path, "reload")
        assert "(no listener)" in answer and "Reload rejected" in answer, answer
        assert server_of(port) == "s1"
        sock.sendall(b"and here")
        assert read_exactly(sock, len(b"and here")) == b"and here"
    finally:
        finish(sock)


def test_server_back_before_hard_stop_after_keeps_its_streams(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    Six clients stream over two servers; a SIGHUP removes s2 and another
    adds it back (same name, same address) within C{hard-stop-after}: none
    of the six streams is cut, not at that deadline either, and no
    connection is logged C{KD}.
    """
    s1, s2 = servers(EchoServer("s1")), servers(EchoServer("s2"))
    port = free_port()
    grace = 3.0

    def config(with_s2: bool = True) -> str:
        lines = [ServerLine("s1", "127.0.0.1", s1.port)]
        if with_s2:
            lines.append(ServerLine("s2", "127.0.0.1", s2.port))
        return render_config(
            [FrontendSection("fe", "127.0.0.1", port, "be")],
            [BackendSection("be", lines)],
            global_={"hard-stop-after": f"{grace:g}s"},
        )

    path = balancers.write(config())
    lb = balancers.start_file(path, ["fe"])
    stop = threading.Event()
    clients = [Streamer(i, port, stop) for i in range(6)]
    try:
        for client in clients:
            client.start()
        assert wait_until(lambda: all(c.rounds > 0 for c in clients), 30)
        assert sorted(c.server for c in clients) == ["s1"] * 3 + ["s2"] * 3

        removed_at = time.monotonic()
        assert "1 server removed" in hup(lb, path, config(with_s2=False))
        assert "1 server added" in hup(lb, path, config())
        assert time.monotonic() - removed_at < grace, "the reloads took too long"
        assert any("s2 is back" in line for line in lb.lines()), lb.output()

        # Past the first reload's deadline, every stream still moves.
        assert wait_until(lambda: time.monotonic() > removed_at + grace + 1.0, grace + 5)
        rounds = [c.rounds for c in clients]
        assert wait_until(lambda: all(c.rounds > r for c, r in zip(clients, rounds)), 30), [
            c.error for c in clients
        ]
    finally:
        stop.set()
        for client in clients:
            client.join(STREAM_LIMIT)
    errors = [f"client {c.index} ({c.server}): {c.error}" for c in clients if c.error]
    assert not errors, "\n".join(errors)
    assert not any("hard-stop-after reached" in line for line in lb.lines()), lb.output()
    records = lb.wait_for_records(6)
    assert [r.termination for r in records] == ["--"] * 6, [r.line for r in records]
