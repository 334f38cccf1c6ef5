"""
Running l4lb as a user does: a config file on disk, C{twistd} in a
subprocess, real sockets on the loopback interface.

The pieces: free-port allocation, a config writer, a parser for HAProxy's
tcplog lines, L{Balancer} (the subprocess, its output, its file descriptors
and memory) and small blocking clients. Nothing here waits on a fixed sleep:
waits poll a condition, bounded in time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import attr

from .backends import CHUNK, TRAILER_SIZE, family_for, pattern, recv_until_eof

READY_TIMEOUT = 15.0
"""Seconds a balancer may take to log that every frontend started."""

STOP_TIMEOUT = 15.0
"""Seconds a balancer may take to exit after SIGTERM."""

CLIENT_TIMEOUT = 30.0
"""Seconds any single client socket operation may block."""


def bin_dir() -> str:
    """
    The directory of the running interpreter's scripts (C{twistd}, C{l4lb}).
    """
    return os.path.dirname(sys.executable)


def twistd_path() -> str:
    """
    The C{twistd} of the venv the tests run in.
    """
    return os.path.join(bin_dir(), "twistd")


def l4lb_path() -> str:
    """
    The C{l4lb} console script of the venv the tests run in.
    """
    return os.path.join(bin_dir(), "l4lb")


def subprocess_env() -> Dict[str, str]:
    """
    The environment for l4lb subprocesses: unbuffered output and no
    C{PYTHONPATH}, so that the installed package runs, not the source tree.
    """
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """
    Poll C{condition} until it is true or C{timeout} seconds have passed.

    @return: Whether the condition became true.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# -- addresses ---------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """
    A port that was free a moment ago: bind port 0, read it, close.

    Also serves as a "refusing" server address: nothing listens there.

    @param host: The loopback address to allocate on.
    """
    with socket.socket(family_for(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """
    Whether we can bind C{host:port} ourselves (so nobody else holds it).
    """
    with socket.socket(family_for(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError:
            return False
        return True


def ipv6_loopback() -> bool:
    """
    Whether this machine can bind C{::1}.
    """
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def hostport(host: str, port: int) -> str:
    """
    An address as the config file writes it: C{127.0.0.1:80} or C{[::1]:80}.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- config ------------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ServerLine:
    """
    One C{server NAME = ADDRESS OPTIONS} line.
    """

    name: str
    host: str
    port: int
    options: str = ""

    def render(self) -> str:
        """
        The line as it appears in the config file.
        """
        line = f"server {self.name} = {hostport(self.host, self.port)}"
        return f"{line} {self.options}" if self.options else line


@attr.s(frozen=True, slots=True, auto_attribs=True)
class BackendSection:
    """
    A C{[backend NAME]} section.
    """

    name: str
    servers: Sequence[ServerLine]
    balance: str = "roundrobin"
    extra: Mapping[str, str] = attr.Factory(dict)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class FrontendSection:
    """
    A C{[frontend NAME]} section binding one address.
    """

    name: str
    host: str
    port: int
    backend: str
    extra: Mapping[str, str] = attr.Factory(dict)


DEFAULTS: Mapping[str, str] = {
    "mode": "tcp",
    "timeout connect": "2s",
    "timeout client": "30s",
    "timeout server": "30s",
    "retries": "3",
}
"""The C{[defaults]} every test starts from."""

GLOBAL: Mapping[str, str] = {"maxconn": "4096", "log": "stdout"}
"""The C{[global]} every test starts from."""


def _section(header: str, items: Mapping[str, str]) -> List[str]:
    return [f"[{header}]"] + [f"{k} = {v}" for k, v in items.items()] + [""]


