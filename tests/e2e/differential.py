"""
HAProxy as the reference: one configuration written in both formats, run
under HAProxy (Debian's C{haproxy}) and under l4lb (C{twistd l4lb}) side by
side on loopback, against the same backend servers, with both logging
tcplog lines to a syslog socket of ours.

The pieces: L{Setup} (some L{Proxy} pairs of a frontend and its backend,
each frontend on its own port) renders a C{haproxy.cfg} and an C{lb.ini};
L{SyslogSink} collects what each side
logs; L{Side} is one running balancer with its runtime socket;
L{running_pair} starts both. Used by the C{test_haproxy_differential*}
modules and by C{bench/compare_haproxy.py}, which prints what differs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import attr

from .harness import (
    runtime_command,
    Balancer,
    TcpLogRecord,
    free_port,
    hostport,
    parse_tcplog,
    subprocess_env,
    wait_until,
)

HAPROXY_HINT = "haproxy is needed as the reference: apt-get install haproxy"

UNHANDLED = ("Traceback (most recent call last)", "Unhandled Error", "Unhandled error")
"""Output that means l4lb let an exception escape."""

Item = Tuple[str, ...]
"""One configuration line: a keyword and its value (C{""} for a flag such as
C{option redispatch}) as HAProxy writes them, and, when lb.ini spells it
differently, its whole lb.ini line third."""


def haproxy_program() -> str:
    """
    The C{haproxy} program (Debian puts it in C{/usr/sbin}).

    @raise AssertionError: When it is not installed, with how to install it.
    """
    program = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    assert program, HAPROXY_HINT
    return program


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Server:
    """
    One C{server} line.

    @ivar options: HAProxy's server options, which l4lb spells the same.
    """

    name: str
    port: int
    options: str = ""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Proxy:
    """
    A frontend C{fe_NAME} on its own loopback port sending to backend
    C{be_NAME}.

    @ivar frontend: Extra lines of the frontend (C{tcp-request connection},
        C{timeout client}).
    @ivar backend: Extra lines of the backend (C{timeout server}, ...).
    """

    name: str
    servers: Sequence[Server]
    balance: str = "roundrobin"
    frontend: Sequence[Item] = ()
    backend: Sequence[Item] = ()

    @property
    def backend_name(self) -> str:
        """
        The backend's name.
        """
        return f"be_{self.name}"

    @property
    def frontend_name(self) -> str:
        """
        The frontend's name.
        """
        return f"fe_{self.name}"

    def servers_lines(self, sep: str) -> List[str]:
        """
        The C{server} lines, with C{sep} between name and address.
        """
        return [
            f"server {s.name}{sep}{hostport('127.0.0.1', s.port)} {s.options}".rstrip()
            for s in self.servers
        ]


DEFAULT_TIMEOUTS: Sequence[Item] = (
    ("timeout connect", "1s"),
    ("timeout client", "5s"),
    ("timeout server", "5s"),
)
"""The C{defaults} lines of a L{Setup} unless it says otherwise."""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Setup:
    """
    Some L{Proxy} pairs in HAProxy's words, renderable in both formats.

    @ivar defaults: Lines of the C{defaults} section (after C{mode tcp}).
    """

    proxies: Sequence[Proxy]
    defaults: Sequence[Item] = DEFAULT_TIMEOUTS

    def haproxy_cfg(self, ports: Mapping[str, int], sock: str, syslog_port: int) -> str:
        """
        The C{haproxy.cfg} text.

        @param ports: Each proxy's frontend port, by proxy name.
        @param sock: The stats socket's path.
        @param syslog_port: Where on 127.0.0.1 logs go.
        """

        def lines(items: Sequence[Item]) -> List[str]:
            return [f"    {item[0]} {item[1]}".rstrip() for item in items]

        out = [
            "global",
            f"    log 127.0.0.1:{syslog_port} local0",
            f"    stats socket {sock} mode 600 level admin",
            "defaults",
            "    mode tcp",
            "    log global",
            "    option tcplog",
            *lines(self.defaults),
        ]
        for p in self.proxies:
            out += [
                f"frontend {p.frontend_name}",
                f"    bind 127.0.0.1:{ports[p.name]}",
                *lines(p.frontend),
                f"    default_backend {p.backend_name}",
            ]
        for p in self.proxies:
            out += [
                f"backend {p.backend_name}",
                f"    balance {p.balance}",
                *lines(p.backend),
                *[f"    {line}" for line in p.servers_lines(" ")],
            ]
        return "\n".join(out) + "\n"

    def lb_ini(self, ports: Mapping[str, int], sock: str, syslog_port: int) -> str:
        """
        The same configuration as an C{lb.ini}.
        """

        def lines(items: Sequence[Item]) -> List[str]:
            return [
                item[2] if len(item) > 2 else f"{item[0]} = {item[1]}" if item[1] else item[0]
                for item in items
            ]

        out = [
            "[global]",
            f"log = 127.0.0.1:{syslog_port} local0",
            f"stats socket = {sock}",
            "",
            "[defaults]",
            "mode = tcp",
            "option tcplog",
            *lines(self.defaults),
            "",
        ]
        for p in self.proxies:
            out += [
                f"[frontend {p.frontend_name}]",
                f"bind = 127.0.0.1:{ports[p.name]}",
                *lines(p.frontend),
                f"default_backend = {p.backend_name}",
                "",
            ]
        for p in self.proxies:
            out += [
                f"[backend {p.backend_name}]",
                f"balance = {p.balance}",
                *lines(p.backend),
                *p.servers_lines(" = "),
                "",
            ]
        return "\n".join(out)


class SyslogSink:
    """
    A UDP syslog receiver on 127.0.0.1: keeps every datagram as a line.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self._lines: List[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syslog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._lines.append(data.decode("utf-8", "replace").rstrip("\n"))

    def lines(self) -> List[str]:
        """
        Every line received so far.
        """
        with self._lock:
            return list(self._lines)

    def close(self) -> None:
        """
        Stop receiving and close the socket.
        """
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def cli(path: str, command: str, timeout: float = 10.0) -> str:
    """
    One command on a runtime socket (HAProxy's or l4lb's), as
    C{socat stdio UNIX-CONNECT:PATH} would send it: the whole answer.
    """
    return runtime_command(path, command, timeout)


def stat_table(text: str) -> Dict[str, Dict[str, str]]:
    """
    A C{show stat} answer as rows by C{pxname/svname}.
    """
    lines = [line for line in text.splitlines() if line]
    header = lines[0].lstrip("# ").split(",")
    rows: Dict[str, Dict[str, str]] = {}
    for line in lines[1:]:
        values = line.split(",")
        row = dict(zip(header, values))
        rows[f"{row['pxname']}/{row['svname']}"] = row
    return rows


@attr.s(auto_attribs=True)
class Side:
    """
    One running balancer: its name (C{haproxy} or C{l4lb}), frontend
    ports by proxy name, runtime socket and log sink.
    """

    name: str
    ports: Mapping[str, int]
    sock: str
    sink: SyslogSink
    stopper: Callable[[], None]
    output: Callable[[], str]

    def cli(self, command: str) -> str:
        """
        One runtime command's answer.
        """
        return cli(self.sock, command)

    def stats(self) -> Dict[str, Dict[str, str]]:
        """
        C{show stat}, rows by C{pxname/svname}.
        """
        return stat_table(self.cli("show stat"))

    def records(self) -> List[TcpLogRecord]:
        """
        Every tcplog line logged so far, parsed.
        """
        parsed = (parse_tcplog(line) for line in self.sink.lines())
        return [r for r in parsed if r is not None]

    def wait_records(self, count: int, timeout: float = 10.0) -> List[TcpLogRecord]:
        """
        Wait (bounded) until C{count} tcplog lines came.

        @raise AssertionError: When they do not, with what the side printed.
        """
        if not wait_until(lambda: len(self.records()) >= count, timeout):
            raise AssertionError(
                f"{self.name}: {len(self.records())} of {count} log lines\n"
                + "\n".join(self.sink.lines()[-20:])
                + "\n"
                + self.output()
            )
        return self.records()

    def stop(self) -> None:
        """
        Stop the process and the log sink.
        """
        try:
            self.stopper()
        finally:
            self.sink.close()


def start_haproxy(setup: Setup, ports: Mapping[str, int], directory: str) -> Side:
    """
    Start HAProxy in the foreground (C{-db}) with C{setup}, ready once its
    stats socket answers.
    """
    os.makedirs(directory, exist_ok=True)
    sink = SyslogSink()
    sock = os.path.join(directory, "haproxy.sock")
    config = os.path.join(directory, "haproxy.cfg")
    with open(config, "w") as f:
        f.write(setup.haproxy_cfg(ports, sock, sink.port))
    log_path = os.path.join(directory, "haproxy.out")
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [haproxy_program(), "-db", "-f", config],
        cwd=directory,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def output() -> str:
        with open(log_path, errors="replace") as f:
            return f.read()[-4000:]

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(15)
        log.close()

    def answers() -> bool:
        if process.poll() is not None:
            return True
        try:
            return "Name: HAProxy" in cli(sock, "show info", 1.0)
        except OSError:
            return False

    if not wait_until(answers, 15.0) or process.poll() is not None:
        stop()
        sink.close()
        raise AssertionError(f"haproxy did not start:\n{output()}")
    return Side("haproxy", ports, sock, sink, stop, output)


def start_l4lb(setup: Setup, ports: Mapping[str, int], directory: str) -> Side:
    """
    Start C{twistd l4lb} with C{setup} written as an lb.ini, ready once
    its frontend started and its runtime socket answers.
    """
    os.makedirs(directory, exist_ok=True)
    sink = SyslogSink()
    sock = os.path.join(directory, "l4lb.sock")
    config = os.path.join(directory, "lb.ini")
    with open(config, "w") as f:
        f.write(setup.lb_ini(ports, sock, sink.port))
    lb = Balancer.l4lb(config, directory, [p.frontend_name for p in setup.proxies])
    lb.start()
    try:
        lb.wait_ready()
    except AssertionError:
        sink.close()
        raise

    def stop() -> None:
        try:
            lb.stop()
        finally:
            lb.kill()
        crashes = [line for line in lb.lines() + lb.stderr_lines() if any(m in line for m in UNHANDLED)]
        if crashes:
            raise AssertionError(f"l4lb let an exception escape:\n{output()}")

    def output() -> str:
        return "\n".join((lb.lines() + lb.stderr_lines())[-60:])

    return Side("l4lb", ports, sock, sink, stop, output)


@contextlib.contextmanager
def running_pair(setup: Setup, directory: str) -> Iterator[Tuple[Side, Side]]:
    """
    HAProxy and l4lb running C{setup} at once, each on its own frontend
    ports, both sending to the same servers; both stopped afterwards.

    @return: C{(haproxy, l4lb)}.
    """
    sides: List[Side] = []
    try:
        for name, start in (("haproxy", start_haproxy), ("l4lb", start_l4lb)):
            ports = {p.name: free_port() for p in setup.proxies}
            sides.append(start(setup, ports, os.path.join(directory, name)))
        yield sides[0], sides[1]
    finally:
        for side in sides:
            side.stop()


def check_verdict(argv: Sequence[str], cwd: str) -> Tuple[bool, str]:
    """
    Run a configuration check (C{haproxy -c -f F} or C{l4lb check F}).

    @return: Whether it called the file valid, and what it printed.
    """
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def poll_pair(
    sides: Sequence[Side],
    predicate: Callable[[Side], bool],
    timeout: float,
    interval: float = 0.02,
) -> Dict[str, Optional[float]]:
    """
    Poll every side until C{predicate} holds for it, bounded by C{timeout}.

    @return: Seconds from the call until it first held, by side name
        (C{None}: it never did).
    """
    start = time.monotonic()
    seen: Dict[str, Optional[float]] = {side.name: None for side in sides}
    while time.monotonic() - start < timeout:
        for side in sides:
            if seen[side.name] is None and predicate(side):
                seen[side.name] = time.monotonic() - start
        if all(v is not None for v in seen.values()):
            break
        time.sleep(interval)
    return seen
