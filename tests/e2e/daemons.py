"""
Debian's own servers, started by the real-clients tests: C{redis-server},
a PostgreSQL cluster made with C{initdb}, and C{iperf3 -s}.

Each runs in the foreground as a child process, on a loopback port the
test chose, with its files in a temporary directory, and is stopped with
SIGTERM (SIGKILL if it lingers) by L{Daemon.stop}. None of them touches the
system's own instances of these services or their files.

A program that is missing fails the test with the Debian package to
install; C{script/debian-deps} installs them all.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from typing import IO, Dict, List, Optional, Sequence

import pytest

from .harness import port_is_free, subprocess_env, wait_until

START_TIMEOUT = 30.0
"""Seconds a server may take to accept connections."""

STOP_TIMEOUT = 15.0
"""Seconds a server may take to exit after SIGTERM."""

POSTGRES_USER = "postgres"
"""The account PostgreSQL runs as when the tests run as root (PostgreSQL
refuses to run as root); Debian's C{postgresql-common} creates it."""


def require(program: str, package: str, path: Optional[str] = None) -> str:
    """
    The full path of C{program}, or fail the test naming the Debian package
    that has it.

    @param path: Directories to look in (C{None}: C{$PATH}, then the
        C{sbin} directories, which a non-root C{$PATH} may lack).
    """
    found = shutil.which(program, path=path)
    if found is None and path is None:
        found = shutil.which(program, path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(
            f"{program} is needed: apt-get install {package}"
            " (script/debian-deps installs every Debian package the tests use)"
        )
    return found


def running_as_root() -> bool:
    """
    Whether the tests run as root, so that servers that refuse root must be
    started under another account.
    """
    return os.geteuid() == 0


def as_postgres(argv: Sequence[str]) -> List[str]:
    """
    C{argv} run as L{POSTGRES_USER} when the tests run as root (C{setpriv}
    execs the program itself, so signals reach it), unchanged otherwise.
    """
    if not running_as_root():
        return list(argv)
    setpriv = require("setpriv", "util-linux")
    return [
        setpriv,
        f"--reuid={POSTGRES_USER}",
        f"--regid={POSTGRES_USER}",
        "--init-groups",
        "--",
        *argv,
    ]


def private_directory(prefix: str, owner: Optional[str] = None) -> str:
    """
    A new directory under the system's temporary directory, owned by
    C{owner} when given (pytest's own temporary directories are private to
    the user running the tests, so another account could not enter them).
    """
    path = tempfile.mkdtemp(prefix=prefix)
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


class Daemon:
    """
    One server process in the foreground, its output in a log file.

    @ivar name: A label for failure messages.
    @ivar argv: The command line.
    @ivar port: The loopback port it listens on.
    @ivar directory: Its working directory (and where its log goes).
    """

    def __init__(self, name: str, argv: Sequence[str], port: int, directory: str) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.directory = directory
        self.log_path = os.path.join(directory, f"{name}.log")
        self.process: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

    def start(self) -> "Daemon":
        """
        Start the process and wait until something listens on its port.

        @raise AssertionError: When it exits first or does not listen in
            time; the message has its log.
        @return: C{self}.
        """
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.directory,
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        listening = wait_until(
            lambda: not self.running() or not port_is_free(self.port), START_TIMEOUT, 0.05
        )
        if not self.running():
            self.fail(f"exited with {self.process.returncode} before it listened")
        if not listening:
            self.stop()
            self.fail(f"not listening on 127.0.0.1:{self.port} after {START_TIMEOUT:.0f}s")
        return self

    def running(self) -> bool:
        """
        Whether the process has not exited yet.
        """
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """
        SIGTERM, then SIGKILL if it has not exited in time; reap it. Safe
        to call twice.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self, last: int = 40) -> str:
        """
        The last lines of what it printed.
        """
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-last:])

    def fail(self, why: str) -> None:
        """
        Fail the test with C{why}, the command line and the log.
        """
        raise AssertionError(f"{self.name} {why}\n$ {' '.join(self.argv)}\n{self.log()}")


# -- redis -------------------------------------------------------------------


def redis_server(port: int, directory: str) -> Daemon:
    """
    C{redis-server} on C{127.0.0.1:port}, in memory only (no snapshot, no
    append-only file), in the foreground.
    """
    argv = [
        require("redis-server", "redis-server"),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--dir", directory,
    ]
    return Daemon(f"redis-{port}", argv, port, directory)


def redis_command(port: int, *words: str, timeout: float = 10.0) -> bytes:
    """
    Send one command to a Redis server directly and return its reply's
    payload (a status, an integer or a bulk string; not arrays).

    @raise AssertionError: When the server answers with an error.
    """
    request = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while b"\r\n" not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        head, _, rest = reply.partition(b"\r\n")
        assert head[:1] != b"-", f"redis on port {port}: {head.decode(errors='replace')}"
        if head[:1] != b"$":
            return head[1:]
        size = int(head[1:])
        while len(rest) < size + 2:
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        return rest[:size]


def redis_info(port: int, section: str) -> Dict[str, str]:
    """
    One section of C{INFO} on a Redis server, as a dict of its fields.
    """
    text = redis_command(port, "INFO", section).decode()
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[key] = value
    return fields


def redis_calls(port: int, command: str) -> int:
    """
    How many times the Redis server on C{port} ran C{command} (its
    C{INFO commandstats}), 0 if never.
    """
    stats = redis_info(port, "commandstats").get(f"cmdstat_{command.lower()}", "")
    for field in stats.split(","):
        key, _, value = field.partition("=")
        if key == "calls":
            return int(value)
    return 0


def redis_ready(port: int) -> bool:
    """
    Whether the server answers C{PING} with C{PONG} (and not, say,
    C{LOADING}).
    """
    try:
        return redis_command(port, "PING", timeout=2.0) == b"PONG"
    except (OSError, AssertionError):
        return False


# -- PostgreSQL --------------------------------------------------------------


def postgres_bin() -> str:
    """
    The directory of the newest installed PostgreSQL's server programs
    (Debian keeps them under C{/usr/lib/postgresql/VERSION/bin}, off the
    C{$PATH}).
    """
    found = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    if not found:
        pytest.fail(
            "PostgreSQL's server is needed: apt-get install postgresql"
            " (script/debian-deps installs every Debian package the tests use)"
        )
    newest = max(found, key=lambda p: [int(x) for x in p.split("/")[-3].split(".") if x.isdigit()])
    return os.path.dirname(newest)


class PostgresCluster:
    """
    A throwaway PostgreSQL cluster: C{initdb} in a private directory, a
    C{postgres} listening on C{127.0.0.1:port} only, trust authentication
    for the superuser C{postgres}, durability off (nothing here outlives
    the test).

    @ivar port: Its TCP port.
    @ivar directory: Holds the data directory, the UNIX socket and the log.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.bin = postgres_bin()
        owner = POSTGRES_USER if running_as_root() else None
        self.directory = private_directory("l4lb-pg-", owner)
        self.data = os.path.join(self.directory, "data")
        self.server: Optional[Daemon] = None

    def program(self, name: str) -> str:
        """
        The path of one of the cluster's programs (C{pgbench}, ...).
        """
        return require(name, "postgresql", path=self.bin)

    def start(self) -> "PostgresCluster":
        """
        Create the cluster, start it and wait until it accepts queries.

        @return: C{self}.
        """
        initdb = as_postgres(
            [
                self.program("initdb"),
                "--pgdata", self.data,
                "--username", "postgres",
                "--auth", "trust",
                "--encoding", "UTF8",
                "--no-sync",
            ]
        )
        done = subprocess.run(
            initdb,
            cwd=self.directory,
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"$ {' '.join(initdb)}\n{done.stdout}{done.stderr}"
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": self.directory,
            "max_connections": "40",
            "shared_buffers": "16MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        argv = [self.program("postgres"), "-D", self.data]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self.server = Daemon(f"postgres-{self.port}", as_postgres(argv), self.port, self.directory)
        self.server.start()
        isready = [self.program("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]

        def accepting() -> bool:
            return subprocess.run(isready, stdin=subprocess.DEVNULL, timeout=10).returncode == 0

        if not wait_until(accepting, START_TIMEOUT, 0.1):
            self.server.fail("does not accept queries")
        return self

    def stop(self) -> None:
        """
        Stop the server (SIGTERM is PostgreSQL's smart shutdown) and remove
        the cluster's files.
        """
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


# -- iperf3 ------------------------------------------------------------------


def iperf3_server(port: int, directory: str) -> Daemon:
    """
    C{iperf3 -s} on C{127.0.0.1:port}, serving one test after another.
    """
    argv = [require("iperf3", "iperf3"), "-s", "-B", "127.0.0.1", "-p", str(port), "--forceflush"]
    return Daemon(f"iperf3-{port}", argv, port, directory)

