"""
Syslog output: RFC 3164 framing, the facility and severity in C{<PRI>},
real datagrams to a UDP listener and to a UNIX datagram socket standing in
for C{/dev/log}, and drops counted instead of raised.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from twisted.internet import udp, unix
from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher, formatEvent

from l4lb.config.model import LogTarget
from l4lb.logs import LogSink, open_sink
from l4lb.syslog import SyslogSink, frame, rfc3164_date

#: 2026-11-08 07:05:09 local time.
WHEN = time.mktime((2026, 11, 8, 7, 5, 9, 0, 0, -1))

LINE = re.compile(
    rb"^<(?P<pri>\d{1,3})>(?P<date>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)"
    rb" (?:(?P<host>[^ \[]+) )?l4lb\[(?P<pid>\d+)\]: (?P<msg>.*)$"
)


class SocketClock(Clock):
    """
    A L{Clock} that also makes Twisted's real UDP and UNIX datagram ports:
    the sockets are real, nothing is read from them, and the time is the
    test's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ports: List[Any] = []

    def addReader(self, reader: Any) -> None:
        """Nothing reads: the tests receive with plain sockets."""

    def removeReader(self, reader: Any) -> None:
        """Nothing reads."""

    def removeWriter(self, writer: Any) -> None:
        """Nothing waits to write."""

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:
        """Bind a real UDP port."""
        p = udp.Port(port, protocol, interface, maxPacketSize, reactor=self)
        p.startListening()
        self.ports.append(p)
        return p

    def listenUNIXDatagram(self, address: Any, protocol: Any, maxPacketSize: int = 8192, mode: int = 0o666) -> Any:
        """Open a real UNIX datagram socket (unbound when C{address} is None)."""
        p = unix.DatagramPort(address, protocol, maxPacketSize, mode, reactor=self)
        p.startListening()
        self.ports.append(p)
        return p


def parse(datagram: bytes) -> Tuple[int, int, "re.Match[bytes]"]:
    """Split a datagram into facility, severity and the framing's match."""
    match = LINE.match(datagram)
    assert match is not None, datagram
    pri = int(match.group("pri"))
    return pri // 8, pri % 8, match


@pytest.fixture
def clock() -> Iterator[SocketClock]:
    """A clock at L{WHEN} that makes real datagram sockets."""
    c = SocketClock()
    c.advance(WHEN)
    yield c
    c.advance(0)
    for port in c.ports:
        if getattr(port, "connected", False):
            port.stopListening()
    c.advance(0)


@pytest.fixture
def udp_server() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 that plays the syslog server."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    yield s
    s.close()


@pytest.fixture
def dev_log(tmp_path: Path) -> Iterator[Tuple[str, socket.socket]]:
    """A UNIX datagram socket in tmp_path that plays /dev/log."""
    path = str(tmp_path / "log")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    yield path, s
    s.close()


def test_frame_layout() -> None:
    """A datagram is <PRI>Mmm dd hh:mm:ss host l4lb[pid]: message, PRI = facility*8 + severity."""
    datagram = frame("hello", 16, 6, WHEN, 4242, "lb1")
    assert datagram == b"<134>Nov  8 07:05:09 lb1 l4lb[4242]: hello"
    assert frame("hello", 23, 2, WHEN, 7, None) == b"<186>Nov  8 07:05:09 l4lb[7]: hello"


def test_date_pads_the_day_with_a_space() -> None:
    """RFC 3164 pads a one-digit day with a space, not a zero."""
    assert rfc3164_date(WHEN) == "Nov  8 07:05:09"


def test_udp_target_receives_framed_lines(clock: SocketClock, udp_server: socket.socket) -> None:
    """Connection lines reach a UDP syslog server with the configured facility, severity info, the host name and the clock's time."""
    port = udp_server.getsockname()[1]
    target = LogTarget(kind="udp", host="127.0.0.1", port=port, facility="local3")
    sink = SyslogSink(target, clock, publisher=LogPublisher(), hostname="lb1", pid=99)
    sink.write('127.0.0.1:5000 [08/Nov/2026:07:05:09.000] fe be/s1 0/0/1 5 -- 1/1/1/1/0 0/0')
    facility, severity, match = parse(udp_server.recv(4096))
    assert (facility, severity) == (19, 6)
    assert match.group("date") == b"Nov  8 07:05:09"
    assert match.group("host") == b"lb1" and match.group("pid") == b"99"
    assert match.group("msg").startswith(b"127.0.0.1:5000 [08/Nov/2026:07:05:09.000] fe be/s1")
    assert (sink.sent, sink.dropped) == (1, 0)
    sink.close()


def test_unix_target_leaves_the_host_out(clock: SocketClock, dev_log: Tuple[str, socket.socket]) -> None:
    """Lines to a local socket carry no host name (the daemon adds it), as syslog(3) sends them."""
    path, server = dev_log
    sink = SyslogSink(LogTarget(kind="syslog", path=path), clock, publisher=LogPublisher(), pid=5)
    sink.write("one")
    sink.write("two")
    lines = [server.recv(4096), server.recv(4096)]
    assert lines == [b"<134>Nov  8 07:05:09 l4lb[5]: one", b"<134>Nov  8 07:05:09 l4lb[5]: two"]
    sink.close()


