"""
TCP health checks: a plain connect (the default) and C{tcp-check}
sequences of C{connect}, C{send}, C{send-binary} and C{expect} rules.

A plain check passes (C{L4OK}) once the server accepts the connection.  A
sequence runs its rules in order, on one connection (a C{connect} rule
other than the first opens a new one); it passes (C{L7OK}) when every rule
did.  A sequence whose first rule is not C{connect} starts with an implicit
one, as in HAProxy.

Time limits follow HAProxy: without C{timeout check}, C{inter} bounds the
whole check; with it, connecting is bounded by C{min(inter, timeout
connect)} and, once connected, the rest of the check by C{timeout check}.

Check connections are closed with a reset once the check is decided, as
HAProxy does, so that frequent checks leave no sockets in C{TIME_WAIT};
those that send a PROXY header first (C{check-send-proxy}) are closed in
order instead, so that the header is not lost to the reset.
"""

from __future__ import annotations

import binascii
import errno
import os
import re
from typing import Any, Callable, Dict, List, Optional, Pattern, Sequence, Tuple

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IConnector, IHandshakeListener
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from l4lb.config.model import TcpCheckRule
from l4lb.config.tcpcheck import to_bytes as _to_bytes
from l4lb.health.status import (
    L4CON,
    L4OK,
    L4TOUT,
    L6OK,
    L6RSP,
    L6TOUT,
    L7OK,
    L7RSP,
    L7TOUT,
    SOCKERR,
    CheckResult,
)
from l4lb.interfaces import IHealthCheck

#: Bytes kept from a server's answer while an C{expect} waits (HAProxy's
#: default buffer size); once full, the expect is decided on what it has.
BUFFER_LIMIT = 16384

#: An internal final step of agent checks: read one line, then finish.
READ_LINE = "read-line"

_CONNECT = TcpCheckRule("connect")


def connect_error_text(reason: Failure) -> str:
    """
    The words for a failed connection attempt, as the system says them
    (C{"Connection refused"}, C{"No route to host"}).
    """
    value = reason.value
    if isinstance(value, error.ConnectionRefusedError):
        return os.strerror(errno.ECONNREFUSED)
    os_error = getattr(value, "osError", None)
    if isinstance(os_error, int):
        return os.strerror(os_error)
    if isinstance(os_error, OSError) and os_error.strerror:
        return str(os_error.strerror)
    if isinstance(value, error.ConnectError) and value.args:
        return str(value.args[-1]).strip(". ") or type(value).__name__
    return str(value) or type(value).__name__


def _quoted(rule: TcpCheckRule) -> str:
    if rule.action == "connect":
        extra = ""
        if rule.port is not None:
            extra += f" port {rule.port}"
        if rule.addr is not None:
            extra += f" addr {rule.addr}"
        return f"connect{extra}"
    if rule.action == "expect":
        bang = "! " if rule.negate else ""
        return f"expect {bang}{rule.match} {_printable(rule.pattern)!r}"
    if rule.action == READ_LINE:
        return "agent reply"
    return f"{rule.action} {_printable(rule.pattern)!r}"


