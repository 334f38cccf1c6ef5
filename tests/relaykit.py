"""
Building blocks for driving relay sessions in memory: a clock-driven
reactor, string transports that can half-close, and a small frontend.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from l4lb.balancers import find_factory
from l4lb.config.model import Backend, Frontend, ServerSpec, Timeouts
from l4lb.logs import MemorySink
from l4lb.pool import BackendState
from l4lb.tcp.frontend import FrontendFactory, FrontendState
from l4lb.tcp.limits import ConnectionLimiter
from l4lb.tcp.relay import ClientLeg, ServerLeg, Session


class HalfCloseTransport(StringTransport):
    """
    A L{StringTransport} that also records half-closes and aborts.  Like
    L{StringTransport}, it never calls C{connectionLost} by itself: tests do,
    to say when the socket closed.

    @ivar write_closed: C{loseWriteConnection} was called.
    @ivar aborted: C{abortConnection} was called.
    """

    write_closed = False
    aborted = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnecting = True


def servers(*specs: Tuple[str, int]) -> Tuple[ServerSpec, ...]:
    """
    Make server specs C{(name, weight)} on 127.0.10.N:80 (never connected to:
    the reactor is in memory).
    """
    return tuple(
        ServerSpec(name=name, host=f"127.0.10.{i}", port=80, address=f"127.0.10.{i}", weight=w)
        for i, (name, w) in enumerate(specs, 1)
    )


class Relay:
    """
    A frontend on a L{MemoryReactorClock}, and helpers to accept client
    connections and complete server connections by hand.

    @ivar reactor: The memory reactor; C{reactor.advance} drives time.
    @ivar sink: The connection log lines.
    """

    def __init__(
        self,
        backend_servers: Tuple[ServerSpec, ...] = servers(("s1", 1), ("s2", 1)),
        timeouts: Timeouts = Timeouts(connect=5.0, client=50.0, server=50.0),
        retries: int = 3,
        redispatch: int = -1,
        maxconn: int = 0,
        global_maxconn: int = 0,
        dontlognull: bool = False,
    ) -> None:
        self.reactor = MemoryReactorClock()
        self.sink = MemorySink()
        backend_spec = Backend(
            name="be",
            servers=backend_servers,
            retries=retries,
            redispatch=redispatch,
            timeouts=timeouts,
        )
        frontend_spec = Frontend(
            name="fe",
            binds=(),
            default_backend="be",
            maxconn=maxconn,
            timeouts=timeouts,
            dontlognull=dontlognull,
        )
        self.backend = BackendState(backend_spec, find_factory("roundrobin"))
        self.limiter = ConnectionLimiter(global_maxconn)
        self.gate = self.limiter.gate(maxconn)
        self.frontend = FrontendState(
            frontend_spec, self.backend, self.gate, self.reactor, self.sink
        )
        self.factory = FrontendFactory(self.frontend)
        self._next_port = 40000

    def accept(self) -> Tuple[ClientLeg, HalfCloseTransport]:
        """
        Accept one client connection.
        """
        self._next_port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._next_port)
        leg = self.factory.buildProtocol(peer)
        transport = HalfCloseTransport(peerAddress=peer)
        leg.makeConnection(transport)
        return leg, transport

    def attempts(self) -> List[Tuple[str, int]]:
        """
        Every connection attempt so far, as C{(host, port)}.
        """
        return [(c[0], c[1]) for c in self.reactor.tcpClients]

    def session_of(self, attempt: int = -1) -> Session:
        """
        The session that made a connection attempt.
        """
        factory: Any = self.reactor.tcpClients[attempt][2]
        assert isinstance(factory, Session)
        return factory

    def complete(self, attempt: int = -1) -> Tuple[Optional[ServerLeg], HalfCloseTransport]:
        """
        Let a connection attempt succeed: the server accepted.
        """
        session = self.session_of(attempt)
        host, port = self.attempts()[attempt]
        addr = IPv4Address("TCP", host, port)
        leg = session.buildProtocol(addr)
        transport = HalfCloseTransport(peerAddress=addr)
        if leg is not None:
            leg.makeConnection(transport)
        return leg, transport

    def fail(self, reason: BaseException, attempt: int = -1) -> None:
        """
        Let a connection attempt fail with C{reason}.
        """
        from twisted.python.failure import Failure

        session = self.session_of(attempt)
        session.clientConnectionFailed(self.reactor.connectors[attempt], Failure(reason))


class ListeningPort:
    """
    Stands in for a listening port: records whether it reads and how many
    connections each C{doRead} batch was allowed to accept.
    """

    def __init__(self, reading: bool = True) -> None:
        self.reading = reading
        self.numberAccepts = 100
        self.batches: List[int] = []

    def startReading(self) -> None:
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def doRead(self) -> None:
        self.batches.append(self.numberAccepts)
