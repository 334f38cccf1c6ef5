"""
Routing by TLS server name through C{twistd}: two TLS services with their
own certificates behind one l4lb port, real Python C{ssl} clients (one of
which sends its ClientHello one byte per TCP segment), a plain-text client
sent to the default backend or refused, and the name in the log.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .backends import EchoServer, IO_TIMEOUT, ThreadedServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    connect,
    free_port,
    read_line,
    wait_until,
)

#: Every test here runs over both data paths.
pytestmark = pytest.mark.usefixtures("both_relays")


def make_cert(directory: Path, name: str, hosts: List[str]) -> Path:
    """
    A self-signed certificate for C{hosts} with its key, in one PEM file.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


class TlsEchoServer(ThreadedServer):
    """
    A TLS server with its own certificate: after the handshake it sends its
    name and the server name the client asked for, then echoes one line.
    """

    def __init__(self, name: str, cert: Path) -> None:
        super().__init__(name)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert))
        self.asked: List[str] = []
        self.context.sni_callback = self._sni

    def _sni(self, conn: ssl.SSLObject, name: str, context: ssl.SSLContext) -> None:
        self.asked.append(name)

    def handle(self, conn: socket.socket) -> None:
        with self.context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(self.name.encode("ascii") + b"\n")
            line, _ = read_line(tls)  # type: ignore[arg-type]
            tls.sendall(line + b"\n")


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[Tuple[Path, Path, Path]]:
    """
    Certificates for the db service (C{db.example.com} and
    C{*.db.example.com}) and the web service (C{web.example.com}), and a
    file trusting both.
    """
    db = make_cert(tmp_path, "db", ["db.example.com", "*.db.example.com"])
    web = make_cert(tmp_path, "web", ["web.example.com"])
    trust = tmp_path / "trust.pem"
    trust.write_bytes(db.read_bytes() + web.read_bytes())
    yield db, web, trust


def client_context(trust: Path) -> ssl.SSLContext:
    """A client that checks the server's certificate and host name."""
    context = ssl.create_default_context(cafile=str(trust))
    return context


def tls_exchange(port: int, name: str, trust: Path) -> Tuple[str, bytes]:
    """
    Connect with TLS asking for C{name}, verify the certificate, and
    return the server's name and the echo of one line.
    """
    with connect(port) as raw:
        with client_context(trust).wrap_socket(raw, server_hostname=name) as tls:
            server, rest = read_line(tls)  # type: ignore[arg-type]
            tls.sendall(b"ping " + name.encode() + b"\n")
            echo, _ = read_line(tls)  # type: ignore[arg-type]
            return server.decode(), echo


