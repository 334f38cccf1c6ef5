"""
A fake UDP reactor for the UDP unit tests: L{MemoryReactor} has no
C{listenUDP}.  Ports record what is written, where they are connected and
whether they are closed; tests deliver datagrams by calling the protocols.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock

from l4lb.balancers import find_factory
from l4lb.config.model import Backend, Frontend, ServerSpec, Timeouts
from l4lb.logs import MemorySink
from l4lb.pool import BackendState
from l4lb.udp.frontend import Listener, UdpFrontend


class FakeUdpPort:
    """
    A bound UDP port in memory.

    @ivar number: Its port number.
    @ivar interface: The interface it was bound to.
    @ivar max_packet_size: The C{maxPacketSize} asked for.
    @ivar written: C{(datagram, addr)} for each datagram written.
    @ivar connected_to: C{(host, port)} after C{connect}.
    @ivar closed: C{stopListening} was called.
    @ivar reading: Whether it reads (C{stopReading}/C{startReading}).
    @ivar error: When set, C{write} raises it.
    @ivar refuse: When set, C{write} reports ICMP port unreachable, as
        Twisted does for a connected socket whose send fails with
        ECONNREFUSED.
    """

    def __init__(
        self, reactor: "FakeUdpReactor", number: int, protocol: DatagramProtocol,
        interface: str, max_packet_size: int,
    ) -> None:
        self.reactor = reactor
        self.number = number
        self.protocol = protocol
        self.interface = interface
        self.max_packet_size = max_packet_size
        self.written: List[Tuple[bytes, Any]] = []
        self.connected_to: Optional[Tuple[str, int]] = None
        self.closed = False
        self.reading = True
        self.error: Optional[BaseException] = None
        self.refuse = False
        protocol.makeConnection(self)  # type: ignore[arg-type]

    def write(self, datagram: bytes, addr: Any = None) -> None:
        """
        Record a datagram, or fail as configured.
        """
        if self.error is not None:
            raise self.error
        if self.refuse:
            self.protocol.connectionRefused()
            return
        self.written.append((datagram, addr))

    def connect(self, host: str, port: int) -> None:
        """
        Record the connected address.
        """
        self.connected_to = (host, port)

    def stopListening(self) -> None:
        """
        Close the port.
        """
        if not self.closed:
            self.closed = True
            self.protocol.doStop()

    def stopReading(self) -> None:
        """
        Stop reading.
        """
        self.reading = False

    def startReading(self) -> None:
        """
        Read again.
        """
        self.reading = True

    def getHost(self) -> IPv4Address:
        """
        The bound address.
        """
        return IPv4Address("UDP", self.interface or "0.0.0.0", self.number)

    def reply(self, datagram: bytes) -> None:
        """
        Deliver a datagram from the connected peer.
        """
        assert self.connected_to is not None
        self.protocol.datagramReceived(datagram, self.connected_to)


class FakeUdpReactor(Clock):
    """
    A L{Clock} with an in-memory C{listenUDP}.

    @ivar ports: Every port opened, in order.
    @ivar fail_listen: When set, C{listenUDP} raises it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ports: List[FakeUdpPort] = []
        self.fail_listen: Optional[BaseException] = None
        self._next = 40000

    def listenUDP(
        self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 8192
    ) -> FakeUdpPort:
        """
        Open a fake port; port 0 gets the next free number.
        """
        if self.fail_listen is not None:
            raise self.fail_listen
        if port == 0:
            self._next += 1
            port = self._next
        elif any((p.interface, p.number) == (interface, port) and not p.closed for p in self.ports):
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        fake = FakeUdpPort(self, port, protocol, interface, maxPacketSize)
        self.ports.append(fake)
        return fake

    def open_ports(self) -> List[FakeUdpPort]:
        """
        The ports not closed yet.
        """
        return [p for p in self.ports if not p.closed]

    def port_to(self, host: str, port: int) -> FakeUdpPort:
        """
        The newest open port connected to C{host:port}.
        """
        for fake in reversed(self.ports):
            if fake.connected_to == (host, port) and not fake.closed:
                return fake
        raise LookupError(f"no open port connected to {host}:{port}")


def udp_servers(*names: str, host: str = "127.0.10.{}", port: int = 53) -> Tuple[ServerSpec, ...]:
    """
    Server specs C{name} on 127.0.10.N:53 (never reached: the reactor is in
    memory).
    """
    return tuple(
        ServerSpec(name=name, host=host.format(i), port=port, address=host.format(i))
        for i, name in enumerate(names, 1)
    )


class UdpRig:
    """
    A C{mode udp} frontend on a L{FakeUdpReactor}, with one bound port.

    @ivar reactor: The fake reactor; C{reactor.advance} drives time.
    @ivar sink: The session log lines.
    @ivar backend: The backend state.
    @ivar frontend: The L{UdpFrontend}.
    @ivar listener: The protocol of its port.
    @ivar port: Its bound port.
    """

    def __init__(
        self,
        servers: Sequence[ServerSpec] = udp_servers("s1", "s2"),
        balance: str = "roundrobin",
        timeout: Optional[float] = 10.0,
        maxsessions: int = 0,
        responses: int = 0,
        requests: int = 0,
        retries: int = 3,
        capacity: int = 1000,
        reactor: Optional[FakeUdpReactor] = None,
    ) -> None:
        self.reactor = reactor if reactor is not None else FakeUdpReactor()
        self.reactor.advance(1000.0)
        self.sink = MemorySink()
        spec = Backend(
            name="be",
            servers=tuple(servers),
            balance=balance,
            mode="udp",
            retries=retries,
            udp_responses=responses,
            udp_requests=requests,
        )
        self.backend = BackendState(spec, find_factory(balance))
        fe = Frontend(
            name="fe",
            binds=(),
            default_backend="be",
            mode="udp",
            maxsessions=maxsessions,
            timeouts=Timeouts(udp=timeout),
        )
        self.frontend = UdpFrontend(fe, self.backend, self.reactor, self.sink, capacity)
        self.listener: Listener = self.frontend.listener()
        self.port = self.reactor.listenUDP(53, self.listener, "127.0.0.1", 65535)

    def send(self, datagram: bytes, client: Tuple[str, int] = ("192.0.2.1", 5000)) -> None:
        """
        Deliver a datagram from C{client} to the frontend.
        """
        self.listener.datagramReceived(datagram, client)

    def server_port(self, name: str) -> FakeUdpPort:
        """
        The newest open session socket connected to server C{name}.
        """
        server = self.backend.server(name)
        assert server.address is not None
        return self.reactor.port_to(server.address, server.port)

    def replies(self) -> List[Tuple[bytes, Any]]:
        """
        What the frontend's port sent to clients.
        """
        return list(self.port.written)
