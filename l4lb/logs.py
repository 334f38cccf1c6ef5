"""
Connection logs in HAProxy's C{tcplog} layout, and where they are written.

A line is formatted once, when its connection ends; nothing here runs per
chunk of relayed data.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any, Optional

import attr

from l4lb.config.model import LogTarget

_MONTHS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)


def format_date(when: float) -> str:
    """
    Format a time as HAProxy's accept date, C{06/Feb/2009:12:12:51.443}, in
    local time.
    """
    t = time.localtime(when)
    millis = int((when - int(when)) * 1000)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{millis:03d}"
    )


def _millis(seconds: Optional[float]) -> int:
    return -1 if seconds is None else int(round(seconds * 1000))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ConnectionRecord:
    """
    What one connection log line says.

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
    retries = f"+{r.retries}" if r.redispatched else str(r.retries)
    capture = "" if r.sni is None else f" {{{r.sni}}}"
    return (
        f"{r.client_host}:{r.client_port} [{format_date(r.accepted)}]"
        f" {r.frontend} {r.backend}/{r.server or '<NOSRV>'}"
        f" {_millis(r.queue_time)}/{_millis(r.connect_time)}/{_millis(r.total_time)}"
        f" {r.bytes_out} {r.termination}"
        f" {r.actconn}/{r.feconn}/{r.beconn}/{r.srvconn}/{retries}"
        f" {r.srv_queue}/{r.backend_queue}{capture}"
    )


class LogSink:
    """
    Writes log lines to a stream, one line per call.

    @ivar target: Where the lines go.
    """

    def __init__(self, target: LogTarget) -> None:
        self.target = target
        self._stream: Optional[IO[str]] = None
        self._owned = False
        self.reopen()

    def reopen(self) -> None:
        """
        Open (or re-open, after log rotation) the destination.

        The new destination is opened before the old one is closed: when it
        cannot be opened the sink keeps writing where it wrote before.

        @raise OSError: The destination cannot be opened.
        """
        kind = self.target.kind
        stream: Optional[IO[str]] = None
        if kind == "file":
            assert self.target.path is not None
            stream = open(self.target.path, "a", buffering=1, encoding="utf-8")
        elif kind in ("stdout", "stderr"):
            # twistd replaces sys.stdout with a logging file; connection logs
            # go to the real descriptor, raw, one line each.
            fd = 1 if kind == "stdout" else 2
            stream = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8")
        self.close()
        self._stream = stream
        self._owned = stream is not None

    def write(self, line: str) -> None:
        """
        Write one line.
        """
        stream = self._stream
        if stream is None:
            return
        try:
            stream.write(line + "\n")
        except OSError as e:
            if sys.__stderr__ is not None:
                sys.__stderr__.write(f"l4lb: cannot write log line: {e}\n")

    def close(self) -> None:
        """
        Close the destination if this sink opened it.
        """
        if self._stream is not None and self._owned:
            try:
                self._stream.close()
            except OSError:
                pass
        self._stream = None
        self._owned = False


def open_sink(target: LogTarget, reactor: Any) -> Any:
    """
    The sink for a configured target: a L{LogSink} for files and standard
    streams, a L{l4lb.syslog.SyslogSink} for C{syslog} and C{udp}.
    """
    if target.kind in ("syslog", "udp"):
        from l4lb.syslog import SyslogSink

        return SyslogSink(target, reactor)
    return LogSink(target)


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
