"""
The PROXY protocol under twistd: servers with C{send-proxy} and
C{send-proxy-v2} receive the client's addresses first, and an
C{accept-proxy} bind takes the client a trusted peer's header names, ignores
the header of an untrusted peer, and closes only the connection whose
header is malformed.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import List, Tuple

import pytest

from .backends import CHUNK, IO_TIMEOUT, ThreadedServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    connect,
    finish,
    free_port,
    read_exactly,
    wait_until,
)

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


class ProxyRecorder(ThreadedServer):
    """
    Expects a PROXY header (version 1 or 2) first on each connection, keeps
    it in L{headers}, then echoes everything after it until EOF.

    @ivar headers: The header of each connection, in order of arrival.
    """

    def __init__(self, name: str = "recorder", host: str = "127.0.0.1") -> None:
        super().__init__(name, host)
        self.headers: List[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        data = b""
        deadline = time.monotonic() + IO_TIMEOUT
        header = None
        while header is None and time.monotonic() < deadline:
            if data.startswith(SIGNATURE[: len(data)]) and len(data) >= 16:
                size = 16 + struct.unpack("!H", data[14:16])[0]
                if len(data) >= size:
                    header, data = data[:size], data[size:]
                    break
            elif not data.startswith(SIGNATURE[: len(data)]) and b"\r\n" in data:
                line, _, data = data.partition(b"\r\n")
                header = line + b"\r\n"
                break
            chunk = conn.recv(CHUNK)
            if not chunk:
                return
            data += chunk
        with self._lock:
            self.headers.append(header or b"")
        if data:
            conn.sendall(data)
        while time.monotonic() < deadline:
            chunk = conn.recv(CHUNK)
            if not chunk:
                break
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)


def _setup(
    servers: StartServer, balancers: BalancerFactory, options: str = "", bind: str = "", **extra: str
) -> Tuple[ProxyRecorder, FrontendSection]:
    recorder = servers(ProxyRecorder())
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", recorder.port, options)])
    port = free_port()
    fe_extra = dict(extra)
    if bind:
        fe_extra["bind"] = f"127.0.0.1:{port} {bind}"
    fe = FrontendSection("fe", "127.0.0.1", port, "be", fe_extra)
    balancers.start([fe], [be])
    return recorder, fe


def _exchange(port: int, first: bytes, payload: bytes = b"hello") -> Tuple[bytes, int]:
    """
    Send C{first + payload}, read the echo of C{payload}, close; return the
    echo and our port.
    """
    sock = connect(port)
    local_port = sock.getsockname()[1]
    try:
        sock.sendall(first + payload)
        echoed = read_exactly(sock, len(payload))
    except BaseException:
        sock.close()
        raise
    echoed += finish(sock)
    return echoed, local_port


@pytest.mark.usefixtures("both_relays")
def test_send_proxy_v1_names_the_client(servers: StartServer, balancers: BalancerFactory) -> None:
    """A send-proxy server receives one v1 line with the client's address and port first."""
    recorder, fe = _setup(servers, balancers, "send-proxy")
    echoed, client_port = _exchange(fe.port, b"")
    assert echoed == b"hello"
    assert recorder.headers == [
        f"PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {fe.port}\r\n".encode()
    ]


@pytest.mark.usefixtures("both_relays")
def test_send_proxy_v2_names_the_client(servers: StartServer, balancers: BalancerFactory) -> None:
    """A send-proxy-v2 server receives the binary header with the client's address and port first."""
    recorder, fe = _setup(servers, balancers, "send-proxy-v2")
    echoed, client_port = _exchange(fe.port, b"")
    assert echoed == b"hello"
    (header,) = recorder.headers
    assert header[:12] == SIGNATURE
    assert header[12:16] == b"\x21\x11\x00\x0c"
    assert header[16:24] == socket.inet_aton("127.0.0.1") * 2
    assert struct.unpack("!HH", header[24:28]) == (client_port, fe.port)