def render_config(
    frontends: Sequence[FrontendSection],
    backends: Sequence[BackendSection],
    defaults: Optional[Mapping[str, str]] = None,
    global_: Optional[Mapping[str, str]] = None,
) -> str:
    """
    The text of an lb.ini.

    @param defaults: Entries added to (or replacing) L{DEFAULTS}.
    @param global_: Entries added to (or replacing) L{GLOBAL}.
    """
    lines = _section("global", {**GLOBAL, **(global_ or {})})
    lines += _section("defaults", {**DEFAULTS, **(defaults or {})})
    for fe in frontends:
        lines += _section(
            f"frontend {fe.name}",
            {"bind": hostport(fe.host, fe.port), "default_backend": fe.backend, **fe.extra},
        )
    for be in backends:
        lines.append(f"[backend {be.name}]")
        lines.append(f"balance = {be.balance}")
        lines += [f"{k} = {v}" for k, v in be.extra.items()]
        lines += [s.render() for s in be.servers]
        lines.append("")
    return "\n".join(lines)


# -- tcplog ------------------------------------------------------------------

TCPLOG = re.compile(
    r"(?P<client_ip>[^\s\[\]]+):(?P<client_port>\d+)"
    r" \[(?P<accept_date>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3})\]"
    r" (?P<frontend>\S+)"
    r" (?P<backend>[^\s/]+)/(?P<server>\S+)"
    r" (?P<tw>-?\d+)/(?P<tc>-?\d+)/\+?(?P<tt>-?\d+)"
    r" \+?(?P<bytes>\d+)"
    r" (?P<termination>\S\S)"
    r" (?P<actconn>\d+)/(?P<feconn>\d+)/(?P<beconn>\d+)/(?P<srv_conn>\d+)"
    r"/(?P<redispatched>\+?)(?P<retries>\d+)"
    r" (?P<srv_queue>\d+)/(?P<backend_queue>\d+)(?: \{[^{}]*\})*\s*$"
)
"""One connection in HAProxy's tcplog layout, at the end of a line (captured
values in braces, such as the TLS server name, may follow)."""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TcpLogRecord:
    """
    A parsed tcplog line.

    @ivar tw: Milliseconds queued (-1: never queued).
    @ivar tc: Milliseconds to connect to the server, retries included (-1:
        never connected).
    @ivar tt: Milliseconds from accept to close.
    @ivar bytes: Bytes from server to client.
    @ivar termination: The two-character termination state.
    @ivar redispatched: Whether the retries were written C{+N}.
    """

    client_ip: str
    client_port: int
    accept_date: str
    frontend: str
    backend: str
    server: str
    tw: int
    tc: int
    tt: int
    bytes: int
    termination: str
    actconn: int
    feconn: int
    beconn: int
    srv_conn: int
    retries: int
    redispatched: bool
    srv_queue: int
    backend_queue: int
    line: str


def parse_tcplog(line: str) -> Optional[TcpLogRecord]:
    """
    Parse a tcplog line (raw, or after a log prefix).

    @return: The record, or C{None} when the line is not a tcplog line.
    """
    m = TCPLOG.search(line)
    if m is None:
        return None
    g = m.groupdict()
    text = {"client_ip", "accept_date", "frontend", "backend", "server", "termination"}
    values: Dict[str, object] = {}
    for key, value in g.items():
        if key == "redispatched":
            values[key] = value == "+"
        elif key in text:
            values[key] = value
        else:
            values[key] = int(value)
    return TcpLogRecord(line=line, **values)  # type: ignore[arg-type]


# -- the balancer process ----------------------------------------------------


class BalancerFailed(AssertionError):
    """
    The balancer did not do what was expected; the message has its output.
    """


