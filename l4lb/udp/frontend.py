"""
A C{mode udp} frontend: its session table, the routing of each datagram
and the thin C{DatagramProtocol} each bound port uses.

The first datagram from a client address (on one of the frontend's ports)
picks a server through the backend's balancer, with the client's IP address
as the key of hashing algorithms, and opens a socket connected to it; later
datagrams from that address go the same way until the session ends:

    - C{timeout udp} of silence in both directions (C{cD idle}, or
      C{sD unanswered} while the server still owes C{udp-responses}
      replies);
    - every datagram from the client has had its C{udp-responses} replies
      from the server, counted per datagram as nginx's C{proxy_responses}
      does, so that a query still in flight keeps the session for its
      answer (C{-- responses});
    - evicted, as the least recently active session, to make room for a new
      one at C{maxsessions} (C{PD evicted});
    - the server answered ICMP port unreachable (C{SC refused}); the
      datagram is sent to another server when the backend's C{retries}
      allow it, and the refusal counts as a connection error of the server
      for C{observe layer4} (a first reply counts as a success);
    - the server went down or into maintenance (C{DD down}, C{KD killed}).

With C{udp-requests N}, a session stops taking datagrams after the client's
Nth: the next one starts a new session, with a new pick, while the old one
still relays replies until it ends (with C{udp-responses} too, once its N
datagrams have had their replies).

One timer per frontend expires idle sessions: it fires when the least
recently active session would expire and is re-armed for the next one, so
no datagram touches a timer.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from l4lb.config.model import Frontend as FrontendSpec
from l4lb.eventrate import EventRate
from l4lb.logformats import format_udp_session
from l4lb.pool import BackendState, Server
from l4lb.udp import log as udplog
from l4lb.udp.counters import UdpCounters, live
from l4lb.udp.log import UdpRecord
from l4lb.udp.session import ServerSocket, UdpSession
from l4lb.udp.sockets import connect_server
from l4lb.udp.table import SessionTable

_log = Logger(namespace="l4lb")

#: The idle timeout of a UDP session when neither the frontend nor the
#: backend sets C{timeout udp}.
DEFAULT_UDP_TIMEOUT = 30.0

#: Seconds between two warnings of the same kind from one frontend.
WARNING_INTERVAL = 1.0

Address = Tuple[str, int]


class Listener(DatagramProtocol):
    """
    The protocol of one bound port of a UDP frontend: it hands each
    datagram to the frontend.

    @ivar frontend: The L{UdpFrontend}.
    @ivar clients: The current session of each client address on this port.
    @ivar reply: Sends a datagram to a client from this port, when its
        datagrams are read directly (L{l4lb.udp.reader}); else C{None}:
        through its transport's C{write}.
    """

    noisy = False
    transport: Any

    def __init__(self, frontend: "UdpFrontend") -> None:
        self.frontend = frontend
        self.clients: Dict[Address, UdpSession] = {}
        self.reply: Optional[Callable[[Any, Address], Any]] = None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """
        A datagram from a client.
        """
        self.frontend.datagram(self, datagram, addr)


class UdpFrontend:
    """
    A running C{mode udp} frontend.

    @ivar spec: Its configuration.
    @ivar name: Its name.
    @ivar backend: The L{BackendState} its sessions go to.
    @ivar reactor: For time, timers and the sessions' sockets.
    @ivar seconds: The clock.
    @ivar sink: Where session logs go (C{None}: not logged).
    @ivar table: The L{SessionTable} of its sessions.
    @ivar listeners: The protocols of its bound ports.
    @ivar counters: Totals of its ended sessions and of datagrams dropped
        before a session existed; see L{snapshot}.
    @ivar max_responses: C{udp-responses}, replies expected per client
        datagram (0: no limit).
    @ivar max_requests: C{udp-requests} (0: no limit).
    @ivar session_rate: Its new sessions per second
        (L{l4lb.eventrate.EventRate}; stats C{rate}, C{rate_max}).
    @ivar max_current: The most sessions it had at once (stats C{smax}).
    """

    def __init__(
        self,
        spec: FrontendSpec,
        backend: BackendState,
        reactor: Any,
        sink: Optional[Any],
        default_capacity: int,
    ) -> None:
        """
        @param default_capacity: The session cap when the frontend sets no
            C{maxsessions}.
        """
        self.spec = spec
        self.name = spec.name
        self.backend = backend
        self.reactor = reactor
        self.seconds = reactor.seconds
        self.sink = sink if spec.log else None
        backend_spec = backend.spec
        idle = spec.timeouts.udp or backend_spec.timeouts.udp or DEFAULT_UDP_TIMEOUT
        self.table: SessionTable[UdpSession] = SessionTable(
            spec.maxsessions or default_capacity, idle
        )
        self.listeners: List[Listener] = []
        self.counters = UdpCounters()
        self.max_responses = backend_spec.udp_responses
        self.max_requests = backend_spec.udp_requests
        self._retries = backend_spec.retries
        self._timer: Any = None
        self._warned: Dict[str, Tuple[float, int]] = {}
        self._stopped = False
        self.session_rate = EventRate()
        self.max_current = 0
        backend.listeners.append(self._server_changed)

    def listener(self) -> Listener:
        """
        Make the protocol for one more bound port.
        """
        listener = Listener(self)
        self.listeners.append(listener)
        return listener

    # -- datagrams ---------------------------------------------------------

    def datagram(self, listener: Listener, datagram: Any, addr: Address) -> None:
        """
        Route a client's datagram: through its session, or a new one.

        @param datagram: The datagram: C{bytes}, or a C{memoryview} valid
            only during the call.
        """
        session = listener.clients.get(addr)
        now = self.seconds()
        if session is None:
            session = self._open(listener, addr, now, ())
            if session is None:
                return
        else:
            session.last_activity = now
            self.table.touch(session)
        session.datagrams_in += 1
        session.bytes_in += len(datagram)
        if session.datagrams_out == 0:
            # Kept for a retry until the server answers; a datagram read
            # directly is a view of a buffer the next read reuses.
            session.pending = bytes(datagram)
        if self.max_requests and session.datagrams_in >= self.max_requests:
            # Retired: replies still come back, the next datagram picks anew.
            del listener.clients[addr]
        session.to_server(datagram)

    def _open(
        self,
        listener: Listener,
        client: Address,
        now: float,
        tried: Tuple[Server, ...],
        server: Optional[Server] = None,
    ) -> Optional[UdpSession]:
        """
        Start a session for C{client}, or count the datagram as dropped.
        """
        if self._stopped:
            self.counters.dropped += 1
            return None
        if self.table.full:
            self._make_room(now)
        backend = self.backend
        if server is None:
            server = backend.pick(client[0], tried)
        if server is None or server.address is None:
            self.counters.dropped += 1
            self._warn(now, "noserver", "no server available; datagrams dropped")
            return None
        session = UdpSession(self, listener, client, server, now, tried)
        try:
            port = connect_server(self.reactor, ServerSocket(session), server.address, server.port)
        except Exception as e:
            self.counters.dropped += 1
            self._warn(now, "socket", f"cannot open a socket to a server ({e}); datagrams dropped")
            return None
        session.attach(port)
        backend.take(server, session, now)
        backend.current += 1
        backend.total += 1
        backend.session_rate.hit(now)
        self.session_rate.hit(now)
        if backend.current > backend.max_current:
            backend.max_current = backend.current
        for counters in (self.counters, backend.udp, server.udp):
            counters.sessions += 1
        self.table.add(session)
        if len(self.table) > self.max_current:
            self.max_current = len(self.table)
        listener.clients[client] = session
        if self._timer is None:
            self._arm(now)
        return session

    def _make_room(self, now: float) -> None:
        """
        At the cap: end the idle sessions, else evict the least recently
        active one.
        """
        for session in self.table.expire(now):
            self._end(session, session.idle_end())
        if not self.table.full:
            return
        oldest = self.table.oldest()
        assert oldest is not None
        self.counters.evicted += 1
        self._end(oldest, udplog.EVICTED)
        self._warn(
            now,
            "evicted",
            f"maxsessions {self.table.capacity} reached; the least recently"
            " active sessions are evicted",
        )

    # -- ends --------------------------------------------------------------

    def first_reply(self, session: UdpSession) -> None:
        """
        The session's server replied for the first time: a success for the
        passive health check (C{observe layer4}).
        """
        observer = session.server.observer
        if observer is not None:
            observer.connect_succeeded()

    def responses_reached(self, session: UdpSession) -> None:
        """
        The server sent C{udp-responses} replies for each datagram the
        client sent in this session: end the session.
        """
        self._end(session, udplog.RESPONSES)

    def kill(self, session: UdpSession, termination: str) -> None:
        """
        End a session from outside, logged with C{termination}.
        """
        reason = {"DD": udplog.DOWN[1]}.get(termination, udplog.KILLED[1])
        self._end(session, (termination, reason))

    def refused(self, session: UdpSession) -> None:
        """
        The session's server answered ICMP port unreachable: count a
        passive health failure, end the session, and send the datagram that
        has no reply yet to another server while C{retries} allow.
        """
        if session.ended:
            return
        server = session.server
        server.udp.refused += 1
        server.failed_connects += 1
        if server.observer is not None:
            server.observer.connect_failed()
        pending = session.pending
        listener, client = session.listener, session.client
        tried = session.tried + (server,)
        self._end(session, udplog.REFUSED)
        if pending is None or len(tried) > self._retries or self._stopped:
            return
        if listener.clients.get(client) is not None:
            return
        replacement = self.backend.pick(client[0], tried)
        if replacement is None or replacement in tried:
            return
        now = self.seconds()
        retry = self._open(listener, client, now, tried, replacement)
        if retry is None:
            return
        retry.datagrams_in += 1
        retry.bytes_in += len(pending)
        retry.pending = pending
        retry.to_server(pending)

    def _end(self, session: UdpSession, why: Tuple[str, str]) -> None:
        if session.ended:
            return
        session.ended = True
        session.pending = None
        self.table.remove(session)
        clients = session.listener.clients
        if clients.get(session.client) is session:
            del clients[session.client]
        if session.port is not None:
            session.port.stopListening()
        server = session.server
        backend = self.backend
        backend.drop(server, session)
        backend.current -= 1
        self.counters.add_traffic(session)
        backend.udp.add_traffic(session)
        server.udp.add_traffic(session)
        if self.sink is not None:
            try:
                line = format_udp_session(self.spec.log_format, self._record(session, why))
                self.sink.write(line)
            except Exception:
                _log.failure("l4lb: cannot log a UDP session")

    def _record(self, session: UdpSession, why: Tuple[str, str]) -> UdpRecord:
        termination, reason = why
        if why == udplog.REFUSED and session.datagrams_out:
            termination = "SD"
        host, port = session.client
        return UdpRecord(
            client_host=host,
            client_port=port,
            started=session.started,
            frontend=self.name,
            backend=self.backend.name,
            server=session.server.name,
            duration=self.seconds() - session.started,
            datagrams_in=session.datagrams_in,
            bytes_in=session.bytes_in,
            datagrams_out=session.datagrams_out,
            bytes_out=session.bytes_out,
            dropped=session.dropped,
            termination=termination,
            reason=reason,
            fe_sessions=len(self.table),
            be_sessions=self.backend.current,
            srv_sessions=session.server.current,
        )

    def _server_changed(self, server: Server) -> None:
        """
        A server's state changed: a server that is down or in maintenance
        keeps no UDP session (each datagram would refresh it forever); the
        clients' next datagrams pick again.  A draining server keeps its
        sessions.
        """
        if server.up and server.admin != "maint":
            return
        termination = "DD" if not server.up else "KD"
        for session in list(server.sessions):
            if isinstance(session, UdpSession) and session.frontend is self:
                self.kill(session, termination)

    # -- time --------------------------------------------------------------

    def _arm(self, now: float) -> None:
        deadline = self.table.next_deadline()
        if deadline is not None and not self._stopped:
            self._timer = self.reactor.callLater(max(0.0, deadline - now), self._expire)

    def _expire(self) -> None:
        """
        End the idle sessions and re-arm for the next one.  Errors are
        logged, never raised, so the timer keeps running.
        """
        self._timer = None
        now = self.seconds()
        try:
            self.expire(now)
        except Exception:
            _log.failure("l4lb: cannot expire UDP sessions of {name}", name=self.name)
        self._arm(now)

    def expire(self, now: float) -> int:
        """
        End every session idle at C{now}.

        @return: How many ended.
        """
        expired = self.table.expire(now)
        for session in expired:
            self._end(session, session.idle_end())
        return len(expired)

    def _warn(self, now: float, kind: str, message: str) -> None:
        """
        Log C{message} at most once per L{WARNING_INTERVAL} for each kind,
        with the number of times it happened since the last warning.
        """
        last, count = self._warned.get(kind, (-WARNING_INTERVAL * 2, 0))
        count += 1
        if now - last < WARNING_INTERVAL:
            self._warned[kind] = (last, count)
            return
        self._warned[kind] = (now, 0)
        _log.warn(
            "Proxy {name}: {message} ({count} time(s) since the last warning).",
            name=self.name,
            message=message,
            count=count,
        )

    # -- life --------------------------------------------------------------

    def hand_over(self, successor: "UdpFrontend") -> None:
        """
        Give this frontend's ports and open sessions to C{successor}, the
        frontend a reload built to replace it: its listeners route to the
        successor from now on; each session keeps its server and the
        C{udp-responses} it started with, and idles out under the
        successor's C{timeout udp}.  This frontend then does nothing more.
        """
        self._stopped = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self._server_changed in self.backend.listeners:
            self.backend.listeners.remove(self._server_changed)
        for listener in self.listeners:
            listener.frontend = successor
        successor.listeners.extend(self.listeners)
        self.listeners = []
        for session in list(self.table):
            self.table.remove(session)
            session.frontend = successor
            if successor.table.full:
                # A smaller maxsessions: the least recently active go.
                oldest = successor.table.oldest()
                if oldest is not None:
                    successor._end(oldest, udplog.EVICTED)
            successor.table.add(session)
        if len(successor.table) and successor._timer is None:
            successor._arm(self.seconds())


    def stop(self) -> None:
        """
        End every session (logged as C{KD stopped}) and stop the timer; the
        ports are closed by the service.
        """
        self._stopped = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        for session in self.table:
            self._end(session, udplog.STOPPED)
        if self._server_changed in self.backend.listeners:
            self.backend.listeners.remove(self._server_changed)

    @property
    def current(self) -> int:
        """
        Sessions open now.
        """
        return len(self.table)

    def snapshot(self) -> UdpCounters:
        """
        The frontend's counters including the sessions still running.
        """
        return live(self.counters, self.table)
