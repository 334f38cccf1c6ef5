"""
Logs sent to syslog: the local daemon's UNIX datagram socket (C{/dev/log})
or a syslog server over UDP, framed as RFC 3164 says and HAProxy does::

    <134>Nov 28 17:53:57 lb1 l4lb[4242]: 127.0.0.1:40312 [28/Nov/2026:...

C{<PRI>} is the facility times 8 plus the severity: connection logs are
C{info}; l4lb's own messages (a server going DOWN, a proxy started, ...)
keep their level.  Lines to a local socket leave the host name out, as
C{syslog(3)} does, because the daemon adds it.

Sending never blocks and never raises: a datagram the socket does not take
at once (full buffer, no daemon listening, too large) is dropped and
counted in L{SyslogSink.dropped}.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from typing import Any, Callable, Dict, Optional

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from zope.interface import implementer

from l4lb.config.logtarget import FACILITIES, SEVERITIES
from l4lb.config.model import LogTarget

_MONTHS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)

#: The syslog severity of each Twisted log level.
LEVELS: Dict[Any, int] = {
    LogLevel.debug: SEVERITIES["debug"],
    LogLevel.info: SEVERITIES["info"],
    LogLevel.warn: SEVERITIES["warning"],
    LogLevel.error: SEVERITIES["err"],
    LogLevel.critical: SEVERITIES["crit"],
}

#: The severity of connection and session logs.
TRAFFIC = SEVERITIES["info"]

#: The namespace of l4lb's own log events, which are forwarded to syslog.
NAMESPACE = "l4lb"


def rfc3164_date(when: float) -> str:
    """
    RFC 3164's timestamp, C{Nov  8 07:05:09}, in local time (the day
    padded with a space).
    """
    t = time.localtime(when)
    return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def frame(
    message: str,
    facility: int,
    severity: int,
    when: float,
    pid: int,
    hostname: Optional[str],
    tag: str = "l4lb",
) -> bytes:
    """
    One syslog datagram: C{<PRI>TIMESTAMP [HOSTNAME ]TAG[PID]: MESSAGE}.

    @param hostname: The host's name, or C{None} to leave it out (for a
        local daemon).
    """
    host = f"{hostname} " if hostname else ""
    header = f"<{facility * 8 + severity}>{rfc3164_date(when)} {host}{tag}[{pid}]: "
    return (header + message).encode("utf-8", "replace")


def _local(host: Optional[str]) -> str:
    """
    The local address to send from: the loopback one for a server on
    this host, else any of the server's family.
    """
    address = ipaddress.ip_address(host or "127.0.0.1")
    if address.is_loopback:
        return str(address)
    return "::" if address.version == 6 else "0.0.0.0"


class SyslogSender(DatagramProtocol):
    """
    The protocol of the socket that sends to syslog; it reads nothing.
    """

    noisy = False


@implementer(ILogObserver)
class SyslogSink:
    """
    Sends log lines to a syslog daemon, one datagram per line.

    It is also a Twisted log observer: while open, it forwards l4lb's own
    messages (namespace C{l4lb}) at their level.

    @ivar target: Where the datagrams go.
    @ivar facility: The facility code.
    @ivar max_severity: Messages less important than this severity (a
        larger number) are not sent.
    @ivar sent: Datagrams sent.
    @ivar dropped: Lines dropped because the socket did not take them.
    """

    def __init__(
        self,
        target: LogTarget,
        reactor: Any,
        publisher: Optional[LogPublisher] = None,
        hostname: Optional[str] = None,
        pid: Optional[int] = None,
    ) -> None:
        """
        @param target: A C{syslog} or C{udp} L{LogTarget}.
        @param reactor: Provides the time and the datagram socket
            (C{listenUDP}, C{listenUNIXDatagram}).
        @param publisher: Where l4lb's own log events are observed; the
            global log publisher by default.
        @param hostname: The name in network lines; this host's short name
            by default.
        @param pid: The process id in each line; this process's by default.
        """
        if target.kind not in ("syslog", "udp"):
            raise ValueError(f"not a syslog target: {target.kind!r}")
        self.target = target
        self.reactor = reactor
        self.facility = FACILITIES[target.facility]
        self.max_severity = SEVERITIES[target.level]
        self.sent = 0
        self.dropped = 0
        self._publisher = publisher if publisher is not None else globalLogPublisher
        self._pid = os.getpid() if pid is None else pid
        if target.kind == "udp":
            self._hostname: Optional[str] = (
                hostname if hostname is not None else socket.gethostname().split(".")[0]
            )
            self._address: Any = (target.host, target.port)
        else:
            self._hostname = None
            self._address = target.path
        self._port: Any = None
        self._send: Optional[Callable[[bytes, Any], Any]] = None
        self._header_second = -1
        self._headers: Dict[int, bytes] = {}
        self.reopen()

    def reopen(self) -> None:
        """
        Open (or re-open) the sending socket and observe l4lb's events.
        """
        self.close()
        protocol = SyslogSender()
        if self.target.kind == "udp":
            self._port = self.reactor.listenUDP(0, protocol, interface=_local(self.target.host))
        else:
            if not os.path.exists(str(self.target.path)):
                Logger(namespace=NAMESPACE, observer=self._publisher).warn(
                    "log: {path} does not exist (is a syslog daemon running?);"
                    " log lines are dropped until it does.",
                    path=self.target.path,
                )
            self._port = self.reactor.listenUNIXDatagram(None, protocol)
        # The socket's own sendto (getHandle() is public on both kinds of
        # port): Twisted's write checks the address anew for every line.
        self._send = self._port.getHandle().sendto
        self._publisher.addObserver(self)

    def write(self, line: str) -> None:
        """
        Send one connection log line at severity C{info}.
        """
        self.send(line, TRAFFIC)

    def send(self, message: str, severity: int) -> None:
        """
        Send one message at C{severity}, unless the target's level filters
        it out; drop it (and count it) if the socket does not take it.
        """
        if severity > self.max_severity:
            return
        send = self._send
        if send is None:
            self.dropped += 1
            return
        when = int(self.reactor.seconds())
        headers = self._headers
        if when != self._header_second:
            headers.clear()
            self._header_second = when
        header = headers.get(severity)
        if header is None:
            header = headers[severity] = frame("", self.facility, severity, when, self._pid, self._hostname)
        try:
            send(header + message.encode("utf-8", "replace"), self._address)
        except OSError:
            # EAGAIN (the socket's buffer is full), or the daemon is gone.
            self.dropped += 1
        else:
            self.sent += 1

    def __call__(self, event: Dict[str, Any]) -> None:
        """
        Forward one of l4lb's own log events at its level.
        """
        if event.get("log_namespace") != NAMESPACE:
            return
        severity = LEVELS.get(event.get("log_level"), TRAFFIC)
        if severity > self.max_severity:
            return
        try:
            text = formatEvent(event)
        except Exception:
            self.dropped += 1
            return
        self.send(text.replace("\n", " "), severity)

    def close(self) -> None:
        """
        Stop observing and close the socket.
        """
        self._publisher.removeObserver(self)
        port, self._port = self._port, None
        self._send = None
        if port is not None:
            port.stopListening()
