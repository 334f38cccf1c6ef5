"""
Building blocks for driving relay sessions: a clock-driven reactor, string
transports that can half-close, and a small frontend.

The C{data_path} fixture runs a test once per data path through the real
session: C{"classic"} in memory as above, C{"lean"} over loopback TCP
sockets with a reactor that records descriptors (L{FdReactor}) and runs them
on demand.  L{Wire} says what the peers of an established session do and
see in the same words on both.
"""

from __future__ import annotations

import select
import socket
import struct
from typing import Any, Dict, Iterator, List, Optional, Tuple

import attr
import pytest
from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IReactorFDSet
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from l4lb.balancers import find_factory
from l4lb.config.model import Backend, Frontend, ServerSpec, Timeouts
from l4lb.logs import MemorySink
from l4lb.pool import BackendState
from l4lb.tcp.frontend import FrontendFactory, FrontendState
from l4lb.tcp.limits import ConnectionLimiter
from l4lb._twistedcompat import server_transport
from l4lb.tcp.raw import RawTransport
from l4lb.tcp.connect import ServerConnections
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

    On the lean data path (C{path="lean"}), clients and servers are real
    socket pairs: a client's socket goes into a L{RawTransport} as if
    accepted directly, the session dials a listening socket of the kit,
    and L{FdReactor.pump} runs the relay.

    @ivar reactor: The memory reactor; C{reactor.advance} drives time.
    @ivar sink: The connection log lines.
    @ivar path: C{"classic"} or C{"lean"}: the data path sessions take.
    @ivar far: The far ends of the last accepted client and the last
        completed server on the lean path: the peers' own sockets.
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
        path: str = "classic",
        reactor: Optional[MemoryReactorClock] = None,
    ) -> None:
        self.path = path
        self.far: Dict[str, socket.socket] = {}
        self.listener: Optional[socket.socket] = None
        self.reactor: Any = reactor if reactor is not None else MemoryReactorClock()
        if path == "lean":
            self.reactor = FdReactor()
            self.listener = _kept(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(64)
            port = self.listener.getsockname()[1]
            backend_servers = tuple(
                attr.evolve(spec, host="127.0.0.1", address="127.0.0.1", port=port)
                for spec in backend_servers
            )
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
        self.frontend.lean = path == "lean"
        self.factory = FrontendFactory(self.frontend)
        self._next_port = 40000

    def accept(self) -> Tuple[ClientLeg, Any]:
        """
        Accept one client connection.
        """
        self._next_port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._next_port)
        leg = self.factory.buildProtocol(peer)
        if self.path == "lean":
            # Kept for complete(); on the classic path nothing must keep a
            # session alive (tests check that a gone client is collected).
            self.last_client = leg
            far, near = self._tcp_pair()
            far.setblocking(False)
            near.setblocking(False)
            self.far["client"] = far
            if self.frontend.stages:
                # As a listening port does for a frontend with stages: a
                # Twisted transport, which reads while stages inspect.
                transport: Any = server_transport(
                    near, leg, ("127.0.0.1", self._next_port), self.reactor
                )
                leg.makeConnection(transport)
                return leg, transport
            leg.peer = ("127.0.0.1", self._next_port)
            raw = RawTransport(near, leg, leg.peer, self.reactor)
            leg.makeConnection(raw)
            return leg, raw
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
        assert isinstance(factory, ServerConnections)
        session = factory.session
        assert isinstance(session, Session)
        return session

    def complete(self, attempt: int = -1) -> Tuple[Optional[ServerLeg], HalfCloseTransport]:
        """
        Let a connection attempt succeed: the server accepted.
        """
        if self.path == "lean":
            return self._complete_lean()
        session = self.session_of(attempt)
        host, port = self.attempts()[attempt]
        addr = IPv4Address("TCP", host, port)
        leg = session.buildProtocol(addr)
        transport = HalfCloseTransport(peerAddress=addr)
        if leg is not None:
            leg.makeConnection(transport)
        return leg, transport

    def client_sends(self, leg: ClientLeg, data: bytes) -> None:
        """
        The client of C{leg} (the last accepted one, on the lean path)
        sends C{data}, before or after its server accepted.
        """
        if self.path == "classic":
            leg.dataReceived(data)
            return
        self.far["client"].sendall(data)
        self.reactor.pump()

    def _tcp_pair(self) -> Tuple[socket.socket, socket.socket]:
        """
        A connected pair of loopback TCP sockets: the client's own, and
        the one the balancer accepted (a reset is then a real one).
        """
        listener = _kept(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        far = _kept(socket.create_connection(listener.getsockname(), timeout=5.0))
        near, _ = listener.accept()
        listener.close()
        return far, _kept(near)

    def _complete_lean(self) -> Tuple[Any, Any]:
        """
        Accept the session's connection on the kit's listening socket and
        let the session find it connected.
        """
        assert self.listener is not None
        ready, _, _ = select.select([self.listener], [], [], 5.0)
        assert ready, "the session never connected"
        far, _ = self.listener.accept()
        _kept(far).setblocking(False)
        self.far["server"] = far
        self.reactor.pump()
        leg = self.last_client.session.server_leg
        assert leg is not None, "the session did not take the connection"
        return leg, leg.transport

    def connect(self) -> "Wire":
        """
        Accept a client and let its server accept: an established session.
        """
        client, ct = self.accept()
        server, st = self.complete()
        return Wire(self, client, ct, server, st)

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


# -- both data paths ---------------------------------------------------------

#: The data paths an established session may take.
DATA_PATHS = ("classic", "lean")

# Bounds every loop that moves bytes between real sockets.
_MAX_ROUNDS = 500

# The sockets the kit made, closed after each test that uses data_path.
_OPEN: List[socket.socket] = []


def _kept(sock: socket.socket) -> socket.socket:
    _OPEN.append(sock)
    return sock


@pytest.fixture(params=DATA_PATHS)
def data_path(request: Any) -> Iterator[str]:
    """
    Each data path in turn (the test runs twice); the sockets the lean
    path used are closed afterwards.
    """
    yield request.param
    while _OPEN:
        _OPEN.pop().close()


@implementer(IReactorFDSet)
class FdReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} that also records descriptors, as the lean data
    path needs; L{pump} runs the ready ones.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fd_readers: List[Any] = []
        self.fd_writers: List[Any] = []

    def addReader(self, reader: Any) -> None:
        if reader not in self.fd_readers:
            self.fd_readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        if reader in self.fd_readers:
            self.fd_readers.remove(reader)

    def addWriter(self, writer: Any) -> None:
        if writer not in self.fd_writers:
            self.fd_writers.append(writer)

    def removeWriter(self, writer: Any) -> None:
        if writer in self.fd_writers:
            self.fd_writers.remove(writer)

    def getReaders(self) -> List[Any]:
        return list(self.fd_readers)

    def getWriters(self) -> List[Any]:
        return list(self.fd_writers)

    def removeAll(self) -> List[Any]:
        gone = self.fd_readers + self.fd_writers
        self.fd_readers, self.fd_writers = [], []
        return gone

    def pump(self) -> None:
        """
        Run what is due now (without moving time) and every ready
        descriptor, until nothing more happens.
        """
        for _ in range(_MAX_ROUNDS):
            self.advance(0)
            readers = [r for r in self.fd_readers if r.fileno() >= 0]
            writers = [w for w in self.fd_writers if w.fileno() >= 0]
            if not readers and not writers:
                return
            ready_r, ready_w, _ = select.select(readers, writers, [], 0)
            if not ready_r and not ready_w:
                return
            for selectable, method, registered in [
                *((r, "doRead", self.fd_readers) for r in ready_r),
                *((w, "doWrite", self.fd_writers) for w in ready_w),
            ]:
                if selectable not in registered:
                    continue
                why = getattr(selectable, method)()
                if why is not None:
                    self.removeReader(selectable)
                    self.removeWriter(selectable)
                    selectable.connectionLost(Failure(why))
        raise AssertionError("the reactor never settled")


