"""
Tests of the end-to-end harness itself: the tcplog parser, the config
writer, the backend servers (spoken to directly) and the process wrapper
(around Twisted's own port forwarder, which needs nothing from l4lb).
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from .backends import (
    CloseFirstServer,
    EchoServer,
    HashServer,
    StreamServer,
    pattern,
    pattern_digest,
)
from .conftest import StartServer
from .harness import (
    BackendSection,
    Balancer,
    FrontendSection,
    ServerLine,
    abort,
    connect,
    echo_once,
    free_port,
    hash_exchange,
    parse_tcplog,
    port_is_free,
    read_line,
    receive_until_eof,
    render_config,
    twistd_path,
    wait_until,
)


def test_parse_reference_line() -> None:
    """
    The tcplog example of HAProxy's manual parses into its fields.
    """
    r = parse_tcplog(
        "127.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0"
    )
    assert r is not None
    assert (r.client_ip, r.client_port) == ("127.0.1.2", 33313)
    assert r.accept_date == "06/Feb/2009:12:12:51.443"
    assert (r.frontend, r.backend, r.server) == ("fnt", "bck", "srv1")
    assert (r.tw, r.tc, r.tt, r.bytes) == (0, 0, 5007, 212)
    assert r.termination == "--"
    assert (r.actconn, r.feconn, r.beconn, r.srv_conn) == (0, 0, 0, 0)
    assert (r.retries, r.redispatched) == (3, False)
    assert (r.srv_queue, r.backend_queue) == (0, 0)


def test_parse_variants() -> None:
    """
    The parser takes a log prefix, IPv6 clients, C{<NOSRV>}, C{-1} timers and
    redispatched retries (C{+N}); other lines give C{None}.
    """
    r = parse_tcplog(
        "2026-11-28T12:00:00+0000 [l4lb] ::1:40000 [28/Nov/2026:12:00:00.001]"
        " fe be/<NOSRV> -1/-1/3002 0 SC 1/1/0/0/+3 0/0"
    )
    assert r is not None
    assert (r.client_ip, r.client_port) == ("::1", 40000)
    assert r.server == "<NOSRV>"
    assert (r.tw, r.tc, r.tt) == (-1, -1, 3002)
    assert r.termination == "SC"
    assert (r.retries, r.redispatched) == (3, True)
    assert parse_tcplog("2026-11-28T12:00:00+0000 [-] Proxy fe started.") is None
    assert parse_tcplog("") is None


def test_render_config() -> None:
    """
    The config writer produces the sections and lines l4lb reads.
    """
    text = render_config(
        [FrontendSection("fe", "::1", 8080, "be")],
        [
            BackendSection(
                "be",
                [ServerLine("s1", "127.0.0.1", 1, "weight 1"), ServerLine("s2", "::1", 2)],
            )
        ],
        defaults={"option redispatch": "true"},
    )
    lines = text.splitlines()
    assert lines[0] == "[global]"
    assert "log = stdout" in lines
    assert "option redispatch = true" in lines
    assert "bind = [::1]:8080" in lines
    assert "default_backend = be" in lines
    assert "server s1 = 127.0.0.1:1 weight 1" in lines
    assert "server s2 = [::1]:2" in lines


def test_pattern_is_deterministic() -> None:
    """
    The same seed gives the same bytes, in any chunking.
    """
    data = b"".join(pattern(3_000_001, 5))
    assert len(data) == 3_000_001
    assert data == b"".join(pattern(3_000_001, 5, chunk=4096))
    assert data != b"".join(pattern(3_000_001, 6))
    assert len(pattern_digest(10, 5)) == 32


def test_free_port_refuses() -> None:
    """
    A port from L{free_port} is bindable and refuses connections.
    """
    port = free_port()
    assert port_is_free(port)
    with pytest.raises(ConnectionRefusedError):
        connect(port, timeout=5)


def test_backends_directly(servers: StartServer) -> None:
    """
    Each backend behaves as documented when spoken to without a balancer.
    """
    echo = servers(EchoServer("s1"))
    result = echo_once(echo.port, b"hello")
    assert (result.server, result.echoed) == ("s1", b"hello")

    hasher = servers(HashServer(reply_size=1_000_003, seed=3))
    ex = hash_exchange(hasher.port, send_size=2_000_001, reply_size=1_000_003)
    assert ex.sent_digest == ex.server_received_digest == pattern_digest(2_000_001, 11)
    assert ex.received == 1_000_003
    assert ex.received_digest == ex.server_sent_digest == pattern_digest(1_000_003, 3)

    closer = servers(CloseFirstServer(b"x" * 100_000))
    data, _ = receive_until_eof(closer.port)
    assert data == b"x" * 100_000

    streamer = servers(StreamServer(total=256 << 20))
    sock = connect(streamer.port)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert streamer.wait_stalled(stall=0.5, timeout=10)
        assert 0 < streamer.sent < 256 << 20
    finally:
        abort(sock)
    assert wait_until(lambda: streamer.finished == 1, 10)

    for server in (echo, hasher, closer, streamer):
        assert server.errors == []


def test_process_wrapper_with_portforward(
    servers: StartServer, rundir: Path
) -> None:
    """
    L{Balancer} starts a twistd service, sees it ready, exposes its pid,
    descriptors and memory, and stops it with SIGTERM (a stock twistd service
    re-raises the signal on the way out).
    """
    echo = servers(EchoServer("s1"))
    port = free_port()
    argv = [
        twistd_path(), "-n", "--pidfile=", "portforward",
        "-p", f"tcp:{port}:interface=127.0.0.1", "-h", "127.0.0.1", "-d", str(echo.port),
    ]
    lb = Balancer(argv, str(rundir), [rf"starting on {port}\b"])
    lb.start()
    try:
        lb.wait_ready()
        assert lb.fd_count() > 3
        assert lb.rss() > 1 << 20
        sock = connect(port)
        try:
            assert read_line(sock)[0] == b"s1"
        finally:
            sock.close()
        assert lb.stop(expected=[-signal.SIGTERM]) == -signal.SIGTERM
    finally:
        lb.kill()
    assert port_is_free(port)
    assert any("Server Shut Down" in line for line in lb.lines())
