"""
One client's UDP session: the server chosen for it, the connected socket
its datagrams go through and what it relayed.

Datagrams from the client are written to the session's socket, connected
to the server; the server's replies are read from that socket and written
back to the client through the frontend's port they arrived on, so they
leave from the address the client sent to.  Neither direction formats,
allocates or arms a timer: each datagram adds to four integers and notes
the time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple

from twisted.internet.error import MessageLengthError
from twisted.internet.protocol import DatagramProtocol

from l4lb.udp import log as udplog

if TYPE_CHECKING:
    from l4lb.pool import Server
    from l4lb.udp.frontend import Listener, UdpFrontend

#: Errors of a send that drop the datagram: a full socket buffer
#: (EAGAIN, ENOBUFS), a datagram too large (EMSGSIZE), an unreachable
#: network, and so on.
SEND_ERRORS = (OSError, MessageLengthError)


class ServerSocket(DatagramProtocol):
    """
    The protocol of a session's connected socket.

    @ivar session: The session it belongs to.
    """

    noisy = False

    def __init__(self, session: "UdpSession") -> None:
        self.session = session
        # Replies may be views of the shared read buffer when they are
        # sent on with a socket's own sendto, which copies them at once.
        self.takes_views = session.listener.reply is not None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """
        A reply from the server: relay it to the client.
        """
        self.session.from_server(datagram)

    def connectionRefused(self) -> None:
        """
        The server answered ICMP port unreachable.
        """
        self.session.frontend.refused(self.session)


class UdpSession:
    """
    One client address of one frontend port, relayed to one server.

    @ivar frontend: The L{UdpFrontend} it belongs to.
    @ivar listener: The frontend port (a L{Listener}) the client sent to.
    @ivar client: The client's address, C{(host, port)}.
    @ivar server: The L{Server} chosen for it.
    @ivar port: Its socket connected to the server, once open.
    @ivar started: When it started (the first datagram).
    @ivar last_activity: When a datagram last passed, in either direction.
    @ivar datagrams_in: Datagrams from the client.
    @ivar bytes_in: Their bytes.
    @ivar datagrams_out: Datagrams from the server.
    @ivar bytes_out: Their bytes.
    @ivar dropped: Datagrams that could not be sent, either way.
    @ivar pending: The client's last datagram while no reply has come, so
        that it can be sent to another server if this one refuses it.
    @ivar tried: Servers that refused this client's datagram already.
    @ivar ended: Whether it has ended.
    @ivar max_responses: Replies expected for each datagram from the
        client (C{udp-responses}; 0: no limit): the session ends once
        C{datagrams_out} reaches C{max_responses * datagrams_in}.
    """

    __slots__ = (
        "frontend",
        "listener",
        "client",
        "server",
        "port",
        "started",
        "last_activity",
        "datagrams_in",
        "bytes_in",
        "datagrams_out",
        "bytes_out",
        "dropped",
        "pending",
        "tried",
        "ended",
        "max_responses",
        "_send",
        "_reply",
    )

    def __init__(
        self,
        frontend: "UdpFrontend",
        listener: "Listener",
        client: Tuple[str, int],
        server: "Server",
        now: float,
        tried: Tuple["Server", ...] = (),
    ) -> None:
        self.frontend = frontend
        self.listener = listener
        self.client = client
        self.server = server
        self.port: Any = None
        self.started = now
        self.last_activity = now
        self.datagrams_in = 0
        self.bytes_in = 0
        self.datagrams_out = 0
        self.bytes_out = 0
        self.dropped = 0
        self.pending: Optional[bytes] = None
        self.tried = tried
        self.ended = False
        self.max_responses = frontend.max_responses
        self._send: Any = None
        self._reply = listener.reply or listener.transport.write

    def attach(self, port: Any) -> None:
        """
        Use C{port}, connected to the server, for this session's datagrams.
        """
        self.port = port
        self._send = port.write

    def to_server(self, datagram: bytes) -> None:
        """
        Send a client's datagram (already counted) to the server; a send
        error drops it and counts it.
        """
        try:
            self._send(datagram)
        except SEND_ERRORS:
            self.dropped += 1

    def from_server(self, datagram: bytes) -> None:
        """
        Relay a server's datagram to the client.
        """
        if self.ended:
            return
        self.datagrams_out += 1
        self.bytes_out += len(datagram)
        self.pending = None
        frontend = self.frontend
        if self.datagrams_out == 1:
            frontend.first_reply(self)
        self.last_activity = frontend.seconds()
        frontend.table.touch(self)
        try:
            self._reply(datagram, self.client)
        except SEND_ERRORS:
            self.dropped += 1
        max_responses = self.max_responses
        if max_responses and self.datagrams_out >= max_responses * self.datagrams_in:
            # Every datagram from the client has had its replies; one still
            # in flight keeps the session open for its own.
            frontend.responses_reached(self)

    def idle_end(self) -> Tuple[str, str]:
        """
        How a session that went idle is logged: C{sD unanswered} when the
        server still owes C{udp-responses} replies to the client's
        datagrams, C{cD idle} otherwise.
        """
        owed = self.max_responses * self.datagrams_in
        if owed and self.datagrams_out < owed:
            return udplog.UNANSWERED
        return udplog.IDLE

    def kill(self, termination: str = "KD") -> None:
        """
        End the session now from outside (an administrator, a server going
        down); nothing happens once it has ended.
        """
        if not self.ended:
            self.frontend.kill(self, termination)

    def __repr__(self) -> str:
        host, port = self.client
        return f"<UdpSession {host}:{port} -> {self.server.name}>"
