"""
Debian's C{dnsmasq} (package C{dnsmasq-base}) as an authoritative DNS server
for the real-clients tests.

Each instance runs in the foreground as a child process, on a loopback
address and port the test chose, over UDP and TCP, and answers only the
host records it was given: A and AAAA for each name, NXDOMAIN for any other
name under the test zone. It reads no system file (no C{/etc/hosts}, no
C{resolv.conf}, no configuration file) and forwards nothing, so the system's
own resolver is never involved. L{Dnsmasq.stop} ends it with SIGTERM
(SIGKILL if it lingers).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import IO, List, Optional, Sequence

import attr

from .daemons import require
from .harness import wait_until

ZONE = "l4lb.test"
"""The zone the servers answer for; C{.test} is reserved for testing."""

START_TIMEOUT = 10.0
"""Seconds dnsmasq may take to answer on its port."""

STOP_TIMEOUT = 10.0
"""Seconds dnsmasq may take to exit after SIGTERM."""

START_ATTEMPTS = 5
"""Free ports tried before giving up (another process may take a port
between the test choosing it and dnsmasq binding it)."""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class HostRecord:
    """
    One name and the addresses dnsmasq gives it.

    @ivar name: The fully qualified name, without the final dot.
    @ivar ipv4: Its A record.
    @ivar ipv6: Its AAAA record.
    """

    name: str
    ipv4: str
    ipv6: str


def host_records(count: int) -> List[HostRecord]:
    """
    C{count} names C{hostN.l4lb.test}, each with a loopback A record and
    the same address mapped into IPv6 as its AAAA record, so that every
    answer is a loopback address and each name's answers are its own.
    """
    return [
        HostRecord(f"host{i}.{ZONE}", f"127.0.1.{i}", f"::ffff:127.0.1.{i}")
        for i in range(1, count + 1)
    ]


def free_port_both(host: str) -> int:
    """
    A port of C{host} that was free for both UDP and TCP a moment ago.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise AssertionError(f"no port of {host} free for both UDP and TCP")


def answers_tcp(host: str, port: int) -> bool:
    """
    Whether something accepts TCP connections on C{host:port}.
    """
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Dnsmasq:
    """
    A C{dnsmasq} answering L{HostRecord}s on C{address:port}, UDP and TCP.

    @ivar name: A name for messages.
    @ivar address: The IPv4 loopback address it listens on.
    @ivar port: Its port, once started.
    @ivar directory: Where its pid file and log go.
    @ivar records: The names it answers.
    @ivar process: The running C{dnsmasq}, once started.
    """

    def __init__(
        self,
        name: str,
        records: Sequence[HostRecord],
        directory: Path,
        address: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.address = address
        self.records = list(records)
        self.directory = directory
        self.port = 0
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self._log: Optional[IO[bytes]] = None

    def argv(self, program: str, port: int) -> List[str]:
        """
        Its command line on C{port}.
        """
        argv = [
            program,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            f"--local=/{ZONE}/",
            f"--listen-address={self.address}",
            "--bind-interfaces",
            f"--port={port}",
            f"--pid-file={self.directory / 'dnsmasq.pid'}",
            "--log-facility=-",
        ]
        argv += [f"--host-record={r.name},{r.ipv4},{r.ipv6}" for r in self.records]
        if os.geteuid() == 0:
            # As root dnsmasq switches to "nobody" once its sockets are
            # bound; staying root keeps it independent of the accounts a
            # container happens to have.
            argv.append("--user=root")
        return argv

    def start(self) -> "Dnsmasq":
        """
        Start it on a free port and wait until it accepts TCP connections
        (its UDP socket is bound before its TCP one).

        @return: C{self}.
        """
        program = require("dnsmasq", "dnsmasq-base")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = open(self.directory / "dnsmasq.log", "wb")
        for _ in range(START_ATTEMPTS):
            port = free_port_both(self.address)
            self.process = subprocess.Popen(
                self.argv(program, port),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            process = self.process
            if wait_until(
                lambda: process.poll() is not None or answers_tcp(self.address, port),
                START_TIMEOUT,
            ) and process.poll() is None:
                self.port = port
                return self
            self.stop()
        raise AssertionError(f"dnsmasq {self.name} did not start:\n{self.log()}")

    def running(self) -> bool:
        """
        Whether its process is alive.
        """
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """
        Stop it (SIGTERM, then SIGKILL) and reap it.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)

    def close(self) -> None:
        """
        Stop it and close its log file.
        """
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self, last: int = 40) -> str:
        """
        The last lines it printed.
        """
        path = self.directory / "dnsmasq.log"
        if not path.exists():
            return "(no output)"
        lines = path.read_text("utf-8", "replace").splitlines()
        return "\n".join(lines[-last:]) or "(no output)"