def _printable(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


class _CheckProtocol(Protocol):
    """
    The check's side of one connection.
    """

    transport: Any

    def __init__(self, run: "_Run") -> None:
        self.run = run

    def connectionMade(self) -> None:
        self.run.connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.run.received(data)

    def connectionLost(self, reason: Failure = error.ConnectionDone()) -> None:  # type: ignore[assignment]
        self.run.lost(self)


@implementer(IHandshakeListener)
class _TlsCheckProtocol(_CheckProtocol):
    """
    The check's side of a connection with C{check-ssl}: connected once the
    TLS handshake (with the server's verification) succeeded.
    """

    handshaken = False

    def connectionMade(self) -> None:
        self.run.handshaking = self

    def handshakeCompleted(self) -> None:
        if self.transport.disconnecting:
            return
        self.handshaken = True
        self.run.connected(self)

    def connectionLost(self, reason: Failure = error.ConnectionDone()) -> None:  # type: ignore[assignment]
        if self.handshaken:
            self.run.lost(self)
        else:
            self.run.handshake_failed(self, reason)


class _Attempt(ClientFactory):
    """
    The factory of one connection attempt of a run.
    """

    noisy = False

    def __init__(self, run: "_Run") -> None:
        self.run = run

    def buildProtocol(self, addr: IAddress) -> Optional[_CheckProtocol]:  # type: ignore[override]
        if self.run.attempt is not self:
            return None
        if self.run.check.tls is not None:
            return _TlsCheckProtocol(self.run)
        return _CheckProtocol(self.run)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        if self.run.attempt is self:
            self.run.connect_failed(reason)


class _Run:
    """
    One execution of a check: its rules, its connection, its timers.
    """

    def __init__(self, check: "TcpCheck", host: str) -> None:
        self.check = check
        self.reactor = check.reactor
        self.host = host
        self.rules = check.rules
        self.step = 0
        self.started = self.reactor.seconds()
        self.deferred: Deferred[CheckResult] = Deferred(self._cancel)
        self.attempt: Optional[_Attempt] = None
        self.connector: Optional[IConnector] = None
        self.protocol: Optional[_CheckProtocol] = None
        self.handshaking: Optional[_CheckProtocol] = None
        self.buffer = bytearray()
        self.closed = False
        self.done = False
        self.timer: Any = None
        self.result_data = b""

    # -- driving -----------------------------------------------------------

    def start(self) -> "Deferred[CheckResult]":
        if self.check.timeout_check is None:
            self._arm(self.check.inter)
        try:
            self._advance()
        except BaseException:
            self._cancel(self.deferred)
            raise
        return self.deferred

    def _arm(self, delay: float) -> None:
        self._disarm()
        self.timer = self.reactor.callLater(delay, self._timed_out)

    def _disarm(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _advance(self) -> None:
        while not self.done and self.step < len(self.rules):
            rule = self.rules[self.step]
            action = rule.action
            if action == "connect":
                self._connect(rule)
                return
            if self.protocol is None:
                # The server closed: nothing more can be sent or read.
                self._evaluate_closed(rule)
                return
            if action in ("send", "send-binary"):
                self.buffer.clear()
                self.protocol.transport.write(rule.data)
                self.step += 1
                continue
            verdict = self._expect(rule)
            if verdict is None:
                return
            if not verdict:
                self._fail_expect(rule)
                return
            self.step += 1
        if not self.done:
            self._finish(self.check.success)

    def _connect(self, rule: TcpCheckRule) -> None:
        self._drop_connection()
        self.buffer.clear()
        self.closed = False
        check = self.check
        host = rule.addr or self.host
        port = rule.port or check.port
        if check.timeout_check is not None:
            limit = check.inter
            if check.timeout_connect is not None:
                limit = min(limit, check.timeout_connect)
            self._arm(limit)
        self.attempt = _Attempt(self)
        factory: Any = self.attempt
        if check.tls is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(check.tls, True, factory, clock=self.reactor)
        self.connector = self.reactor.connectTCP(host, port, factory, timeout=None)

    def connected(self, protocol: _CheckProtocol) -> None:
        if self.done:
            protocol.transport.abortConnection()
            return
        self.attempt = None
        self.connector = None
        self.handshaking = None
        self.protocol = protocol
        if self.check.preamble:
            protocol.transport.write(self.check.preamble)
        if self.check.timeout_check is not None:
            self._arm(self.check.timeout_check)
        self.step += 1
        self._advance()

    def connect_failed(self, reason: Failure) -> None:
        self.attempt = None
        self.connector = None
        if self.done:
            return
        if reason.check(error.TimeoutError):
            self._finish(CheckResult(L4TOUT, self._where("")))
            return
        status = L4CON if reason.check(error.ConnectError) else SOCKERR
        self._finish(CheckResult(status, self._where(connect_error_text(reason))))

    def handshake_failed(self, protocol: _CheckProtocol, reason: Failure) -> None:
        if protocol is not self.handshaking:
            return
        self.handshaking = None
        self.attempt = None
        self.connector = None
        if not self.done:
            from l4lb.tcp.tls import tls_failure_text

            self._finish(CheckResult(L6RSP, self._where(tls_failure_text(reason))))

    def received(self, data: bytes) -> None:
        if self.done:
            return
        room = BUFFER_LIMIT - len(self.buffer)
        if room > 0:
            self.buffer += data[:room]
        self._advance()

    def lost(self, protocol: _CheckProtocol) -> None:
        if protocol is not self.protocol:
            return
        self.protocol = None
        self.closed = True
        if not self.done:
            self._advance()

    # -- expect ------------------------------------------------------------

    def _expect(self, rule: TcpCheckRule) -> Optional[bool]:
        """
        Decide an C{expect} (or the agent's line) on what was received.

        @return: C{True} (passed), C{False} (failed) or C{None} (wait for
            more data).
        """
        final = self.closed or len(self.buffer) >= BUFFER_LIMIT
        data = bytes(self.buffer)
        if rule.action == READ_LINE:
            return True if (final or b"\n" in data or b"\r" in data) else None
        if not final:
            if not data:
                return None
            if rule.match in ("string", "binary") and len(data) < len(rule.data):
                return None
        found = _matches(rule, data, self.check.regexes.get(self.step))
        if found != rule.negate:
            return True
        return False if final else None

    def _evaluate_closed(self, rule: TcpCheckRule) -> None:
        if rule.action in ("expect", READ_LINE):
            verdict = self._expect(rule)
            if verdict:
                self.step += 1
                self._advance()
                return
            self._fail_expect(rule)
            return
        self._finish(CheckResult(SOCKERR, self._where("connection closed by the server")))

    def _fail_expect(self, rule: TcpCheckRule) -> None:
        if rule.negate:
            text = f"TCPCHK matched unwanted content {_printable(rule.pattern)!r}"
        elif rule.match in ("rstring", "rbinary"):
            text = f"TCPCHK did not match content (regex) {_printable(rule.pattern)!r}"
        elif rule.match == "binary":
            text = f"TCPCHK did not match binary content {rule.pattern!r}"
        else:
            text = f"TCPCHK did not match content {_printable(rule.pattern)!r}"
        self._finish(CheckResult(L7RSP, f"{text} at step {self.step + 1}"))

    # -- ending ------------------------------------------------------------

    def _where(self, text: str) -> str:
        if not self.check.sequence:
            return text
        rule = self.rules[self.step]
        step = f"at step {self.step + 1} of tcp-check ({_quoted(rule)})"
        return f"{text} {step}" if text else step

    def _timed_out(self) -> None:
        self.timer = None
        if self.done:
            return
        if self.handshaking is not None:
            self._finish(CheckResult(L6TOUT, self._where("")))
        elif self.protocol is None and self.step < len(self.rules) and self.rules[self.step].action == "connect":
            self._finish(CheckResult(L4TOUT, self._where("")))
        else:
            self._finish(CheckResult(L7TOUT, self._where("")))

    def _drop_connection(self) -> None:
        connector, self.connector = self.connector, None
        self.attempt = None
        if connector is not None:
            try:
                connector.stopConnecting()
            except error.NotConnectingError:
                pass
        protocol, self.protocol = self.protocol, None
        if protocol is not None and protocol.transport is not None:
            if self.check.preamble:
                # A reset could drop the PROXY header a plain check has just
                # written: the server sees it, then an orderly close.
                protocol.transport.loseConnection()
            else:
                protocol.transport.abortConnection()
        handshaking, self.handshaking = self.handshaking, None
        if handshaking is not None and handshaking.transport is not None:
            handshaking.transport.abortConnection()

    def _finish(self, result: CheckResult) -> None:
        if self.done:
            return
        self.done = True
        self._disarm()
        self.result_data = bytes(self.buffer)
        self._drop_connection()
        duration = self.reactor.seconds() - self.started
        final = CheckResult(result.status, result.description, duration, result.agent)
        finished = self.check.finish(self, final)
        self.deferred.callback(finished)

    def _cancel(self, d: "Deferred[CheckResult]") -> None:
        self.done = True
        self._disarm()
        self._drop_connection()


def _matches(rule: TcpCheckRule, data: bytes, regex: Optional[Pattern[bytes]]) -> bool:
    if rule.match in ("string", "binary"):
        return rule.data in data
    if rule.match == "rstring":
        assert regex is not None
        return regex.search(data) is not None
    assert regex is not None
    return regex.search(binascii.hexlify(data).upper()) is not None


@implementer(IHealthCheck)
class TcpCheck:
    """
    A TCP health check of one server: a plain connect, or a C{tcp-check}
    sequence.

    @ivar reactor: Connections and time.
    @ivar address: Returns the address to check (C{None} while unknown:
        the check is then skipped by the monitor).
    @ivar port: The port to check.
    @ivar rules: The rules run, an implicit C{connect} first if needed.
    @ivar sequence: Whether this is a C{tcp-check} sequence (its
        descriptions name the step, its success is C{L7OK}).
    @ivar inter: The check interval: the time limit of a check without
        C{timeout check}, and of a connect with it.
    @ivar timeout_check: C{timeout check}, or C{None}.
    @ivar timeout_connect: C{timeout connect}, or C{None}.
    @ivar preamble: What each of its connections sends first (a PROXY
        protocol header, C{check-send-proxy}), or nothing.
    @ivar tls: The client TLS settings of its connections (C{check-ssl}),
        or C{None}.
    """

    kind = "check"

    def __init__(
        self,
        reactor: Any,
        address: Callable[[], Optional[str]],
        port: int,
        inter: float,
        rules: Optional[Sequence[TcpCheckRule]] = None,
        timeout_check: Optional[float] = None,
        timeout_connect: Optional[float] = None,
        preamble: bytes = b"",
        tls: Any = None,
    ) -> None:
        """
        @param rules: A C{tcp-check} sequence; C{None} for a plain connect.
        @param tls: For C{check-ssl}, the client TLS settings every
            connection of the check uses (an
            L{IOpenSSLClientConnectionCreator
            <twisted.internet.interfaces.IOpenSSLClientConnectionCreator>});
            a plain check then passes with C{L6OK} once the handshake
            succeeded, and fails with C{L6RSP} (handshake failed) or
            C{L6TOUT}.
        """
        self.preamble = preamble
        self.reactor = reactor
        self.address = address
        self.port = port
        self.inter = inter
        self.sequence = rules is not None
        steps: List[TcpCheckRule] = list(rules or ())
        if not steps or steps[0].action != "connect":
            steps.insert(0, _CONNECT)
        self.rules: Tuple[TcpCheckRule, ...] = tuple(steps)
        self.timeout_check = timeout_check
        self.timeout_connect = timeout_connect
        self.tls = tls
        self.success = CheckResult(L7OK, "(tcp-check)") if self.sequence else CheckResult(L4OK)
        if tls is not None and not self.sequence:
            self.success = CheckResult(L6OK)
        #: The compiled regular expression of each C{rstring} and
        #: C{rbinary} rule, by index.
        self.regexes: Dict[int, Pattern[bytes]] = {
            index: re.compile(_to_bytes(rule.pattern))
            for index, rule in enumerate(self.rules)
            if rule.match in ("rstring", "rbinary")
        }

    @property
    def timeout(self) -> float:
        """
        The longest a check may take.
        """
        if self.timeout_check is None:
            return self.inter
        return self.inter + self.timeout_check

    def run(self) -> "Deferred[CheckResult]":
        """
        Check once; see L{IHealthCheck.run}.
        """
        host = self.address()
        if host is None:
            raise ValueError(f"no address to check on port {self.port}")
        return _Run(self, host).start()

    def finish(self, run: _Run, result: CheckResult) -> CheckResult:
        """
        Turn a run's outcome into the check's result (agent checks read
        the reply here).
        """
        return result

    def __repr__(self) -> str:
        return f"<TcpCheck port {self.port} {len(self.rules)} rules>"