class Wire:
    """
    One session established on a chosen data path, seen from its two
    peers: what each sends, receives and sees closed.  On the classic path
    the peers are L{HalfCloseTransport}s driven by hand; on the lean path
    they are real socket pairs, the relay reads and writes them for real,
    and each step pumps the reactor.

    @ivar relay: The L{Relay}.
    @ivar client: The client leg.
    @ivar server: The server leg.
    @ivar session: The session.
    """

    def __init__(self, relay: "Relay", client: ClientLeg, ct: Any, server: Any, st: Any) -> None:
        self.relay = relay
        self.path = relay.path
        self.client = client
        self.server = server
        self.session = client.session
        self.ct = ct
        self.st = st
        self.got = {"client": bytearray(), "server": bytearray()}
        self.eof = {"client": False, "server": False}
        self.far = dict(relay.far)
        # Never a silent fall back to the other path.
        assert type(self.session.path).__name__ == (
            "LeanRelay" if self.path == "lean" else "ClassicPath"
        ), self.session.path
        self.lost: dict = {"client": None, "server": None}
        if self.path == "lean":
            session = self.session
            for side in ("client", "server"):
                handler = getattr(session, side + "_lost")

                def record(reason: Failure, side: str = side, handler: Any = handler) -> None:
                    if self.lost[side] is None:
                        self.lost[side] = reason
                    handler(reason)

                setattr(session, side + "_lost", record)

    # -- what the peers do --------------------------------------------------

    def send(self, side: str, data: bytes) -> None:
        """
        The client or the server (C{side}) sends C{data}.
        """
        if self.path == "classic":
            leg = self.client if side == "client" else self.server
            leg.dataReceived(data)
            return
        far = self.far[side]
        far.sendall(data)
        self.relay.reactor.pump()

    def shut(self, side: str) -> None:
        """
        The client or the server ends its stream (a FIN).
        """
        if self.path == "classic":
            leg = self.client if side == "client" else self.server
            leg.readConnectionLost()
            return
        self.far[side].shutdown(socket.SHUT_WR)
        self.relay.reactor.pump()

    def reset(self, side: str) -> None:
        """
        The client's or the server's connection is reset.
        """
        if self.path == "classic":
            leg = self.client if side == "client" else self.server
            leg.connectionLost(Failure(error.ConnectionLost()))
            return
        far = self.far[side]
        far.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        far.close()
        self.relay.reactor.pump()

    def fail(self, side: str) -> None:
        """
        The relay finds the client's or the server's socket failed, even
        while it does not read it (the classic leg hears of it; the lean
        relay meets the error on the socket).
        """
        if self.path == "classic":
            leg = self.client if side == "client" else self.server
            leg.connectionLost(Failure(error.ConnectionLost()))
            return
        path: Any = self.session.path
        path.lost(path.client if side == "client" else path.server)
        self.relay.reactor.pump()

    def stall(self, side: str) -> None:
        """
        The client or the server stops reading while the other side sends:
        the relay holds data for it and stops reading the other side.
        """
        other = "server" if side == "client" else "client"
        if self.path == "classic":
            self.send(other, b"x" * 1000)
            transport = self.ct if side == "client" else self.st
            transport.producer.pauseProducing()
            return
        far = self.far[other]
        for _ in range(_MAX_ROUNDS):
            if self.held_up() != (False, False):
                return
            try:
                far.send(b"x" * 65536)
            except BlockingIOError:
                pass
            self.relay.reactor.pump()
        raise AssertionError("the relay never held data up")

    def unstall(self, side: str) -> None:
        """
        The client or the server reads again, everything it was sent.
        """
        if self.path == "classic":
            transport = self.ct if side == "client" else self.st
            transport.producer.resumeProducing()
            return
        for _ in range(_MAX_ROUNDS):
            before = len(self.got[side])
            self._read(side)
            self.relay.reactor.pump()
            if self.held_up() == (False, False) and len(self.got[side]) == before:
                # Everything sent so far went through.
                return
        raise AssertionError("the relay never sent what it held")

    # -- what the peers see --------------------------------------------------

    def received(self, side: str) -> bytes:
        """
        Everything the client or the server received so far.
        """
        if self.path == "classic":
            transport = self.ct if side == "client" else self.st
            return bytes(transport.value())
        self.relay.reactor.pump()
        self._read(side)
        return bytes(self.got[side])

    def _read(self, side: str) -> None:
        far = self.far[side]
        for _ in range(_MAX_ROUNDS):
            try:
                chunk = far.recv(65536)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                self.eof[side] = True
                return
            self.got[side] += chunk

    def write_shut(self, side: str) -> bool:
        """
        Whether the relay sent the client or the server an end of stream.
        """
        if self.path == "classic":
            transport = self.ct if side == "client" else self.st
            return bool(transport.write_closed)
        self.received(side)
        return self.eof[side]

    def closing(self, side: str) -> bool:
        """
        Whether the relay closed (or is closing) its socket to C{side}.
        """
        if self.path == "classic":
            transport = self.ct if side == "client" else self.st
            return bool(transport.disconnecting)
        self.relay.reactor.pump()
        raw = self.ct if side == "client" else self.st
        return bool(raw.disconnecting or not raw.connected)

    def aborted(self, side: str) -> bool:
        """
        Whether the relay aborted its socket to C{side} (dropping what it
        held for it).
        """
        if self.path == "classic":
            transport = self.ct if side == "client" else self.st
            return bool(transport.aborted)
        self.relay.reactor.pump()
        return self.lost[side] is not None and self.lost[side].check(error.ConnectionAborted)

    def held_up(self) -> Tuple[bool, bool]:
        """
        Whether the relay holds data for the server, and for the client.
        """
        return self.session._held_up()

    def finish(self) -> None:
        """
        Let every socket the relay closes finish closing: on the classic
        path the tests say when, here for both legs.
        """
        if self.path == "classic":
            for leg, transport in ((self.client, self.ct), (self.server, self.st)):
                if transport.disconnecting and not getattr(transport, "lost", False):
                    transport.lost = True
                    leg.connectionLost(Failure(error.ConnectionDone()))
            return
        self.relay.reactor.pump()

    def close(self) -> None:
        """
        Close the far ends of the lean path's sockets.
        """
        if self.path == "lean":
            for far in self.far.values():
                far.close()