def test_own_messages_keep_their_level(clock: SocketClock, dev_log: Tuple[str, socket.socket]) -> None:
    """l4lb's own events (a server going DOWN, a backend with no server) are sent at their level; other namespaces are not."""
    path, server = dev_log
    publisher = LogPublisher()
    sink = SyslogSink(LogTarget(kind="syslog", path=path, facility="daemon"), clock, publisher=publisher)
    log = Logger(namespace="l4lb", observer=publisher)
    log.warn("Server {name} is DOWN.", name="be/s1")
    log.critical("backend {b} has no server available!", b="be")
    Logger(namespace="twisted", observer=publisher).info("not ours")
    log.info("Proxy fe started.")
    got = [parse(server.recv(4096)) for _ in range(3)]
    assert [(f, s, m.group("msg")) for f, s, m in got] == [
        (3, 4, b"Server be/s1 is DOWN."),
        (3, 2, b"backend be has no server available!"),
        (3, 6, b"Proxy fe started."),
    ]
    sink.close()
    log.warn("after close")
    server.settimeout(0.05)
    with pytest.raises(socket.timeout):
        server.recv(4096)


def test_level_filters_less_important_messages(clock: SocketClock, dev_log: Tuple[str, socket.socket]) -> None:
    """With a level of notice, info lines (traffic) are not sent and warnings are."""
    path, server = dev_log
    publisher = LogPublisher()
    target = LogTarget(kind="syslog", path=path, level="notice")
    sink = SyslogSink(target, clock, publisher=publisher)
    sink.write("traffic")
    Logger(namespace="l4lb", observer=publisher).warn("Server be/s1 is DOWN.")
    _, severity, match = parse(server.recv(4096))
    assert severity == 4 and match.group("msg") == b"Server be/s1 is DOWN."
    assert sink.sent == 1
    sink.close()


def test_missing_socket_drops_and_counts(clock: SocketClock, tmp_path: Path) -> None:
    """With no daemon listening, l4lb warns once, then each line is dropped and counted; nothing raises."""
    target = LogTarget(kind="syslog", path=str(tmp_path / "absent"))
    publisher = LogPublisher()
    events: List[Any] = []
    publisher.addObserver(events.append)
    sink = SyslogSink(target, clock, publisher=publisher)
    for _ in range(3):
        sink.write("lost")
    assert (sink.sent, sink.dropped) == (0, 3)
    (warning,) = events
    assert "absent does not exist (is a syslog daemon running?)" in formatEvent(warning)
    sink.close()


def test_full_socket_drops_instead_of_blocking(clock: SocketClock, dev_log: Tuple[str, socket.socket]) -> None:
    """When the daemon's socket is full, sending returns at once and the lines are counted as dropped."""
    path, _server = dev_log
    sink = SyslogSink(LogTarget(kind="syslog", path=path), clock, publisher=LogPublisher())
    started = time.monotonic()
    for _ in range(5000):
        sink.write("x" * 512)
        if sink.dropped:
            break
    assert sink.dropped >= 1
    assert sink.sent >= 1
    assert time.monotonic() - started < 5
    sink.close()


def test_reopen_and_close(clock: SocketClock, dev_log: Tuple[str, socket.socket]) -> None:
    """Re-opening replaces the socket and keeps sending; after close, lines are dropped."""
    path, server = dev_log
    sink = SyslogSink(LogTarget(kind="syslog", path=path), clock, publisher=LogPublisher())
    sink.reopen()
    sink.write("after reopen")
    assert parse(server.recv(4096))[2].group("msg") == b"after reopen"
    sink.close()
    sink.write("after close")
    assert sink.dropped == 1


def test_open_sink_picks_by_kind(clock: SocketClock, tmp_path: Path, udp_server: socket.socket) -> None:
    """Files and streams get a LogSink, syslog and udp targets a SyslogSink."""
    file_sink = open_sink(LogTarget(kind="file", path=str(tmp_path / "a.log")), clock)
    assert isinstance(file_sink, LogSink)
    file_sink.close()
    port = udp_server.getsockname()[1]
    sink = open_sink(LogTarget(kind="udp", host="127.0.0.1", port=port), clock)
    assert isinstance(sink, SyslogSink)
    sink.close()


def test_show_info_counts_dropped_lines(clock: SocketClock, tmp_path: Path) -> None:
    """show info reports the lines the syslog sink dropped as DroppedLogs, as HAProxy does."""
    from tests.test_admin_commands import make

    _, commands = make()
    sink = SyslogSink(LogTarget(kind="syslog", path=str(tmp_path / "absent")), clock, publisher=LogPublisher())
    commands.service.sink = sink
    sink.write("lost")
    sink.write("lost")
    info = dict(line.split(": ", 1) for line in commands.run("show info").splitlines())
    assert info["DroppedLogs"] == "2"
    sink.close()
