"""
Health checks of UDP servers.

Each check opens a socket connected to the server, sends one datagram and
waits for one reply:

    - with C{udp-check send} (or C{send-binary}) it passes on a reply
      (C{L7OK}) that matches C{udp-check expect} (any reply by default);
      a reply that does not match is C{L7RSP}, none in time C{L7TOUT};
    - with C{udp-check dns NAME [TYPE]} it sends a DNS query for C{NAME}
      and passes on any DNS response to it, whatever its response code;
    - without either, it sends an empty datagram and fails only when the
      server's host answers ICMP port unreachable: no reply in time, or any
      reply, passes (C{L4OK}).

ICMP port unreachable fails every kind (C{L4CON}).  The time limit is
C{timeout check} when set, else C{inter}; the ICMP-only probe waits at most
L{ICMP_WAIT} seconds, an ICMP error being much faster than that.
"""

from __future__ import annotations

import random
from typing import Any, Callable, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from l4lb.config.model import UdpCheckSpec
from l4lb.health.status import L4CON, L4OK, L7OK, L7RSP, L7TOUT, SOCKERR, CheckResult
from l4lb.interfaces import IHealthCheck
from l4lb.pool import BackendState, Server
from l4lb.udp.session import SEND_ERRORS
from l4lb.udp.sockets import connect_server

#: The longest the ICMP-only probe waits for an ICMP error.
ICMP_WAIT = 1.0

REFUSED_TEXT = "Connection refused (ICMP port unreachable)"


class _Probe(DatagramProtocol):
    """
    One run of a L{UdpCheck}: its socket, its timer and its L{Deferred}.
    """

    noisy = False

    def __init__(self, check: "UdpCheck", query_id: int) -> None:
        self.check = check
        self.query_id = query_id
        self.started = check.reactor.seconds()
        self.port: Any = None
        self.timer: Any = None
        self.done = False
        self.deferred: Deferred[CheckResult] = Deferred(self._cancel)

    def start(self, host: str) -> "Deferred[CheckResult]":
        check = self.check
        try:
            self.port = connect_server(check.reactor, self, host, check.port)
        except Exception as e:
            self._finish(CheckResult(SOCKERR, f"cannot open a UDP socket: {e}"))
            return self.deferred
        self.timer = check.reactor.callLater(check.timeout, self._timed_out)
        try:
            self.port.write(check.datagram(self.query_id))
        except SEND_ERRORS as e:
            self._finish(CheckResult(SOCKERR, f"cannot send the check datagram: {e}"))
        return self.deferred

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """
        The server replied.
        """
        self._finish(self.check.judge(datagram, self.query_id))

    def connectionRefused(self) -> None:
        """
        The server's host answered ICMP port unreachable.
        """
        self._finish(CheckResult(L4CON, REFUSED_TEXT))

    def _timed_out(self) -> None:
        self.timer = None
        if self.check.spec is None:
            self._finish(CheckResult(L4OK, "no ICMP error"))
        else:
            self._finish(CheckResult(L7TOUT, "no reply"))

    def _close(self) -> None:
        self.done = True
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()
        port, self.port = self.port, None
        if port is not None:
            port.stopListening()

    def _finish(self, result: CheckResult) -> None:
        if self.done:
            return
        self._close()
        duration = self.check.reactor.seconds() - self.started
        self.deferred.callback(
            CheckResult(result.status, result.description, duration, result.agent)
        )

    def _cancel(self, d: "Deferred[CheckResult]") -> None:
        self._close()


@implementer(IHealthCheck)
class UdpCheck:
    """
    A UDP health check of one server.

    @ivar reactor: Sockets and time.
    @ivar address: Returns the address to check (C{None} while unknown).
    @ivar port: The port to check.
    @ivar inter: The check interval, the time limit without C{timeout
        check}.
    @ivar spec: What to send and expect, or C{None} for the ICMP-only
        probe.
    @ivar timeout_check: C{timeout check}, or C{None}.
    """

    kind = "check"

    def __init__(
        self,
        reactor: Any,
        address: Callable[[], Optional[str]],
        port: int,
        inter: float,
        spec: Optional[UdpCheckSpec] = None,
        timeout_check: Optional[float] = None,
        rng: Optional[random.Random] = None,
    ) -> None:
        """
        @param rng: Chooses DNS query ids; a fresh one by default.
        """
        self.reactor = reactor
        self.address = address
        self.port = port
        self.inter = inter
        self.spec = spec
        self.timeout_check = timeout_check
        self._rng = rng if rng is not None else random.Random()

    @property
    def timeout(self) -> float:
        """
        The longest a check may take.
        """
        limit = self.timeout_check if self.timeout_check is not None else self.inter
        if self.spec is None:
            return min(limit, ICMP_WAIT)
        return limit

    def datagram(self, query_id: int) -> bytes:
        """
        What one check sends.
        """
        spec = self.spec
        if spec is None:
            return b""
        if spec.dns_name is not None:
            # Only for DNS checks: it imports twisted.names.
            from l4lb.udp import dns

            return dns.build_query(query_id, spec.dns_name, spec.dns_type)
        return spec.send

    def judge(self, reply: bytes, query_id: int) -> CheckResult:
        """
        The result of a check that got C{reply}.
        """
        spec = self.spec
        if spec is None:
            return CheckResult(L4OK, "reply received")
        if spec.dns_name is not None:
            from l4lb.udp import dns

            if dns.answers(reply, query_id):
                return CheckResult(L7OK, "DNS response")
            return CheckResult(L7RSP, "not a DNS response to the query")
        if spec.expect == "any" or spec.pattern in reply:
            return CheckResult(L7OK, "(udp-check)")
        return CheckResult(L7RSP, f"reply does not contain {spec.pattern!r}")

    def run(self) -> "Deferred[CheckResult]":
        """
        Check once; see L{IHealthCheck.run}.
        """
        host = self.address()
        if host is None:
            raise ValueError(f"no address to check on port {self.port}")
        return _Probe(self, self._rng.randrange(65536)).start(host)

    def __repr__(self) -> str:
        return f"<UdpCheck port {self.port} {self.spec!r}>"


def udp_checks(backend: BackendState, server: Server, reactor: Any) -> List[Any]:
    """
    The health checks of a server of a C{mode udp} backend, for the
    monitor: one L{UdpCheck} with C{check} (on C{addr}/C{port} when
    given), none otherwise.
    """
    spec = server.spec
    if not spec.check:
        return []

    def check_address() -> Optional[str]:
        return spec.check_addr or server.address

    return [
        UdpCheck(
            reactor,
            check_address,
            spec.check_port or server.port,
            spec.inter,
            backend.spec.udp_check,
            backend.spec.timeouts.check,
        )
    ]