class Balancer:
    """
    A C{twistd} subprocess and everything it printed.

    @ivar argv: The command line.
    @ivar process: The C{Popen}, once started.
    """

    def __init__(
        self,
        argv: Sequence[str],
        cwd: str,
        ready_patterns: Iterable[str] = (),
    ) -> None:
        """
        @param argv: The full command line.
        @param cwd: The directory to run in (keep it outside the source tree).
        @param ready_patterns: Regular expressions that must each match a line
            of output before the process counts as ready.
        """
        self.argv = list(argv)
        self.cwd = cwd
        self.ready_patterns = [re.compile(p) for p in ready_patterns]
        self.process: Optional[subprocess.Popen[bytes]] = None
        self._stdout: List[str] = []
        self._stderr: List[str] = []
        self._lock = threading.Lock()
        self._readers: List[threading.Thread] = []

    @classmethod
    def l4lb(
        cls,
        config: str,
        cwd: str,
        frontends: Iterable[str],
        extra: Sequence[str] = (),
        reactor: Optional[str] = None,
    ) -> "Balancer":
        """
        A balancer started the documented way:
        C{twistd -n --pidfile= l4lb --config FILE}, ready once it logged
        C{Proxy NAME started.} for every frontend and the reactor runs.
        The services start before the reactor does, and the reactor opens
        descriptors of its own when it starts (a pipe for its signal
        handling): a test's descriptor baseline is only right after
        L{l4lb.gcfreeze}'s line, which the running reactor logs.

        @param reactor: twistd's C{--reactor} (C{None}: twistd's default).
        """
        chosen = [f"--reactor={reactor}"] if reactor else []
        argv = [twistd_path(), "-n", "--pidfile=", *chosen, "l4lb", "--config", config, *extra]
        ready = [rf"\bProxy {re.escape(name)} started\." for name in frontends]
        # The main process's line (a worker's reads "Worker N: Froze").
        ready.append(r"\] Froze \d+ start-up objects")
        return cls(argv, cwd, ready)

    # process control

    def start(self) -> "Balancer":
        """
        Start the process and the threads collecting its output.

        @return: C{self}.
        """
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        streams = ((self.process.stdout, self._stdout), (self.process.stderr, self._stderr))
        for stream, sink in streams:
            thread = threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            thread.start()
            self._readers.append(thread)
        return self

    def _read(self, stream: object, sink: List[str]) -> None:
        for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
            with self._lock:
                sink.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

    @property
    def pid(self) -> int:
        """
        The process id.
        """
        assert self.process is not None, "not started"
        return self.process.pid

    def running(self) -> bool:
        """
        Whether the process has not exited yet.
        """
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> "Balancer":
        """
        Wait until every ready pattern matched a line of output.

        @raise BalancerFailed: When the process exits first or C{timeout}
            passes; the message shows what it printed.
        @return: C{self}.
        """
        def ready() -> bool:
            if not self.running():
                return True
            text = self.lines() + self.stderr_lines()
            return all(any(p.search(line) for line in text) for p in self.ready_patterns)

        if not wait_until(ready, timeout):
            self.kill()
            self.fail(f"not ready after {timeout:.0f}s")
        if not self.running():
            self.join_output()
            status = self.process.returncode if self.process else None
            self.fail(f"exited with {status} before it was ready")
        return self

    def stop(self, timeout: float = STOP_TIMEOUT, expected: Sequence[int] = (0,)) -> int:
        """
        Send SIGTERM and wait for the exit; kill it if it does not exit in
        time. Either way nothing is left running.

        @param expected: The exit statuses that count as clean. l4lb exits
            with 0; a stock twistd service re-raises the signal and so ends
            with C{-SIGTERM}.
        @raise BalancerFailed: Unless it exited by itself with an expected
            status.
        @return: The exit status.
        """
        assert self.process is not None, "not started"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.fail(f"still running {timeout:.0f}s after SIGTERM (killed)")
        self.join_output()
        if self.process.returncode not in expected:
            self.fail(f"exited with status {self.process.returncode} after SIGTERM")
        return self.process.returncode

    def kill(self) -> None:
        """
        SIGKILL the process if it still runs, and reap it.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        self.join_output()

    def join_output(self, timeout: float = 5.0) -> None:
        """
        Wait (bounded) for the output readers to reach EOF.
        """
        deadline = time.monotonic() + timeout
        for thread in self._readers:
            thread.join(max(0.0, deadline - time.monotonic()))

    # what it printed

    def lines(self) -> List[str]:
        """
        Everything printed on stdout so far, one string per line.
        """
        with self._lock:
            return list(self._stdout)

    def stderr_lines(self) -> List[str]:
        """
        Everything printed on stderr so far.
        """
        with self._lock:
            return list(self._stderr)

    def output(self, last: int = 80) -> str:
        """
        The last lines of stdout and stderr, for failure messages.
        """
        out = self.lines()[-last:]
        err = self.stderr_lines()[-last:]
        return "--- stdout ---\n" + "\n".join(out) + "\n--- stderr ---\n" + "\n".join(err)

    def fail(self, why: str) -> None:
        """
        Raise L{BalancerFailed} with C{why}, the command line and the output.
        """
        raise BalancerFailed(f"{why}\n$ {' '.join(self.argv)}\n{self.output()}")

    def log_records(self) -> List[TcpLogRecord]:
        """
        Every tcplog line printed so far, parsed.
        """
        records = []
        for line in self.lines():
            record = parse_tcplog(line)
            if record is not None:
                records.append(record)
        return records

    def wait_for_records(self, count: int, timeout: float = 10.0) -> List[TcpLogRecord]:
        """
        Wait until at least C{count} tcplog lines were printed.

        @raise BalancerFailed: When they do not come in time.
        @return: All records printed so far.
        """
        if not wait_until(lambda: len(self.log_records()) >= count, timeout):
            self.fail(f"expected {count} tcplog lines, got {len(self.log_records())}")
        return self.log_records()

    # resources

    def fd_count(self) -> int:
        """
        The number of file descriptors the process has open.
        """
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_targets(self) -> List[str]:
        """
        What each open file descriptor points to, for failure messages.
        """
        targets = []
        for fd in sorted(os.listdir(f"/proc/{self.pid}/fd"), key=int):
            try:
                targets.append(f"{fd} -> {os.readlink(f'/proc/{self.pid}/fd/{fd}')}")
            except OSError:
                pass
        return targets

    def rss(self) -> int:
        """
        The resident set size (VmRSS) of the process, in bytes.
        """
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise BalancerFailed("no VmRSS in /proc status")


def run_command(
    argv: Sequence[str], cwd: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """
    Run a short command (C{--check}, C{--help}) to completion, bounded.
    """
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- clients -----------------------------------------------------------------


def runtime_command(path: str, line: str, timeout: float = 10.0) -> str:
    """
    One command on a runtime API's UNIX socket (l4lb's or HAProxy's), as
    C{socat stdio UNIX-CONNECT:PATH} sends it: the whole answer.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode("utf-8", "replace")