def byte_per_segment_exchange(port: int, name: str, trust: Path) -> Tuple[str, int]:
    """
    A TLS client that sends its ClientHello one byte per TCP segment (with
    C{TCP_NODELAY} and a short pause between bytes), then finishes the
    handshake normally.

    @return: The server's name and the size of the hello.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(trust).wrap_bio(incoming, outgoing, server_hostname=name)
    with connect(port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
        for i in range(len(hello)):
            sock.send(hello[i : i + 1])
            time.sleep(0.0002)
        deadline = time.monotonic() + IO_TIMEOUT
        done = False
        while not done and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                raise EOFError("the server closed during the handshake")
            incoming.write(data)
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                pass
            sock.sendall(outgoing.read())
        assert done
        received = b""
        while b"\n" not in received and time.monotonic() < deadline:
            try:
                received += tls.read(1024)
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                if not data:
                    break
                incoming.write(data)
        return received.split(b"\n")[0].decode(), len(hello)


def plain_exchange(port: int) -> str:
    """
    A client that speaks first in plain text, then reads the name of the
    (plain) server that answers.
    """
    with connect(port) as sock:
        sock.sendall(b"hello, no TLS here\n")
        name, _ = read_line(sock)
        # End cleanly: half-close and read the echo to the end, so that the
        # close is never a reset of unread data (which would log CD).
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
        return name.decode()


def sni_frontend(name: str, fallback: str = "default") -> FrontendSection:
    return FrontendSection(
        name,
        "127.0.0.1",
        free_port(),
        "plain",
        {
            "use_backend db": "sni db.example.com *.db.example.com",
            "use_backend web": "sni WEB.example.com",
            # Generous: no test waits for it, and a loaded machine may send
            # a hello one byte at a time slowly.
            "tcp-request inspect-delay": "60s",
            "sni-fallback": fallback,
        },
    )


def start(
    servers: StartServer, balancers: BalancerFactory, pki: Tuple[Path, Path, Path]
) -> Tuple[FrontendSection, FrontendSection, TlsEchoServer, TlsEchoServer, object]:
    db_cert, web_cert, _ = pki
    db = servers(TlsEchoServer("db", db_cert))
    web = servers(TlsEchoServer("web", web_cert))
    plain = servers(EchoServer("plain"))
    backends = [
        BackendSection("db", [ServerLine("d1", "127.0.0.1", db.port)]),
        BackendSection("web", [ServerLine("w1", "127.0.0.1", web.port)]),
        BackendSection("plain", [ServerLine("p1", "127.0.0.1", plain.port)]),
    ]
    lenient, strict = sni_frontend("tls"), sni_frontend("strict", "reject")
    lb = balancers.start([lenient, strict], backends)
    return lenient, strict, db, web, lb


def test_two_tls_services_behind_one_port(
    servers: StartServer, balancers: BalancerFactory, pki: Tuple[Path, Path, Path]
) -> None:
    """
    Clients asking for db, a name under db's wildcard, and web each reach
    the service whose certificate has that name, through one port; the log
    lines name the backend and end with the server name.
    """
    fe, _, db, web, lb = start(servers, balancers, pki)
    trust = pki[2]
    assert tls_exchange(fe.port, "db.example.com", trust) == ("db", b"ping db.example.com")
    assert tls_exchange(fe.port, "web.example.com", trust) == ("web", b"ping web.example.com")
    assert tls_exchange(fe.port, "eu.db.example.com", trust) == ("db", b"ping eu.db.example.com")
    assert db.asked == ["db.example.com", "eu.db.example.com"] and web.asked == ["web.example.com"]
    records = lb.wait_for_records(3, timeout=30)  # type: ignore[attr-defined]
    got = sorted((r.backend, r.line.rsplit(" ", 1)[1]) for r in records)
    assert got == [
        ("db", "{db.example.com}"),
        ("db", "{eu.db.example.com}"),
        ("web", "{web.example.com}"),
    ]
    assert all(r.termination == "--" for r in records)


def test_hello_one_byte_per_segment(
    servers: StartServer, balancers: BalancerFactory, pki: Tuple[Path, Path, Path]
) -> None:
    """
    A ClientHello sent one byte per TCP segment is read whole and routed,
    and the handshake then completes through the relay.
    """
    fe, _, db, web, lb = start(servers, balancers, pki)
    server, size = byte_per_segment_exchange(fe.port, "web.example.com", pki[2])
    assert server == "web" and size > 200
    (record,) = lb.wait_for_records(1, timeout=30)  # type: ignore[attr-defined]
    assert record.backend == "web" and record.line.endswith(" {web.example.com}")


def test_plain_text_goes_to_the_default_backend_or_is_refused(
    servers: StartServer, balancers: BalancerFactory, pki: Tuple[Path, Path, Path]
) -> None:
    """
    A client speaking plain text reaches the default backend on a
    frontend with C{sni-fallback = default}, and is closed (PR) on one
    with C{sni-fallback = reject}, whose TLS clients are still routed.
    """
    fe, strict, db, web, lb = start(servers, balancers, pki)
    assert plain_exchange(fe.port) == "plain"
    with pytest.raises((EOFError, ConnectionError)):
        plain_exchange(strict.port)
    assert tls_exchange(strict.port, "db.example.com", pki[2])[0] == "db"
    assert wait_until(lambda: len(lb.log_records()) >= 3, timeout=30)  # type: ignore[attr-defined]
    by_frontend = {(r.frontend, r.backend, r.server, r.termination) for r in lb.log_records()}  # type: ignore[attr-defined]
    assert ("tls", "plain", "p1", "--") in by_frontend
    assert ("strict", "plain", "<NOSRV>", "PR") in by_frontend
    assert ("strict", "db", "d1", "--") in by_frontend
    refused = [r for r in lb.log_records() if r.termination == "PR"]  # type: ignore[attr-defined]
    assert refused[0].line.endswith(" {}")
    assert any("SNI routing: the client did not start with a TLS handshake record" in line for line in lb.lines())  # type: ignore[attr-defined]
