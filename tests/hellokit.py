"""
Real TLS ClientHellos for tests, recorded when the tests run, and helpers
to re-frame them: split the handshake message over several records, add an
extension to make it as large as a post-quantum hello.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from typing import List, Optional, Sequence

from l4lb.sni.clienthello import NEED_MORE, HelloReader

OPENSSL = shutil.which("openssl")

#: A GREASE extension type (RFC 8701): clients send these with any
#: content, and servers ignore them.
GREASE = 0x1A1A


def python_hello(
    server_hostname: Optional[str] = "db.example.com",
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> bytes:
    """
    The first flight of Python's C{ssl} client, as sent on the wire.

    @param server_hostname: The name it asks for; C{None} for no SNI.
    @param maximum: The highest TLS version it offers.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def openssl_hello(server_name: str, *extra: str) -> bytes:
    """
    The first flight of C{openssl s_client -servername NAME}, read by a
    listening socket on 127.0.0.1 until the hello is whole.
    """
    assert OPENSSL is not None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(10)
        port = listener.getsockname()[1]
        process = subprocess.Popen(
            [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", server_name, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                reader = HelloReader()
                deadline = time.monotonic() + 10
                while reader.feed(data) is NEED_MORE and time.monotonic() < deadline:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        finally:
            process.kill()
            process.wait(10)
            if process.stdin is not None:
                process.stdin.close()
    return data


def handshake_of(records: bytes) -> bytes:
    """
    The handshake bytes carried by a run of whole TLS records.
    """
    message = b""
    pos = 0
    while pos < len(records):
        length = int.from_bytes(records[pos + 3 : pos + 5], "big")
        message += records[pos + 5 : pos + 5 + length]
        pos += 5 + length
    return message


def frame(message: bytes, sizes: Sequence[int] = (), version: bytes = b"\x03\x01") -> bytes:
    """
    Put a handshake message into handshake records.

    @param sizes: The payload size of each record but the last, which
        takes the rest; none for a single record.
    """
    out: List[bytes] = []
    pos = 0
    for size in list(sizes) + [len(message)]:
        piece = message[pos : pos + size]
        if not piece:
            break
        out.append(b"\x16" + version + len(piece).to_bytes(2, "big") + piece)
        pos += len(piece)
    return b"".join(out)


def with_extension(message: bytes, kind: int, value: bytes) -> bytes:
    """
    A ClientHello message with one more extension, first in the list.
    """
    body = message[4:]
    pos = 2 + 32
    pos += 1 + body[pos]
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 1 + body[pos]
    extensions = body[pos + 2 :]
    added = kind.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value
    extensions = added + extensions
    body = body[:pos] + len(extensions).to_bytes(2, "big") + extensions
    return b"\x01" + len(body).to_bytes(3, "big") + body


def large_hello(size: int = 1900, server_hostname: str = "db.example.com") -> bytes:
    """
    A real hello grown to about C{size} bytes of handshake with a GREASE
    extension, the size of a hello with an ML-KEM key share, in one record.
    """
    message = handshake_of(python_hello(server_hostname))
    padding = max(0, size - len(message) - 4)
    return frame(with_extension(message, GREASE, b"\0" * padding))
