"""
l4lb under twistd relaying real TCP connections to real servers: balancing,
large transfers, half-close, server-side close, retries, IPv6, and the
timeout that blames the side that stopped reading.
"""

from __future__ import annotations

import collections
import socket
import time
from typing import List

import pytest

from .backends import (
    CloseFirstServer,
    EchoServer,
    HashServer,
    SilentServer,
    StreamServer,
    TRAILER_SIZE,
    pattern_digest,
)
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    echo_once,
    free_port,
    hash_exchange,
    connect,
    ipv6_loopback,
    receive_until_eof,
)

#: Every test here runs over both data paths.
pytestmark = pytest.mark.usefixtures("both_relays")

MiB = 1 << 20


def one_frontend(backend: BackendSection, host: str = "127.0.0.1") -> FrontendSection:
    """
    A frontend C{fe} on a free port in front of C{backend}.
    """
    return FrontendSection("fe", host, free_port(host), backend.name)


def test_roundrobin_alternates(servers: StartServer, balancers: BalancerFactory) -> None:
    """
    With two servers of equal weight, sequential connections alternate
    between them, and each is echoed faithfully.
    """
    s1, s2 = servers(EchoServer("s1")), servers(EchoServer("s2"))
    be = BackendSection(
        "be", [ServerLine("s1", "127.0.0.1", s1.port), ServerLine("s2", "127.0.0.1", s2.port)]
    )
    fe = one_frontend(be)
    balancers.start([fe], [be])

    answers: List[str] = []
    for i in range(10):
        result = echo_once(fe.port, b"ping %d" % i)
        assert result.echoed == b"ping %d" % i
        answers.append(result.server)
    assert set(answers) == {"s1", "s2"}
    for a, b in zip(answers, answers[1:]):
        assert a != b, answers


def test_weighted_roundrobin_exact_split(servers: StartServer, balancers: BalancerFactory) -> None:
    """
    Weights 1:3 over 400 sequential connections give exactly 100 and 300,
    and the log names the server each connection went to.
    """
    s1, s2 = servers(EchoServer("s1")), servers(EchoServer("s2"))
    be = BackendSection(
        "be",
        [
            ServerLine("s1", "127.0.0.1", s1.port, "weight 1"),
            ServerLine("s2", "127.0.0.1", s2.port, "weight 3"),
        ],
    )
    fe = one_frontend(be)
    lb = balancers.start([fe], [be])

    answers = collections.Counter(echo_once(fe.port).server for _ in range(400))
    assert answers == {"s1": 100, "s2": 300}
    records = lb.wait_for_records(400)
    assert collections.Counter(r.server for r in records) == {"s1": 100, "s2": 300}
    assert {(r.frontend, r.backend, r.termination) for r in records} == {("fe", "be", "--")}


def test_64mib_each_way_intact(servers: StartServer, balancers: BalancerFactory) -> None:
    """
    64 MiB from client to server and 64 MiB back arrive intact: SHA-256 is
    the same on both ends in both directions, and the log counts the bytes.
    """
    size = 64 * MiB
    hasher = servers(HashServer(reply_size=size, seed=21))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", hasher.port)])
    fe = one_frontend(be)
    lb = balancers.start([fe], [be])

    ex = hash_exchange(fe.port, send_size=size, reply_size=size, seed=12)
    assert ex.sent_digest == pattern_digest(size, 12)
    assert ex.server_received_digest == ex.sent_digest, "client->server corrupted"
    assert ex.received == size
    assert ex.received_digest == ex.server_sent_digest, "server->client corrupted"
    assert [(r.received, r.sent) for r in hasher.results] == [(size, size)]
    [record] = lb.wait_for_records(1)
    assert record.bytes == size + TRAILER_SIZE
    assert record.termination == "--"
    assert record.client_port == ex.local_port


def test_client_half_close(servers: StartServer, balancers: BalancerFactory) -> None:
    """
    A client that sends, shuts its write half and then reads still gets the
    server's whole reply, which the server sends only after it saw EOF.
    """
    hasher = servers(HashServer(reply_size=3 * MiB + 5, seed=4))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", hasher.port)])
    fe = one_frontend(be)
    lb = balancers.start([fe], [be])

    for i in range(5):
        ex = hash_exchange(fe.port, send_size=100_000 + i, reply_size=3 * MiB + 5, seed=i)
        assert ex.server_received_digest == ex.sent_digest
        assert ex.received == 3 * MiB + 5
        assert ex.received_digest == ex.server_sent_digest == pattern_digest(3 * MiB + 5, 4)
    records = lb.wait_for_records(5)
    assert [(r.termination, r.bytes) for r in records] == [("--", 3 * MiB + 5 + TRAILER_SIZE)] * 5
    assert hasher.errors == []


