"""
TLS under twistd: a bind that terminates TLS for Python's C{ssl} clients,
servers reached over TLS with their certificates verified (a wrong host name
is a failed connect, retried on a good server), C{check-ssl} health
checks, and half-closes over TLS in each direction (socat, Python's C{ssl}
as client and server), on both data paths.  Certificates are made for each
test by L{tests.tlskit}.
"""

from __future__ import annotations

import hashlib
import select
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

from tests.tlskit import Pki, make_pki

from .backends import (
    IO_TIMEOUT,
    EchoServer,
    HashServer,
    ThreadedServer,
    pattern,
    pattern_digest,
    recv_until_eof,
)
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    free_port,
    render_config,
    wait_until,
)
from .test_admin import socat

SIZE = 5 * 1024 * 1024
DEADLINE = 30.0


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(str(directory))


def client_context(pki: Pki) -> ssl.SSLContext:
    """A client context that trusts only the test CA."""
    context = ssl.create_default_context(cafile=pki.ca)
    return context


class TlsEcho(ThreadedServer):
    """
    A TLS server (Python's C{ssl}) that echoes what it receives, until the
    client closes.
    """

    def __init__(self, name: str, crt: str) -> None:
        super().__init__(name)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(crt)
        self.handshakes = 0

    def handle(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            return
        # The accepted socket is detached into the TLS socket: closing it
        # is this handler's job (on PyPy nothing else would close it before
        # a garbage collection).
        with tls:
            self.handshakes += 1
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                tls.sendall(self.name.encode() + b":" + data)


class Banner(ThreadedServer):
    """
    A plain server that records what it receives, answers once it received
    C{expect} bytes, shuts its write half, and records what still comes.
    """

    def __init__(self, name: str, expect: int) -> None:
        super().__init__(name)
        self.expect = expect
        self.received: List[bytes] = []
        self.after: List[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        got = b""
        while len(got) < self.expect:
            data = conn.recv(65536)
            if not data:
                break
            got += data
        self.received.append(got)
        conn.sendall(b"reply:" + got)
        conn.shutdown(socket.SHUT_WR)
        later = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = conn.recv(65536)
            if not data:
                break
            later += data
        self.after.append(later)


class TlsDigest(ThreadedServer):
    """
    A TLS server that reads until the client's end of stream, then sends
    C{reply_size} bytes of pattern followed by the SHA-256 of what it
    received, and closes with close_notify.
    """

    def __init__(self, name: str, crt: str, reply_size: int) -> None:
        super().__init__(name)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(crt)
        self.reply_size = reply_size

    def handle(self, conn: socket.socket) -> None:
        # Closed here, not by the garbage collector (see L{TlsEcho.handle}).
        with self.context.wrap_socket(conn, server_side=True) as tls:
            digest = hashlib.sha256()
            while True:
                data = tls.recv(1 << 16)
                if not data:
                    break
                digest.update(data)
            for block in pattern(self.reply_size, 9):
                tls.sendall(block)
            tls.sendall(digest.digest())
            tls.unwrap()


def start_with_ssl_bind(
    balancers: BalancerFactory, pki: Pki, backend: BackendSection, **options: object
) -> tuple:
    port = free_port()
    fe = FrontendSection("fe", "127.0.0.1", port, backend.name)
    if balancers.relay is not None:
        # As BalancerFactory.start does for the both_relays fixture.
        given: dict = options.get("global_") or {}  # type: ignore[assignment]
        options["global_"] = {"tune.relay": balancers.relay, **given}
    text = render_config([fe], [backend], **options)  # type: ignore[arg-type]
    bind = f"bind = 127.0.0.1:{port}"
    assert text.count(bind) == 1
    text = text.replace(bind, f"{bind} ssl crt {pki.server}")
    lb = balancers.start_file(balancers.write(text), ["fe"])
    return lb, port


def test_termination_serves_a_python_ssl_client(
    servers: StartServer, balancers: BalancerFactory, pki: Pki
) -> None:
    """A bind with ssl crt completes a verified handshake with Python's ssl
    client for db.internal, the backend receives the plaintext, and its
    reply and end of stream reach the client; the client can still send
    after that (half-close), and the session ends normally."""
    backend = servers(Banner("s1", 11))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", backend.port)])
    lb, port = start_with_ssl_bind(balancers, pki, be)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context(pki).wrap_socket(raw, server_hostname="db.internal") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            tls.sendall(b"hello world")
            answer = b""
            for _ in range(100):
                data = tls.recv(65536)
                if not data:
                    break
                answer += data
            # The backend's end of stream arrived; the other direction is
            # still open.
            tls.sendall(b"late")
            tls.unwrap()
    assert answer == b"reply:hello world"
    assert backend.received == [b"hello world"]
    assert wait_until(lambda: backend.after == [b"late"], 5), backend.after
    records = lb.wait_for_records(1)
    assert records[0].termination == "--"


def test_termination_relays_5_megabytes_each_way_intact(
    servers: StartServer, balancers: BalancerFactory, pki: Pki
) -> None:
    """5 MB sent through a TLS bind to a plain echo server come back
    byte for byte, and l4lb's descriptors return to their baseline after."""
    echo = servers(EchoServer("s1"))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", echo.port)])
    lb, port = start_with_ssl_bind(balancers, pki, be)
    baseline = lb.fd_count()
    sent = hashlib.sha256()
    received = hashlib.sha256()
    count = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        tls = client_context(pki).wrap_socket(raw, server_hostname="db.internal")
        greeting = b""
        while not greeting.endswith(b"\n") and len(greeting) < 10:
            greeting += tls.recv(1)
        assert greeting == b"s1\n"
        # One thread sends and receives: an SSL connection must not be
        # written and read from two threads at once.
        tls.setblocking(False)
        blocks = iter(pattern(SIZE, 5))
        pending = b""
        deadline = time.monotonic() + DEADLINE
        while count < SIZE and time.monotonic() < deadline:
            if not pending:
                pending = next(blocks, b"")
                sent.update(pending)
            readable, writable, _ = select.select([tls], [tls] if pending else [], [], 1.0)
            if writable:
                try:
                    pending = pending[tls.send(pending) :]
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
            if readable or tls.pending():
                try:
                    data = tls.recv(1 << 16)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                if not data:
                    break
                received.update(data)
                count += len(data)
        tls.close()
    assert count == SIZE
    assert received.digest() == sent.digest()
    assert wait_until(lambda: lb.fd_count() <= baseline, 10), "\n".join(lb.fd_targets())


def test_wrong_host_name_is_retried_on_a_good_server(
    servers: StartServer, balancers: BalancerFactory, pki: Pki, tmp_path: Path
) -> None:
    """A TLS server whose certificate does not name db.internal fails
    verification: the attempt is logged and redispatched to s2, which
    serves the client; as in HAProxy, the backend counts a redispatch and
    s1 no connection error, since the connection did not fail for good."""
    bad = servers(TlsEcho("s1", pki.wrong))
    good = servers(TlsEcho("s2", pki.server))
    tls = f"ssl verify required ca-file {pki.ca} sni db.internal"
    be = BackendSection(
        "be",
        [ServerLine("s1", "127.0.0.1", bad.port, tls), ServerLine("s2", "127.0.0.1", good.port, tls)],
        extra={"option redispatch": "1"},
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    sock_path = str(tmp_path / "admin.sock")
    lb = balancers.start([fe], [be], global_={"stats socket": sock_path})
    with socket.create_connection(("127.0.0.1", fe.port), timeout=10) as sock:
        sock.sendall(b"ping")
        assert sock.recv(100) == b"s2:ping"
    records = lb.wait_for_records(1)
    assert records[0].server == "s2" and records[0].retries == 1 and records[0].redispatched
    assert any("TLS to server be/s1 failed: certificate does not name db.internal" in line for line in lb.lines()), [l for l in lb.lines() if "TLS" in l]
    rows = [line.split(",") for line in socat(sock_path, "show stat").splitlines()]
    s1 = next(row for row in rows if row[:2] == ["be", "s1"])
    backend = next(row for row in rows if row[:2] == ["be", "BACKEND"])
    header = socat(sock_path, "show stat").splitlines()[0].lstrip("# ").split(",")
    assert (s1[header.index("econ")], backend[header.index("wredis")]) == ("0", "1"), (s1, backend)
    assert bad.handshakes == 0


def test_check_ssl_marks_a_plain_server_down_and_a_tls_one_up(
    servers: StartServer, balancers: BalancerFactory, pki: Pki
) -> None:
    """With check-ssl, a server that does not speak TLS fails its checks
    (L6RSP) and goes down, while a TLS server with a valid certificate
    passes (L6OK) and gets the traffic."""
    plain = servers(EchoServer("s1"))
    good = servers(TlsEcho("s2", pki.server))
    tls = f"ssl ca-file {pki.ca} sni db.internal check check-ssl inter 200 rise 1 fall 1"
    be = BackendSection(
        "be",
        [ServerLine("s1", "127.0.0.1", plain.port, tls), ServerLine("s2", "127.0.0.1", good.port, tls)],
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be])

    def s1_down() -> bool:
        return any("Server be/s1 is DOWN, reason: Layer6 invalid response" in line for line in lb.lines())

    assert wait_until(s1_down, 10), lb.output()
    assert not any("Server be/s2 is DOWN" in line for line in lb.lines())
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", fe.port), timeout=10) as sock:
            sock.sendall(b"x")
            assert sock.recv(100) == b"s2:x"


def test_origination_half_close_and_5_megabytes_each_way(
    servers: StartServer, balancers: BalancerFactory, pki: Pki
) -> None:
    """A plain client sends 5 MB to a TLS server and shuts its write half;
    the server sees the end of stream, and its 5 MB reply and digest reach
    the client intact; descriptors return to their baseline."""
    server = servers(TlsDigest("s1", pki.server, SIZE))
    be = BackendSection(
        "be", [ServerLine("s1", "127.0.0.1", server.port, f"ssl ca-file {pki.ca} sni db.internal")]
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be])
    baseline = lb.fd_count()
    sent = hashlib.sha256()
    received = hashlib.sha256()
    count = 0
    tail = b""
    with socket.create_connection(("127.0.0.1", fe.port), timeout=10) as sock:
        for block in pattern(SIZE, 5):
            sent.update(block)
            sock.sendall(block)
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            data = sock.recv(1 << 16)
            if not data:
                break
            if count < SIZE:
                take = data[: SIZE - count]
                received.update(take)
                count += len(take)
                data = data[len(take):]
            tail += data
    expected = hashlib.sha256()
    for block in pattern(SIZE, 9):
        expected.update(block)
    assert count == SIZE and received.digest() == expected.digest()
    assert tail == sent.digest()
    records = lb.wait_for_records(1)
    assert records[0].termination == "--"
    assert wait_until(lambda: lb.fd_count() <= baseline, 10), "\n".join(lb.fd_targets())


# -- half-close over TLS --------------------------------------------------------

REPLY = 1024 * 1024


def send_close_notify(tls: ssl.SSLSocket) -> None:
    """
    Send close_notify without waiting for the peer's: on a blocking socket
    Python's C{unwrap()} waits for it, and would not hand over the data
    that comes before it.
    """
    timeout = tls.gettimeout()
    tls.setblocking(False)
    try:
        tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    tls.settimeout(timeout)


def read_to_close_notify(tls: ssl.SSLSocket, timeout: float = DEADLINE) -> bytes:
    """
    Read a TLS connection until the peer's close_notify (or its end of
    stream), bounded in time.
    """
    data = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = tls.recv(1 << 16)
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


class EchoAtEnd(ThreadedServer):
    """
    A plain server that reads until the client's end of stream and only
    then sends back what it received and shuts its write half: its reply
    is always in flight after the client half-closed.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.received: List[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        _, data = recv_until_eof(conn, time.monotonic() + IO_TIMEOUT)
        self.received.append(data)
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


class TlsEchoAtEnd(ThreadedServer):
    """
    L{EchoAtEnd} over TLS: reads until the client's close_notify, sends
    back what it received, then its own close_notify.
    """

    def __init__(self, name: str, crt: str) -> None:
        super().__init__(name)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(crt)
        self.received: List[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        # Closed here, not by the garbage collector (see L{TlsEcho.handle}).
        with self.context.wrap_socket(conn, server_side=True) as tls:
            data = read_to_close_notify(tls, IO_TIMEOUT)
            self.received.append(data)
            tls.sendall(data)
            send_close_notify(tls)


class TlsCloseFirst(ThreadedServer):
    """
    A TLS server that answers C{expect} bytes with C{reply:} and them, sends
    close_notify at once, and records what the client still sends until
    its end of stream.
    """

    def __init__(self, name: str, crt: str, expect: int) -> None:
        super().__init__(name)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(crt)
        self.expect = expect
        self.after: List[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        with self.context.wrap_socket(conn, server_side=True) as tls:
            got = b""
            while len(got) < self.expect:
                data = tls.recv(65536)
                if not data:
                    break
                got += data
            tls.sendall(b"reply:" + got)
            send_close_notify(tls)
            self.after.append(read_to_close_notify(tls, 10.0))


def socat_tls(port: int) -> "subprocess.CompletedProcess[bytes]":
    """
    Run C{echo hello-tls | socat -t1 - OPENSSL:127.0.0.1:PORT,verify=0}: socat
    sends the line, then close_notify at the end of its input, and prints
    what it receives within a second.
    """
    assert shutil.which("socat"), "these tests need socat (Debian package socat)"
    return subprocess.run(
        f"echo hello-tls | socat -t1 - OPENSSL:127.0.0.1:{port},verify=0",
        shell=True,
        capture_output=True,
        timeout=20,
    )


def test_socat_close_notify_still_gets_the_reply(
    servers: StartServer, balancers: BalancerFactory, pki: Pki, both_relays: str
) -> None:
    """socat's close_notify at the end of its input only ends the client's
    direction: the server gets a FIN, its reply (sent only after that)
    reaches socat, and the log counts those 10 bytes as a normal end."""
    server = servers(EchoAtEnd("s1"))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", server.port)])
    lb, port = start_with_ssl_bind(balancers, pki, be)
    done = socat_tls(port)
    assert done.stdout == b"hello-tls\n", done.stderr
    assert server.received == [b"hello-tls\n"]
    (record,) = lb.wait_for_records(1)
    assert (record.bytes, record.termination) == (10, "--"), record.line


def test_python_client_close_notify_and_fin_reads_the_whole_reply(
    servers: StartServer, balancers: BalancerFactory, pki: Pki, both_relays: str
) -> None:
    """A Python TLS client sends, then close_notify and a TCP half-close,
    and still reads the server's whole 1 MB reply and digest, then l4lb's
    close_notify; the log counts every byte and says --, and l4lb's
    descriptors return to their baseline."""
    server = servers(HashServer(REPLY, seed=3))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", server.port)])
    lb, port = start_with_ssl_bind(balancers, pki, be)
    baseline = lb.fd_count()
    request = b"half-closed request " * 500
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context(pki).wrap_socket(raw, server_hostname="db.internal") as tls:
            tls.sendall(request)
            send_close_notify(tls)
            # The TCP half-close under TLS (SSLSocket.shutdown would also
            # drop the TLS layer).
            socket.socket.shutdown(tls, socket.SHUT_WR)
            answer = read_to_close_notify(tls)
    assert len(answer) == REPLY + 64
    assert hashlib.sha256(answer[:REPLY]).digest() == pattern_digest(REPLY, 3)
    assert answer[REPLY:REPLY + 32] == hashlib.sha256(request).digest()
    (record,) = lb.wait_for_records(1)
    assert (record.bytes, record.termination) == (REPLY + 64, "--"), record.line
    assert wait_until(lambda: lb.fd_count() <= baseline, 10), "\n".join(lb.fd_targets())


def test_server_first_over_a_tls_bind_client_still_sends(
    servers: StartServer, balancers: BalancerFactory, pki: Pki, both_relays: str
) -> None:
    """When a plain server ends first, the TLS client gets the reply and
    l4lb's close_notify, can still send (the server receives it), and its
    own close_notify ends the session normally with the reply counted."""
    backend = servers(Banner("s1", 11))
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", backend.port)])
    lb, port = start_with_ssl_bind(balancers, pki, be)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context(pki).wrap_socket(raw, server_hostname="db.internal") as tls:
            tls.sendall(b"hello world")
            answer = read_to_close_notify(tls)
            tls.sendall(b"late")
            send_close_notify(tls)
    assert answer == b"reply:hello world"
    assert wait_until(lambda: backend.after == [b"late"], 5), backend.after
    (record,) = lb.wait_for_records(1)
    assert (record.bytes, record.termination) == (17, "--"), record.line


def test_tls_server_close_notify_first_client_still_sends(
    servers: StartServer, balancers: BalancerFactory, pki: Pki, both_relays: str
) -> None:
    """A TLS server's close_notify only ends the server's direction: the
    plain client gets the reply and a FIN, what it sends after still
    reaches the server, and the session ends normally with the reply
    counted; l4lb's descriptors return to their baseline."""
    server = servers(TlsCloseFirst("s1", pki.server, 11))
    be = BackendSection(
        "be", [ServerLine("s1", "127.0.0.1", server.port, f"ssl ca-file {pki.ca} sni db.internal")]
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be])
    baseline = lb.fd_count()
    with socket.create_connection(("127.0.0.1", fe.port), timeout=10) as sock:
        sock.sendall(b"hello world")
        _, answer = recv_until_eof(sock, time.monotonic() + DEADLINE)
        sock.sendall(b"late")
        sock.shutdown(socket.SHUT_WR)
        assert wait_until(lambda: server.after == [b"late"], 10), server.after
    assert answer == b"reply:hello world"
    (record,) = lb.wait_for_records(1)
    assert (record.bytes, record.termination) == (17, "--"), record.line
    assert wait_until(lambda: lb.fd_count() <= baseline, 10), "\n".join(lb.fd_targets())


def test_socat_close_notify_through_tls_on_both_legs(
    servers: StartServer, balancers: BalancerFactory, pki: Pki, both_relays: str
) -> None:
    """With TLS on the bind and to the server, socat's close_notify is
    passed on as close_notify to the server, whose reply, sent only after
    it, reaches socat; the log counts it as a normal end."""
    server = servers(TlsEchoAtEnd("s1", pki.server))
    be = BackendSection(
        "be", [ServerLine("s1", "127.0.0.1", server.port, f"ssl ca-file {pki.ca} sni db.internal")]
    )
    lb, port = start_with_ssl_bind(balancers, pki, be)
    done = socat_tls(port)
    assert done.stdout == b"hello-tls\n", done.stderr
    assert server.received == [b"hello-tls\n"]
    (record,) = lb.wait_for_records(1)
    assert (record.bytes, record.termination) == (10, "--"), record.line
