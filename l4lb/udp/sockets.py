"""
Opening UDP sockets: a frontend's bound ports and a session's connected
socket, with room for the largest datagrams.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Optional

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from l4lb.config.model import BindSpec
from l4lb.config.udp import parse_udp_endpoint

#: The largest datagram read: the UDP length field's limit.  Twisted reads
#: 8,192 bytes by default and silently truncates longer datagrams.
MAX_DATAGRAM = 65535

#: Socket buffer sizes asked for a frontend's port (the kernel caps them at
#: net.core.rmem_max / wmem_max): room for bursts from many clients.
FRONTEND_BUFFER = 4 * 1024 * 1024

#: Socket buffer sizes asked for a session's socket: a few of the largest
#: datagrams.
SESSION_BUFFER = 256 * 1024

#: Datagrams read from a session socket before giving other sockets a
#: turn.
READS_PER_WAKEUP = 32

#: The buffer of the reads that do not copy: one for every socket, since
#: the reactor runs in one thread and each datagram is sent on before the
#: next read.
BUFFER = bytearray(MAX_DATAGRAM)
#: A view of L{BUFFER}, sliced per datagram.
VIEW = memoryview(BUFFER)


def tune_buffers(port: Any, size: int) -> None:
    """
    Ask for C{size}-byte receive and send buffers on a port's socket.
    Errors are ignored: the kernel's defaults still work.
    """
    sock = getattr(port, "socket", None)
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:
            pass


def listen_bind(reactor: Any, bind: BindSpec, protocol: DatagramProtocol) -> Any:
    """
    Bind a frontend's UDP address.

    @param bind: A bind whose endpoint is C{udp:PORT[:interface=ADDRESS]}.
    @return: The listening port.
    @raise twisted.internet.error.CannotListenError: When the bind fails.
    """
    interface, port_number = parse_udp_endpoint(bind.endpoint)
    port = reactor.listenUDP(
        port_number, protocol, interface=interface, maxPacketSize=MAX_DATAGRAM
    )
    tune_buffers(port, FRONTEND_BUFFER)
    return port


@implementer(IReadDescriptor)
class ConnectedSocket:
    """
    A UDP socket on an ephemeral port, connected to one server: only that
    server's datagrams are read from it, and an ICMP port unreachable about
    it is reported (as the protocol's C{connectionRefused}).

    Twisted's own UDP port logs a line each time one opens and closes; a
    session socket is opened per client, so this lean reader is used
    instead.  It offers the part of a UDP port's interface that sessions
    and checks use: C{write} and C{stopListening}.

    @ivar protocol: The L{DatagramProtocol} its datagrams go to: as
        C{bytes}, or as views of a shared buffer valid only during the
        call when the protocol's C{takes_views} says so.
    @ivar peer: The server's address, C{(host, port)}.
    """

    def __init__(
        self, reactor: Any, protocol: DatagramProtocol, address: str, port: int
    ) -> None:
        """
        Open the socket and start reading.

        @raise OSError: When no socket can be opened or connected.
        """
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SESSION_BUFFER)
            sock.connect((address, port))
        except BaseException:
            sock.close()
            raise
        self.reactor = reactor
        self.socket: Optional[socket.socket] = sock
        self.protocol = protocol
        self.peer = (address, port)
        self._fileno = sock.fileno()
        self._views = bool(getattr(protocol, "takes_views", False))
        protocol.makeConnection(self)  # type: ignore[arg-type]
        reactor.addReader(self)

    def fileno(self) -> int:
        """
        The socket's descriptor (-1 once closed).
        """
        return self._fileno

    def write(self, datagram: bytes, addr: Any = None) -> None:
        """
        Send a datagram to the server.

        @raise OSError: When it cannot be sent now (full buffer, too
            large); a refusal is reported to the protocol instead.
        """
        sock = self.socket
        if sock is None:
            raise OSError(errno.EBADF, "socket closed")
        try:
            sock.send(datagram)
        except ConnectionRefusedError:
            self.protocol.connectionRefused()

    def doRead(self) -> None:
        """
        Read the datagrams waiting, a bounded number at a time.
        """
        views = self._views
        for _ in range(READS_PER_WAKEUP):
            sock = self.socket
            if sock is None:
                return
            try:
                if views:
                    datagram: Any = VIEW[: sock.recv_into(BUFFER)]
                else:
                    datagram = sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ICMP port, host or network unreachable about the server.
                self.protocol.connectionRefused()
                return
            self.protocol.datagramReceived(datagram, self.peer)

    def stopListening(self) -> None:
        """
        Stop reading and close the socket at once.
        """
        sock, self.socket = self.socket, None
        if sock is None:
            return
        if self in self.reactor.getReaders():
            self.reactor.removeReader(self)
        self._fileno = -1
        sock.close()
        self.protocol.doStop()

    def connectionLost(self, reason: Any) -> None:
        """
        The reactor dropped the descriptor: an error is pending on the
        socket (epoll reports an ICMP error as one, without data to read),
        or the reactor is shutting down.  A pending error is reported as a
        refusal.
        """
        sock = self.socket
        pending = 0
        if sock is not None:
            try:
                pending = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError:
                pending = 0
        self.stopListening()
        if pending:
            self.protocol.connectionRefused()

    def logPrefix(self) -> str:
        """
        The prefix of log lines about this socket.
        """
        return "UDP session"


def connect_server(reactor: Any, protocol: DatagramProtocol, address: str, port: int) -> Any:
    """
    Open a socket on an ephemeral port connected to a server: a
    L{ConnectedSocket} on reactors with file-descriptor sets, else (IOCP,
    test reactors) a Twisted UDP port, connected.

    @return: The socket; the caller closes it with C{stopListening}.
    @raise Exception: When no socket can be opened (out of descriptors).
    """
    if IReactorFDSet.providedBy(reactor):
        return ConnectedSocket(reactor, protocol, address, port)
    interface = "::" if ":" in address else ""
    udp_port = reactor.listenUDP(0, protocol, interface=interface, maxPacketSize=MAX_DATAGRAM)
    try:
        udp_port.connect(address, port)
    except BaseException:
        udp_port.stopListening()
        raise
    tune_buffers(udp_port, SESSION_BUFFER)
    return udp_port
