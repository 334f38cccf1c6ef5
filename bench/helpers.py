"""
Small load generators and servers run as separate processes, so that they
can be pinned away from the proxy.  Standard library only; each stops by
itself (the servers when their parent closes their standard input).

    python helpers.py sink PORT PORT
    python helpers.py source PORT SECONDS
    python helpers.py udp-echo PORT PORT
    python helpers.py udp-load PORT SIZE SECONDS [SOCKETS [WINDOW]]

The loads print one JSON line with what they did.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import sys
import threading
import time
from typing import List

HOST = "127.0.0.1"
CHUNK = 1 << 20
LIMIT = 3600.0  # no helper lives longer than this, whatever happens
_TRUNC = getattr(socket, "MSG_TRUNC", 0)


def _exit_with_parent() -> None:
    """
    End the process when the parent closes our standard input, or after
    L{LIMIT} seconds.
    """

    def watch() -> None:
        try:
            sys.stdin.buffer.read()
        finally:
            os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    timer = threading.Timer(LIMIT, lambda: os._exit(0))
    timer.daemon = True
    timer.start()


def _drain(conn: socket.socket) -> None:
    """
    Count what a connection sends until it shuts its write half, then
    answer with the count (8 bytes, big-endian) and close.
    """
    buf = bytearray(CHUNK)
    total = 0
    try:
        while True:
            # MSG_TRUNC on TCP discards without copying to user space.
            n = conn.recv_into(buf, CHUNK, _TRUNC) if _TRUNC else conn.recv_into(buf)
            if not n:
                break
            total += n
        conn.sendall(struct.pack("!Q", total))
    except OSError:
        pass
    finally:
        conn.close()


def sink(ports: List[int]) -> None:
    """
    Accept on each port; drain every connection in its own thread.
    """
    _exit_with_parent()
    selector = selectors.DefaultSelector()
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        s.listen(512)
        selector.register(s, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
            threading.Thread(target=_drain, args=(conn,), daemon=True).start()


def source(port: int, seconds: float) -> None:
    """
    Send as fast as possible for C{seconds}, shut the write half and wait
    for the sink's count.  Prints C{bytes} (confirmed by the sink) and
    C{seconds} (from the first byte to the count).
    """
    data = memoryview(bytes(CHUNK))
    sock = socket.create_connection((HOST, port), timeout=30.0)
    start = time.monotonic()
    deadline = start + seconds
    sent = 0
    while time.monotonic() < deadline:
        sent += sock.send(data)
    sock.shutdown(socket.SHUT_WR)
    answer = b""
    while len(answer) < 8:
        more = sock.recv(8 - len(answer))
        if not more:
            break
        answer += more
    elapsed = time.monotonic() - start
    sock.close()
    confirmed = struct.unpack("!Q", answer)[0] if len(answer) == 8 else 0
    print(json.dumps({"bytes": confirmed, "sent": sent, "seconds": elapsed}))


def udp_echo(ports: List[int]) -> None:
    """
    Send every datagram back to where it came from.
    """
    _exit_with_parent()
    selector = selectors.DefaultSelector()
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((HOST, port))
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            ready: socket.socket = key.fileobj  # type: ignore[assignment]
            recvfrom = ready.recvfrom
            sendto = ready.sendto
            for _ in range(256):
                try:
                    data, addr = recvfrom(65536)
                except BlockingIOError:
                    break
                try:
                    sendto(data, addr)
                except OSError:
                    pass


def udp_load(port: int, size: int, seconds: float, sockets: int, window: int) -> None:
    """
    Keep C{window} datagrams in flight on each of C{sockets} connected
    sockets for C{seconds}, sending one for each reply; when nothing comes
    back for 20 ms (datagrams lost), refill the windows.  Prints
    C{received}, C{sent} and C{seconds}.
    """
    payload = b"x" * size
    selector = selectors.DefaultSelector()
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.connect((HOST, port))
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
        socks.append(s)
    sent = received = 0

    def refill() -> int:
        n = 0
        for s in socks:
            for _ in range(window):
                try:
                    s.send(payload)
                    n += 1
                except OSError:
                    break
        return n

    start = time.monotonic()
    deadline = start + seconds
    sent += refill()
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        events = selector.select(min(0.02, deadline - now))
        if not events:
            sent += refill()
            continue
        for key, _ in events:
            ready: socket.socket = key.fileobj  # type: ignore[assignment]
            recv = ready.recv
            send = ready.send
            for _ in range(window):
                try:
                    recv(65536)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                received += 1
                try:
                    send(payload)
                    sent += 1
                except OSError:
                    pass
    elapsed = time.monotonic() - start
    print(json.dumps({"received": received, "sent": sent, "seconds": elapsed}))


def main(argv: List[str]) -> None:
    """
    Dispatch on the first argument.
    """
    command, args = argv[0], argv[1:]
    if command == "sink":
        sink([int(p) for p in args])
    elif command == "source":
        source(int(args[0]), float(args[1]))
    elif command == "udp-echo":
        udp_echo([int(p) for p in args])
    elif command == "udp-load":
        extra = [int(a) for a in args[3:]] + [4, 32][len(args[3:]) :]
        udp_load(int(args[0]), int(args[1]), float(args[2]), extra[0], extra[1])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