def test_accept_proxy_uses_the_carried_client(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    From a trusted peer, the header's client is logged and passed on to a
    send-proxy server, and the header itself is not relayed.
    """
    recorder, fe = _setup(
        servers,
        balancers,
        "send-proxy",
        bind="accept-proxy",
        **{"accept-proxy-from": "127.0.0.0/8"},
    )
    line = b"PROXY TCP4 203.0.113.5 198.51.100.9 4444 443\r\n"
    echoed, _ = _exchange(fe.port, line)
    assert echoed == b"hello"
    assert recorder.headers == [line]
    lb = balancers.started[0]
    (record,) = lb.wait_for_records(1)
    assert (record.client_ip, record.client_port) == ("203.0.113.5", 4444)
    assert record.termination == "--"


def test_accept_proxy_ignores_an_untrusted_peer(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    From a peer outside accept-proxy-from, the header is not read: it is
    relayed as data and the log shows the peer's own address.
    """
    recorder, fe = _setup(
        servers,
        balancers,
        "send-proxy",
        bind="accept-proxy",
        **{"accept-proxy-from": "127.200.0.0/16"},
    )
    line = b"PROXY TCP4 203.0.113.5 198.51.100.9 4444 443\r\n"
    echoed, client_port = _exchange(fe.port, b"", line)
    assert echoed == line
    assert recorder.headers == [
        f"PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {fe.port}\r\n".encode()
    ]
    (record,) = balancers.started[0].wait_for_records(1)
    assert (record.client_ip, record.client_port) == ("127.0.0.1", client_port)


def test_malformed_header_closes_only_that_connection(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    A trusted peer's malformed header closes its connection with a PR log
    line and a reason, while a connection already open is still served.
    """
    recorder, fe = _setup(
        servers, balancers, "send-proxy", bind="accept-proxy", **{"accept-proxy-from": "127.0.0.1"}
    )
    good = connect(fe.port)
    try:
        good.sendall(SIGNATURE + b"\x21\x11\x00\x0c" + socket.inet_aton("192.0.2.1") * 2 + b"\x00\x01\x00\x02")
        good.sendall(b"one")
        assert read_exactly(good, 3) == b"one"

        bad = connect(fe.port)
        bad.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            closed = bad.recv(CHUNK) == b""
        except ConnectionResetError:
            closed = True
        bad.close()
        assert closed

        good.sendall(b"two")
        assert read_exactly(good, 3) == b"two"
    finally:
        assert finish(good) == b""
    lb = balancers.started[0]
    records = lb.wait_for_records(2)
    by_state = {r.termination: r for r in records}
    assert by_state["PR"].server == "<NOSRV>" and by_state["PR"].client_ip == "127.0.0.1"
    assert by_state["--"].client_ip == "192.0.2.1"
    assert wait_until(lambda: any("no PROXY protocol header" in l for l in lb.lines()), 5.0)
    assert recorder.headers == [b"PROXY TCP4 192.0.2.1 192.0.2.1 1 2\r\n"]


def test_split_header_one_byte_per_segment(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """A v2 header sent one byte at a time is read whole, then the data is relayed."""
    recorder, fe = _setup(
        servers, balancers, "send-proxy-v2", bind="accept-proxy", **{"accept-proxy-from": "127.0.0.1"}
    )
    sock = connect(fe.port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        header = SIGNATURE + b"\x21\x11\x00\x0c" + socket.inet_aton("192.0.2.8") * 2 + b"\x00\x07\x00\x08"
        for byte in header:
            sock.sendall(bytes([byte]))
            time.sleep(0.002)
        sock.sendall(b"data")
        assert read_exactly(sock, 4) == b"data"
    finally:
        finish(sock)
    (record,) = balancers.started[0].wait_for_records(1)
    assert (record.client_ip, record.client_port) == ("192.0.2.8", 7)
    assert recorder.headers == [header]


def test_checks_of_a_send_proxy_v2_server_send_a_local_header(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """A checked send-proxy-v2 server receives the 16-byte LOCAL header on each check."""
    recorder, _ = _setup(servers, balancers, "send-proxy-v2 check inter 100ms")
    local = SIGNATURE + b"\x20\x00\x00\x00"
    assert wait_until(lambda: recorder.headers.count(local) >= 2, 10.0), recorder.headers
    assert set(recorder.headers) == {local}