def show_stat(path: str) -> Dict[Tuple[str, str], Dict[str, str]]:
    """
    C{show stat} on the runtime socket at C{path}, by (pxname, svname).
    """
    text = runtime_command(path, "show stat").lstrip("# ")
    return {(r["pxname"], r["svname"]): r for r in csv.DictReader(io.StringIO(text)) if r.get("svname")}



def connect(port: int, host: str = "127.0.0.1", timeout: float = CLIENT_TIMEOUT) -> socket.socket:
    """
    A blocking client socket connected to C{host:port}.
    """
    sock = socket.socket(family_for(host), socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect((host, port))
    return sock


def abort(sock: socket.socket) -> None:
    """
    Close with a reset (SO_LINGER 0): for clients that walk away.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_line(sock: socket.socket, limit: int = 1024) -> Tuple[bytes, bytes]:
    """
    Read up to and including the first newline.

    @return: The line without the newline, and any bytes read past it.
    """
    buf = b""
    while b"\n" not in buf:
        data = sock.recv(CHUNK)
        if not data:
            raise EOFError(f"EOF before a full line: {buf!r}")
        buf += data
        if len(buf) > limit:
            raise ValueError(f"no newline in {buf[:80]!r}...")
    line, _, rest = buf.partition(b"\n")
    return line, rest


def finish(sock: socket.socket, timeout: float = CLIENT_TIMEOUT) -> bytes:
    """
    Close our side, read whatever is left until EOF, then close: the orderly
    end of a connection.

    @return: The bytes read after our FIN.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        _, data = recv_until_eof(sock, time.monotonic() + timeout)
        return data
    finally:
        sock.close()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class EchoResult:
    """
    One conversation with an L{EchoServer}.

    @ivar server: The name the server announced.
    @ivar echoed: What came back after the name.
    @ivar local_port: The client's port, as the balancer logs it.
    """

    server: str
    echoed: bytes
    local_port: int


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """
    Read exactly C{size} bytes.

    @raise EOFError: When the peer closes first.
    """
    parts: List[bytes] = []
    got = 0
    while got < size:
        data = sock.recv(min(CHUNK, size - got))
        if not data:
            raise EOFError(f"EOF after {got} of {size} bytes")
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def echo_once(port: int, payload: bytes = b"", host: str = "127.0.0.1") -> EchoResult:
    """
    Connect, read the server's name, send C{payload} and read its echo, then
    close our side and read until EOF, then close.

    The echo is read before the client closes its side, so this works the
    same whether or not the relay keeps half-closed connections open.

    @return: The name, and the echo followed by anything that came after it
        (nothing, when the server behaves).
    """
    sock = connect(port, host)
    local_port = sock.getsockname()[1]
    try:
        name, rest = read_line(sock)
        if payload:
            sock.sendall(payload)
        if len(rest) < len(payload):
            rest += read_exactly(sock, len(payload) - len(rest))
    except BaseException:
        sock.close()
        raise
    rest += finish(sock)
    return EchoResult(name.decode("ascii"), rest, local_port)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class HashExchange:
    """
    One conversation with a L{HashServer}, seen from the client.

    @ivar sent_digest: SHA-256 of what the client sent.
    @ivar server_received_digest: What the server says it received.
    @ivar received: Bytes of pattern the client received (without trailer).
    @ivar received_digest: SHA-256 of those bytes, computed by the client.
    @ivar server_sent_digest: What the server says it sent.
    @ivar local_port: The client's port.
    """

    sent_digest: bytes
    server_received_digest: bytes
    received: int
    received_digest: bytes
    server_sent_digest: bytes
    local_port: int


def hash_exchange(
    port: int, send_size: int, reply_size: int, seed: int = 11, host: str = "127.0.0.1"
) -> HashExchange:
    """
    Send C{send_size} bytes of pattern, shut the write half, then receive the
    whole reply of a L{HashServer} configured for C{reply_size} bytes.
    """
    sock = connect(port, host)
    local_port = sock.getsockname()[1]
    try:
        sent = hashlib.sha256()
        for block in pattern(send_size, seed):
            sent.update(block)
            sock.sendall(block)
        sock.shutdown(socket.SHUT_WR)
        received = hashlib.sha256()
        count = 0
        tail = b""
        deadline = time.monotonic() + 4 * CLIENT_TIMEOUT
        while time.monotonic() < deadline:
            data = sock.recv(CHUNK)
            if not data:
                break
            if count < reply_size:
                take = data[: reply_size - count]
                received.update(take)
                count += len(take)
                data = data[len(take):]
            tail += data
        else:
            raise TimeoutError(f"no EOF after {count} bytes")
    finally:
        sock.close()
    if len(tail) != TRAILER_SIZE:
        raise AssertionError(
            f"got {count} bytes of {reply_size} and a trailer of {len(tail)} bytes"
        )
    return HashExchange(
        sent.digest(), tail[:32], count, received.digest(), tail[32:], local_port
    )


def receive_until_eof(port: int, host: str = "127.0.0.1") -> Tuple[bytes, int]:
    """
    Connect, send nothing, read until the other side closes, close.

    @return: The bytes received and the client's port.
    """
    sock = connect(port, host)
    local_port = sock.getsockname()[1]
    try:
        _, data = recv_until_eof(sock, time.monotonic() + CLIENT_TIMEOUT)
    finally:
        sock.close()
    return data, local_port