def test_server_closes_first(servers: StartServer, balancers: BalancerFactory) -> None:
    """
    When the server sends a payload and closes first, the client gets all of
    it and then EOF, and the server sees the connection closed in turn.
    """
    payload = bytes(range(256)) * 4096 + b"end"
    closer = servers(CloseFirstServer(payload))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", closer.port)])
    fe = one_frontend(be)
    lb = balancers.start([fe], [be])

    for _ in range(5):
        data, _ = receive_until_eof(fe.port)
        assert data == payload
    records = lb.wait_for_records(5)
    assert [(r.server, r.bytes, r.termination) for r in records] == [("s1", len(payload), "--")] * 5
    assert closer.errors == []


def test_refused_server_retried_and_redispatched(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    With s1 refusing and s2 up, C{retries 3} and C{option redispatch}, every
    connection ends on s2; those that first went to s1 log C{+3} retries.
    """
    s2 = servers(EchoServer("s2"))
    be = BackendSection(
        "be",
        [ServerLine("s1", "127.0.0.1", free_port()), ServerLine("s2", "127.0.0.1", s2.port)],
    )
    fe = one_frontend(be)
    lb = balancers.start(
        [fe], [be], defaults={"timeout connect": "300ms", "option redispatch": "true"}
    )

    count = 6
    for i in range(count):
        result = echo_once(fe.port, b"try %d" % i)
        assert (result.server, result.echoed) == ("s2", b"try %d" % i)
    records = lb.wait_for_records(count)
    assert [(r.server, r.termination) for r in records] == [("s2", "--")] * count, [
        r.line for r in records
    ]
    retried = [r for r in records if r.retries]
    # Round robin sends at least every other new connection to s1 first.
    assert len(retried) >= count // 2, [r.line for r in records]
    for r in retried:
        assert (r.retries, r.redispatched) == (3, True), r.line
    for r in records:
        if not r.retries:
            assert not r.redispatched, r.line


def test_ipv6_loopback(servers: StartServer, balancers: BalancerFactory) -> None:
    """
    A frontend bound on [::1] relays to a server on [::1].
    """
    assert ipv6_loopback(), "this test needs an IPv6 loopback address (::1)"
    s1 = servers(EchoServer("s6", host="::1"))
    be = BackendSection("be", [ServerLine("s6", "::1", s1.port)])
    fe = one_frontend(be, host="::1")
    lb = balancers.start([fe], [be])

    result = echo_once(fe.port, b"over six", host="::1")
    assert (result.server, result.echoed) == ("s6", b"over six")
    [record] = lb.wait_for_records(1)
    assert (record.client_ip, record.client_port) == ("::1", result.local_port)
    assert (record.server, record.termination) == ("s6", "--")


def test_server_that_stops_reading_is_logged_sD(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    A server that never reads while the client keeps sending is waited for
    C{timeout server} (2s here, though C{timeout client} is 1s) and blamed:
    the log says C{sD}, as HAProxy 2.6 does in the same test.
    """
    silent = servers(SilentServer("mute"))
    be = BackendSection("be", [ServerLine("mute", "127.0.0.1", silent.port)])
    fe = one_frontend(be)
    lb = balancers.start(
        [fe], [be], defaults={"timeout client": "1s", "timeout server": "2s"}
    )

    sock = connect(fe.port)
    try:
        sock.settimeout(0.5)
        chunk = b"s" * 65536
        deadline = time.monotonic() + 20
        stalled = False
        while time.monotonic() < deadline:
            try:
                sock.send(chunk)
            except socket.timeout:
                # Every buffer on the way is full.
                stalled = True
                break
            except OSError:
                break
        assert stalled, "the client never filled the buffers toward the server"
        [record] = lb.wait_for_records(1, timeout=15)
    finally:
        sock.close()
    assert (record.server, record.termination) == ("mute", "sD"), record.line
    assert record.tt >= 2000, record.line


def test_client_that_stops_reading_is_logged_cD(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    A client that never reads while the server keeps sending is waited for
    C{timeout client} (2s here, though C{timeout server} is 1s) and blamed:
    the log says C{cD}, as HAProxy 2.6 does in the same test.
    """
    stream = servers(StreamServer(1 << 30, name="talker"))
    be = BackendSection("be", [ServerLine("talker", "127.0.0.1", stream.port)])
    fe = one_frontend(be)
    lb = balancers.start(
        [fe], [be], defaults={"timeout client": "2s", "timeout server": "1s"}
    )

    sock = connect(fe.port)
    try:
        assert stream.wait_stalled(stall=0.5, timeout=20), "the server never stalled"
        [record] = lb.wait_for_records(1, timeout=15)
    finally:
        sock.close()
    assert (record.server, record.termination) == ("talker", "cD"), record.line
    assert record.tt >= 2000, record.line
