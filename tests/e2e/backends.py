"""
Real TCP servers for the end-to-end tests, each served by plain blocking
sockets in threads.

Every server listens on a loopback address and port chosen by the kernel,
handles each accepted connection in its own thread, records what it saw, and
stops by itself: socket operations carry a timeout and every loop ends on EOF,
on an error or when the server is stopped.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from typing import Iterator, List, Optional, Tuple

import attr

IO_TIMEOUT = 30.0
"""Seconds any single socket operation of a server may block."""

CHUNK = 64 * 1024
"""Bytes read or written per socket call."""

TRAILER_SIZE = 64
"""Bytes of L{HashServer}'s trailer: two SHA-256 digests."""


def family_for(host: str) -> socket.AddressFamily:
    """
    The address family of a numeric loopback address.

    @param host: C{"127.0.0.1"} or C{"::1"}.
    @return: C{AF_INET6} for an IPv6 address, C{AF_INET} otherwise.
    """
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def pattern(size: int, seed: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """
    Deterministic pseudo-random bytes, produced in chunks.

    @param size: Total bytes to produce.
    @param seed: The seed; the same seed always gives the same bytes.
    @param chunk: The size of each chunk but the last.
    @return: An iterator of byte strings whose lengths add up to C{size}.
    """
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def pattern_digest(size: int, seed: int) -> bytes:
    """
    The SHA-256 of L{pattern}C{(size, seed)}.

    @param size: Total bytes.
    @param seed: The seed.
    @return: The 32-byte digest.
    """
    h = hashlib.sha256()
    for block in pattern(size, seed):
        h.update(block)
    return h.digest()


def recv_until_eof(
    sock: socket.socket, deadline: float, sink: Optional["hashlib._Hash"] = None
) -> Tuple[int, bytes]:
    """
    Read from C{sock} until EOF.

    @param sock: A connected socket with a timeout set.
    @param deadline: A C{time.monotonic()} value after which reading stops
        with L{TimeoutError}.
    @param sink: When given, every byte is fed to it and not kept.
    @return: The number of bytes read and, without a sink, the bytes.
    """
    parts: List[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no EOF after {total} bytes")
        data = sock.recv(CHUNK)
        if not data:
            return total, b"".join(parts)
        total += len(data)
        if sink is not None:
            sink.update(data)
        else:
            parts.append(data)


class ThreadedServer:
    """
    A listening socket whose connections are each handled by a thread.

    Subclasses implement L{handle}. Exceptions raised by C{handle} are kept in
    L{errors} for the tests to look at.

    @ivar name: A label (servers that announce themselves use it).
    @ivar host: The address it listens on.
    @ivar port: The port the kernel gave it.
    @ivar accepted: How many connections it accepted.
    @ivar finished: How many connection handlers returned.
    @ivar errors: C{(exception, repr)} for each handler that raised.
    """

    def __init__(self, name: str = "srv", host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self._listener = socket.socket(family_for(host), socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(512)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self.finished = 0
        self.errors: List[Tuple[BaseException, str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._handlers: List[threading.Thread] = []
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"accept-{name}", daemon=True
        )

    @property
    def address(self) -> Tuple[str, int]:
        """
        The C{(host, port)} it listens on.
        """
        return (self.host, self.port)

    def start(self) -> "ThreadedServer":
        """
        Start accepting.

        @return: C{self}.
        """
        self._acceptor.start()
        return self

    @property
    def stopping(self) -> bool:
        """
        Whether L{stop} was called; long-running handlers check it.
        """
        return self._stopping.is_set()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(IO_TIMEOUT)
            thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"conn-{self.name}", daemon=True
            )
            with self._lock:
                self.accepted += 1
                self._handlers = [t for t in self._handlers if t.is_alive()]
                self._handlers.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except Exception as e:
            with self._lock:
                self.errors.append((e, repr(e)))
        finally:
            conn.close()
            with self._lock:
                self.finished += 1

    def handle(self, conn: socket.socket) -> None:
        """
        Serve one accepted connection; the socket is closed afterwards.

        @param conn: The accepted socket, with a timeout of L{IO_TIMEOUT}.
        """
        raise NotImplementedError()

    def stop(self, timeout: float = 10.0) -> None:
        """
        Stop accepting, close the listening socket and wait (bounded) for the
        connection handlers to return.

        @param timeout: Seconds to wait for the threads in all.
        """
        self._stopping.set()
        deadline = time.monotonic() + timeout
        if self._acceptor.is_alive():
            self._acceptor.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        with self._lock:
            handlers = list(self._handlers)
        for thread in handlers:
            thread.join(max(0.0, deadline - time.monotonic()))


def drain_and_close(conn: socket.socket, deadline: float) -> None:
    """
    Send FIN, then read (discarding) until the peer closes too, so that the
    close is orderly and never turns into a reset.

    @param conn: A connected socket.
    @param deadline: A C{time.monotonic()} value bounding the wait.
    """
    try:
        conn.shutdown(socket.SHUT_WR)
        while time.monotonic() < deadline:
            if not conn.recv(CHUNK):
                break
    except OSError:
        pass


class EchoServer(ThreadedServer):
    """
    Sends its name and a newline, then echoes everything until EOF, then
    closes its side.

    @cvar greeting: Whether it sends its name first.
    """

    greeting = True

    def handle(self, conn: socket.socket) -> None:
        if self.greeting:
            conn.sendall(self.name.encode("ascii") + b"\n")
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline:
            data = conn.recv(CHUNK)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class HashResult:
    """
    What L{HashServer} saw on one connection.

    @ivar received: Bytes received before EOF.
    @ivar received_digest: SHA-256 of those bytes.
    @ivar sent: Bytes of pattern sent back (without the trailer).
    @ivar sent_digest: SHA-256 of those bytes.
    """

    received: int
    received_digest: bytes
    sent: int
    sent_digest: bytes


class HashServer(ThreadedServer):
    """
    Hashes everything it receives until EOF, then sends C{reply_size} bytes
    of L{pattern} followed by a trailer (the SHA-256 of what it received and
    the SHA-256 of what it sent, L{TRAILER_SIZE} bytes), then closes.

    @ivar results: One L{HashResult} per finished connection.
    """

    def __init__(
        self, reply_size: int, seed: int = 7, name: str = "hash", host: str = "127.0.0.1"
    ) -> None:
        super().__init__(name, host)
        self.reply_size = reply_size
        self.seed = seed
        self.results: List[HashResult] = []

    def handle(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + 4 * IO_TIMEOUT
        received = hashlib.sha256()
        count, _ = recv_until_eof(conn, deadline, received)
        sent = hashlib.sha256()
        for block in pattern(self.reply_size, self.seed):
            sent.update(block)
            conn.sendall(block)
        conn.sendall(received.digest() + sent.digest())
        with self._lock:
            self.results.append(
                HashResult(count, received.digest(), self.reply_size, sent.digest())
            )
        conn.shutdown(socket.SHUT_WR)


class CloseFirstServer(ThreadedServer):
    """
    Sends C{payload} on accept and closes its side at once, before the client
    has closed; then waits (bounded) for the client's close.
    """

    def __init__(self, payload: bytes, name: str = "closer", host: str = "127.0.0.1") -> None:
        super().__init__(name, host)
        self.payload = payload

    def handle(self, conn: socket.socket) -> None:
        conn.sendall(self.payload)
        drain_and_close(conn, time.monotonic() + IO_TIMEOUT)


class StreamServer(ThreadedServer):
    """
    Sends C{total} bytes as fast as the socket takes them, counting what the
    kernel accepted in L{sent}.

    @ivar sent: Bytes handed to the kernel so far, over all connections.
    @ivar last_progress: C{time.monotonic()} of the last send that moved data.
    """

    def __init__(self, total: int, name: str = "stream", host: str = "127.0.0.1") -> None:
        super().__init__(name, host)
        self.total = total
        self.sent = 0
        self.last_progress = time.monotonic()

    def handle(self, conn: socket.socket) -> None:
        block = memoryview(bytes(range(256)) * (CHUNK // 256))
        conn.settimeout(0.05)
        left = self.total
        deadline = time.monotonic() + 4 * IO_TIMEOUT
        while left > 0 and not self.stopping and time.monotonic() < deadline:
            try:
                n = conn.send(block[: min(len(block), left)])
            except socket.timeout:
                continue
            except OSError:
                return
            left -= n
            self.sent += n
            self.last_progress = time.monotonic()

    def wait_stalled(self, stall: float = 1.0, timeout: float = 30.0) -> bool:
        """
        Wait until at least one byte was sent and then nothing more for
        C{stall} seconds, or until everything was sent.

        @param stall: Seconds without progress that count as blocked.
        @param timeout: Seconds to wait at most.
        @return: Whether the server stalled (or finished) within C{timeout}.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            quiet = time.monotonic() - self.last_progress
            if self.sent >= self.total or (self.sent > 0 and quiet >= stall):
                return True
            time.sleep(0.02)
        return False


def _rebind(server: ThreadedServer, port: int) -> None:
    """
    Make C{server} listen on C{port} instead of the one the kernel chose, so
    that a server can be started again where a stopped one listened.
    """
    server._listener.close()
    listener = socket.socket(family_for(server.host), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((server.host, port))
    listener.listen(512)
    listener.settimeout(0.05)
    server._listener = listener
    server.port = port


class EchoOnPort(EchoServer):
    """
    An L{EchoServer} on a given port (0: any), to restart a server in place.
    """

    def __init__(self, name: str, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(name, host)
        if port:
            _rebind(self, port)


class RedisLike(ThreadedServer):
    """
    Answers each C{PING} line with L{reply} (C{+PONG} by default) and keeps
    the connection open until the client closes it, as Redis does; C{QUIT}
    is answered C{+OK} and closes.

    @ivar reply: What a C{PING} gets; change it to C{-ERR ...} to make the
        server unhealthy.
    """

    reply = b"+PONG\r\n"

    def handle(self, conn: socket.socket) -> None:
        buffer = b""
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline and not self.stopping:
            data = conn.recv(CHUNK)
            if not data:
                return
            buffer += data
            while b"\r\n" in buffer:
                line, buffer = buffer.split(b"\r\n", 1)
                if line.upper() == b"PING":
                    conn.sendall(self.reply)
                elif line.upper() == b"QUIT":
                    conn.sendall(b"+OK\r\n")
                    return


class AgentServer(ThreadedServer):
    """
    A load-feedback agent: answers every connection with L{reply} and a
    newline, then closes.

    @ivar reply: The agent's answer, e.g. C{ready}, C{drain}, C{75%}.
    """

    reply = "ready"

    def handle(self, conn: socket.socket) -> None:
        conn.sendall(self.reply.encode("ascii") + b"\n")


class ConcurrencyServer(ThreadedServer):
    """
    Sends its name and a newline, then reads until EOF; it records how many
    connections it holds at once.

    @ivar holding: Connections open now.
    @ivar most: The most connections it held at any moment.
    """

    def __init__(self, name: str = "counted", host: str = "127.0.0.1") -> None:
        super().__init__(name, host)
        self.holding = 0
        self.most = 0

    def handle(self, conn: socket.socket) -> None:
        with self._lock:
            self.holding += 1
            self.most = max(self.most, self.holding)
        try:
            conn.sendall(self.name.encode("ascii") + b"\n")
            deadline = time.monotonic() + IO_TIMEOUT
            while time.monotonic() < deadline and not self.stopping:
                if not conn.recv(CHUNK):
                    break
        finally:
            with self._lock:
                self.holding -= 1


class SilentServer(ThreadedServer):
    """
    Accepts and then never reads nor writes: a server that stopped reading.
    Each connection is held until the peer gives up on it or the server
    stops (bounded by L{IO_TIMEOUT}).
    """

    def handle(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + IO_TIMEOUT
        while not self.stopping and time.monotonic() < deadline:
            # Only looks for a hang-up (MSG_PEEK reads nothing away): the
            # bytes sent stay unread in the socket.
            try:
                conn.settimeout(0.05)
                if conn.recv(1, socket.MSG_PEEK) == b"":
                    return
            except socket.timeout:
                continue
            except OSError:
                return
            time.sleep(0.05)
