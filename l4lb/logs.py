"""
Connection logs in HAProxy's C{tcplog} layout, and where they are written.

A line is formatted once, when its connection ends; nothing here runs per
chunk of relayed data.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, List, Optional

import attr

from l4lb.config.model import LogTarget

_MONTHS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)


class _DateCache:
    """
    The last date formatted, and its seconds part: connections logged
    within the same millisecond share the date, those within the same
    second its seconds part, and only the milliseconds are formatted.
    """

    __slots__ = ("second", "text", "millisecond", "date")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""
        self.millisecond = -1
        self.date = ""


_date_cache = _DateCache()


def format_date(when: float) -> str:
    """
    Format a time as HAProxy's accept date, C{06/Feb/2009:12:12:51.443}, in
    local time.
    """
    cache = _date_cache
    millisecond = int(when * 1000)
    if millisecond == cache.millisecond:
        return cache.date
    second = millisecond // 1000
    if second != cache.second:
        t = time.localtime(second)
        cache.text = (
            f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
        )
        cache.second = second
    cache.millisecond = millisecond
    cache.date = f"{cache.text}{millisecond % 1000:03d}"
    return cache.date


@attr.s(slots=True, auto_attribs=True)
class ConnectionRecord:
    """
    What one connection log line says.  Made once per logged connection
    (not frozen: a frozen class pays a call per field to build one).

    @ivar client_host: The client's IP address.
    @ivar client_port: The client's port.
    @ivar accepted: When the connection was accepted (POSIX time).
    @ivar frontend: The frontend's name.
    @ivar backend: The backend's name.
    @ivar server: The server's name, or C{None} when none was reached.
    @ivar queue_time: Seconds spent waiting in a queue, C{None} if the
        connection never got that far.
    @ivar connect_time: Seconds to connect to the server including retries,
        C{None} if it never connected.
    @ivar total_time: Seconds from accept to close.
    @ivar bytes_out: Bytes sent from the server to the client.
    @ivar termination: The two-character termination state.
    @ivar actconn: Connections open in the process when it was logged.
    @ivar feconn: Connections open on the frontend.
    @ivar beconn: Connections open on the backend.
    @ivar srvconn: Connections open on the server.
    @ivar retries: Connection retries.
    @ivar redispatched: Whether a retry went to another server.
    @ivar srv_queue: Queue positions passed on the server.
    @ivar backend_queue: Queue positions passed on the backend.
    @ivar sni: On a frontend that routes by TLS server name, the name the
        client asked for (empty when it gave none); C{None} elsewhere.
    """

    client_host: str
    client_port: int
    accepted: float
    frontend: str
    backend: str
    server: Optional[str]
    queue_time: Optional[float]
    connect_time: Optional[float]
    total_time: float
    bytes_out: int
    termination: str
    actconn: int
    feconn: int
    beconn: int
    srvconn: int
    retries: int
    redispatched: bool = False
    srv_queue: int = 0
    backend_queue: int = 0
    sni: Optional[str] = None


def format_tcplog(r: ConnectionRecord) -> str:
    """
    Format a record in HAProxy's C{option tcplog} layout::

        %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq

    followed, on a frontend that routes by TLS server name, by the name in
    braces as HAProxy prints a captured value: C{{db.example.com}}, or
    C{{}} for none.
    """
    queue_time = r.queue_time
    connect_time = r.connect_time
    sni = r.sni
    return "%s:%d [%s] %s %s/%s %d/%d/%d %d %s %d/%d/%d/%d/%s%d %d/%d%s" % (
        r.client_host,
        r.client_port,
        format_date(r.accepted),
        r.frontend,
        r.backend,
        r.server or "<NOSRV>",
        -1 if queue_time is None else round(queue_time * 1000),
        -1 if connect_time is None else round(connect_time * 1000),
        round(r.total_time * 1000),
        r.bytes_out,
        r.termination,
        r.actconn,
        r.feconn,
        r.beconn,
        r.srvconn,
        "+" if r.redispatched else "",
        r.retries,
        r.srv_queue,
        r.backend_queue,
        "" if sni is None else f" {{{sni}}}",
    )


#: Lines held before a turn's write is made at once: a burst of endings in
#: one turn is written in pieces of about this many lines.
MOST_PENDING_LINES = 256


class LogSink:
    """
    Writes log lines to a file or a standard stream, once per reactor turn.

    Lines written during one turn of the reactor are kept and written
    together, with one C{write} system call, when the reactor next runs its
    due calls (C{callLater(0)}), or at once when L{MOST_PENDING_LINES} are
    waiting; L{close} and L{reopen} write what is pending first.  Without a
    reactor every line is written at once.

    @ivar target: Where the lines go.
    @ivar failed: Lines that could not be written (the error is reported
        on standard error).
    """

    def __init__(self, target: LogTarget, reactor: Optional[Any] = None) -> None:
        self.target = target
        self.reactor = reactor
        self.failed = 0
        self._fd: Optional[int] = None
        self._pending: List[str] = []
        self._flush_call: Optional[Any] = None
        self.reopen()

    def reopen(self) -> None:
        """
        Open (or re-open, after log rotation) the destination.

        The new destination is opened before the old one is closed: when it
        cannot be opened the sink keeps writing where it wrote before.
        Lines still waiting go to the old destination.

        @raise OSError: The destination cannot be opened.
        """
        kind = self.target.kind
        fd: Optional[int] = None
        if kind == "file":
            assert self.target.path is not None
            fd = os.open(self.target.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        elif kind in ("stdout", "stderr"):
            # twistd replaces sys.stdout with a logging file; connection logs
            # go to the real descriptor, raw.
            fd = os.dup(1 if kind == "stdout" else 2)
        self.close()
        self._fd = fd

    def write(self, line: str) -> None:
        """
        Write one line (in this reactor turn's write).
        """
        if self._fd is None:
            return
        pending = self._pending
        pending.append(line)
        if self.reactor is None or len(pending) >= MOST_PENDING_LINES:
            self.flush()
        elif self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Write the lines waiting, with one system call when the destination
        takes them all.
        """
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()
        pending = self._pending
        if not pending:
            return
        count = len(pending)
        data = ("\n".join(pending) + "\n").encode("utf-8", "replace")
        pending.clear()
        fd = self._fd
        if fd is None:
            return
        try:
            while data:
                written = os.write(fd, data)
                data = data[written:]
        except OSError as e:
            self.failed += count
            if sys.__stderr__ is not None:
                sys.__stderr__.write(f"l4lb: cannot write log line: {e}\n")

    def close(self) -> None:
        """
        Write what is waiting, then close the destination.
        """
        self.flush()
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def open_sink(target: LogTarget, reactor: Any) -> Any:
    """
    The sink for a configured target: a L{LogSink} for files and standard
    streams, a L{l4lb.syslog.SyslogSink} for C{syslog} and C{udp}.
    """
    if target.kind in ("syslog", "udp"):
        from l4lb.syslog import SyslogSink

        return SyslogSink(target, reactor)
    return LogSink(target, reactor)


class MemorySink:
    """
    Keeps log lines in a list (for embedding applications and tests).

    @ivar lines: Every line written, in order.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        """
        Keep one line.
        """
        self.lines.append(line)

    def reopen(self) -> None:
        """
        Nothing to re-open.
        """

    def close(self) -> None:
        """
        Nothing to close.
        """
