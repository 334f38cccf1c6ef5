"""
The state machine of one relayed TCP connection: the L{Session} that
joins a client leg and a server leg (L{l4lb.tcp.legs}).  Connecting to a
server is L{l4lb.tcp.connect}; carrying the bytes once established is a
data path (L{l4lb.tcp.datapath.IDataPath}: L{l4lb.tcp.classic} or
L{l4lb.tcp.lean}).

The life of a session::

    accepted ──> connecting ──> established ──> closing ──> logged
                  │  ▲  │                          ▲
                  │  └──┘ retry (same server        │
                  │       after a pause, or another │
                  │       one when redispatching)   │
                  └─────────────────────────────────┘ no server, refused,
                                                      timed out, client left

When every server that may be chosen is at its C{maxconn}, the session
first waits in its backend's L{l4lb.queue.WaitQueue} (state C{queued}) until
a slot frees, for at most C{timeout queue}; it is logged C{sQ} when that
passes and C{CQ} when the client leaves meanwhile.

While connecting, the client's transport is paused; a L{HangupWatcher}
notices a client that resets meanwhile, and reads what the client sends (at
most one chunk), which the server receives first once connected.  Once established, each transport is a streaming producer
of the other: a slow reader on one side pauses reading on the other side, so
memory stays bounded.  Both legs are half-closeable: an end of stream on one
side shuts the write half of the other, and data keeps flowing the other
way until both directions are done; then both sockets are closed.  That is
the classic data path (L{l4lb.tcp.classic}); on Linux, plain TCP legs are
carried by the lean one (L{l4lb.tcp.lean}) instead (unless C{tune.relay =
classic}), with the same guarantees.

A server with C{ssl} is reached over TLS (L{l4lb.tcp.tls}): its leg counts
as connected once the handshake and the verification of its certificate
succeeded, and a connection lost before that is a failed attempt, retried
like a refused one; C{timeout connect} covers the handshake.  TLS legs
(towards servers, and from clients on C{ssl crt} binds) half-close as TCP
legs do (L{l4lb.tcp.tls}): a peer's C{close_notify}, or its TCP FIN, ends
its direction only, and an end of stream passed on to a TLS peer is sent as
C{close_notify}; they are carried by the classic relay.

Timeouts follow HAProxy's rules: activity in either direction refreshes both
sides, C{timeout tunnel} replaces C{client}/C{server} once established, and
C{client-fin}/C{server-fin} apply to a side that has half-closed.  A side
whose peer does not take what it is sent is not read (flow control), so
only the peer's timeout runs then and the peer is blamed: a server that
stops reading is logged C{sD} after C{timeout server}, a client C{cD} after
C{timeout client} (L{l4lb.tcp.flow}, L{l4lb.tcp.lean.LeanRelay.held_up}).  The hot
path (L{l4lb.tcp.legs.ClientLeg.dataReceived}, its server twin, and
L{l4lb.tcp.lean}'s C{doRead}) only writes the chunk, adds its length and notes the
time; timers are checked lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple, Union

from twisted.internet.interfaces import IConnector, IReactorFDSet
from twisted.python.failure import Failure

from l4lb.tcp import lean
from l4lb.tcp.classic import ClassicPath
from l4lb.tcp.connect import Connecting, _log, stop_connecting
from l4lb.tcp.datapath import IDataPath
from l4lb.tcp.dial import Dialer
from l4lb.tcp.legs import ClientLeg, ServerLeg, TlsServerLeg, abort_legs
from l4lb.tcp.phases import (
    CLOSING,
    CONNECTING,
    DONE,
    ESTABLISHED,
    INSPECTING,
    QUEUED,
    killed,
)
from l4lb.tcp.record import log_session
from l4lb.tcp.stages import MAX_INSPECT, StageRejected
from l4lb.tcp.watch import HangupWatcher

if TYPE_CHECKING:
    from l4lb.pool import Server
    from l4lb.tcp.frontend import FrontendState

_INFINITY = float("inf")


def _discard(data: bytes) -> None:
    pass


class Session(Connecting):
    """
    One client connection relayed to one server.

    It makes its server connection attempts (L{Connecting}), and holds the data path that carries it once
    established (L{IDataPath}, chosen once in L{server_connected}).  It
    pins the settings it started with for its whole life: its frontend
    object (which a reload leaves to the sessions already open), the
    frontend's configuration (C{spec}: log format, C{dontlognull}, SNI
    routes), its log C{sink}, whether it may take the lean path and its
    inspect delay.

    @ivar state: C{"inspecting"}, C{"queued"}, C{"connecting"},
        C{"established"}, C{"closing"} or C{"done"}.
    @ivar backend: The L{BackendState} it is balanced over: the frontend's
        default one unless a stage chose another (SNI routing).
    @ivar client_host: The client's address as logged, balanced on and
        checked against limits: the peer's, or the one a PROXY header
        carried.
    @ivar destination: The C{(address, port)} the client connected to when
        a PROXY header said so, or C{None}: the listening socket's.
    @ivar stages: The stages it goes through before a server is chosen:
        its bind's, or else its frontend's.
    @ivar stage_index: How many of its stages it has passed.
    @ivar early: Bytes the client sent while its stages inspected them and
        that are relayed to the server first, once connected.
    @ivar sni: The TLS server name the client asked for, once read, or
        C{None}.
    @ivar on_end: Called with the session once it is done, if set (a stage
        that counts sessions per source releases its count).
    @ivar dispatched: Whether it was counted in its backend (it passed its
        stages).
    @ivar server: The L{Server} assigned to it, if any.
    @ivar retries: Connection attempts after the first.
    @ivar redispatched: Whether a retry went to another server.
    @ivar bytes_in: Bytes relayed from the client to the server.
    @ivar bytes_out: Bytes relayed from the server to the client.
    @ivar termination: The two-character termination state, once known.
    @ivar path: Its L{IDataPath} once established, else C{None}.
    @ivar queued_at: When it entered its backend's queue, or C{None}.
    @ivar dequeued_at: When it left the queue for a server, or C{None}.
    @ivar queue_passed: Connections served from the backend's queue before
        it while it waited, plus one for itself once it went through the
        queue (the log's C{%bq}, counted as HAProxy counts it).
    """

    # One per open connection: slots keep each under half a kilobyte, where
    # an instance dictionary of this many attributes takes 1.6 KB.  The
    # __dict__ slot (L{Connecting}'s) stays empty unless something sets
    # another attribute.
    __slots__ = (
        "accepted", "backend", "bytes_in", "bytes_out", "client", "client_closed",
        "client_eof_seen", "client_host", "client_port", "client_timeouts", "client_write",
        "connected_at", "connector", "dequeued_at", "destination", "dialed", "dispatched",
        "early", "frontend", "handshaking", "inspect_delay", "last_activity",
        "lean_allowed", "on_end", "path", "queue_mark", "queue_passed", "queued_at",
        "reactor", "redispatched", "retries", "seconds", "server", "server_closed",
        "server_eof_seen", "server_leg", "server_write", "sink", "sni", "spec",
        "stage_index", "stages", "state", "termination", "timeouts", "timer", "tried",
        "watcher",
    )

    def __init__(self, frontend: "FrontendState", client: ClientLeg) -> None:
        reactor = frontend.reactor
        self.reactor = reactor
        self.seconds = reactor.seconds
        # The settings it started with, for its whole life: a reload makes
        # new frontend objects for new connections and leaves this one to
        # the sessions already open (handing its gate on to the new one).
        self.frontend = frontend
        self.spec = frontend.spec
        self.sink = frontend.sink
        self.lean_allowed = frontend.lean
        self.inspect_delay = frontend.inspect_delay
        self.backend = frontend.backend
        self.timeouts = frontend.backend_spec.timeouts
        self.client_timeouts = frontend.spec.timeouts
        self.client = client
        self.server_leg: Optional[ServerLeg] = None
        self.handshaking: Optional[TlsServerLeg] = None
        self.server: Optional["Server"] = None
        self.accepted = reactor.seconds()
        self.connected_at: Optional[float] = None
        self.retries = 0
        self.redispatched = False
        self.tried: List["Server"] = []
        self.connector: Optional[Union[IConnector, Dialer]] = None
        self.dialed: Optional[Dialer] = None
        self.timer: Any = None
        self.watcher: Optional[HangupWatcher] = None
        self.last_activity = self.accepted
        self.bytes_in = 0
        self.bytes_out = 0
        self.client_eof_seen = False
        self.server_eof_seen = False
        self.client_closed = False
        self.server_closed = True
        self.state = CONNECTING
        self.termination: Optional[str] = None
        self.queued_at: Optional[float] = None
        self.dequeued_at: Optional[float] = None
        self.queue_mark = 0
        self.queue_passed = 0
        # Where a chunk read from one leg goes: set by the data path.
        self.server_write: Callable[[bytes], None] = _discard
        self.client_write: Callable[[bytes], None] = _discard
        self.path: Optional[IDataPath] = None
        self.stage_index = 0
        self.early: Optional[bytearray] = None
        self.sni: Optional[str] = None
        self.on_end: Optional[Callable[["Session"], None]] = None
        self.dispatched = False
        if client.peer is not None:
            self.client_host: str = client.peer[0]
            self.client_port: int = client.peer[1]
        else:
            peer = client.transport.getPeer()
            self.client_host = getattr(peer, "host", "unix")
            self.client_port = getattr(peer, "port", 0)
        self.destination: Optional[Tuple[str, int]] = None
        stages = client.stages
        self.stages: List[Any] = frontend.stages if stages is None else stages

    def start(self) -> None:
        """
        Run the frontend's stages over the new connection, then pause the
        client and connect to a server.
        """
        frontend = self.frontend
        frontend.total += 1
        gate = frontend.gate
        gate.acquire()
        frontend.session_rate.hit(self.accepted)
        gate.limiter.session_rate.hit(self.accepted)
        if gate.current > frontend.max_current:
            frontend.max_current = gate.current
        if self.stages:
            self.state = INSPECTING
            self.early = bytearray()
            self.server_write = self._inspect
            self._inspect(b"")
        else:
            self._dispatch()

    # -- inspecting ------------------------------------------------------

    def _inspect(self, data: bytes) -> None:
        """
        Add what the client sent to what the current stage inspects, and
        run the stages for as long as they can decide.
        """
        if self.state != INSPECTING:
            return
        early = self.early
        assert early is not None
        early += data
        stages = self.stages
        while self.stage_index < len(stages):
            stage = stages[self.stage_index]
            try:
                used = stage.inspect(self, early)
            except StageRejected as e:
                self._reject(e)
                return
            if used is None:
                if len(early) > MAX_INSPECT:
                    self._reject(StageRejected("PR", "the client sent too much before a decision"))
                elif self.timer is None:
                    delay = self.inspect_delay
                    if delay is not None:
                        self.timer = self.reactor.callLater(delay, self._inspect_timed_out)
                return
            self._cancel_timer()
            if used:
                del early[:used]
            self.stage_index += 1
        self.server_write = _discard
        self._dispatch()

    def _inspect_timed_out(self) -> None:
        """
        The current stage waited for the client too long: it decides with
        what it has, or the connection is closed.
        """
        self.timer = None
        if self.state != INSPECTING:
            return
        early = self.early
        assert early is not None
        stage = self.stages[self.stage_index]
        try:
            used = stage.expired(self, early)
        except StageRejected as e:
            self._reject(e)
            return
        if used is None:
            self._reject(StageRejected("cR", "the client sent too little in time"))
            return
        if used:
            del early[:used]
        self.stage_index += 1
        self._inspect(b"")

    def _reject(self, rejection: "StageRejected") -> None:
        """
        Close a connection a stage refused, logging why.
        """
        if rejection.message:
            _log.info(
                "{frontend}: {client}:{port}: {message}",
                frontend=self.frontend.name,
                client=self.client_host,
                port=self.client_port,
                message=rejection.message,
            )
        if rejection.denied:
            self.frontend.denied += 1
        self._abort(rejection.termination)

    # -- dispatching -----------------------------------------------------

    def _dispatch(self) -> None:
        """
        Pause the client and connect to a server of the backend.
        """
        self.dispatched = True
        self.state = CONNECTING
        backend = self.backend
        # A stage may have routed it to another backend than the default.
        self.timeouts = backend.spec.timeouts
        backend.current += 1
        backend.total += 1
        backend.session_rate.hit(self.accepted)
        if backend.current > backend.max_current:
            backend.max_current = backend.current
        transport = self.client.transport
        transport.pauseProducing()
        sock = getattr(transport, "socket", None)
        if sock is not None and IReactorFDSet.providedBy(self.reactor):
            # Under TLS the socket carries records, not the client's bytes:
            # only peek there.
            early = self._early_data if lean.plain(self.reactor, transport) else None
            self.watcher = HangupWatcher(
                sock, self.reactor, self._client_hung_up, early, lean.CHUNK
            )
            self.watcher.start()
        # Connections already waiting go first.
        server = None if backend.queue.current else backend.pick(self.client_host, ())
        if server is None:
            self._enqueue()
            return
        self._assign(server)
        self._connect()

    # -- queued ----------------------------------------------------------

    def _enqueue(self) -> None:
        """
        Wait in the backend's queue for a free server slot, for at most
        C{timeout queue} (by default C{timeout connect}); without any
        eligible server, give up at once.
        """
        backend = self.backend
        if not backend.has_eligible():
            self._abort("SC")
            return
        mark = backend.queue.add(self)
        if mark is None:
            # Every eligible server's maxqueue is used up: HAProxy logs a
            # server whose queue is full SQ.
            self._abort("SQ")
            return
        self.state = QUEUED
        self.queue_mark = mark
        self.queued_at = self.seconds()
        timeout = self.timeouts.queue
        if timeout is None:
            timeout = self.timeouts.connect
        client = self.timeouts.client
        if client is not None and (timeout is None or client < timeout):
            # HAProxy keeps the client's inactivity timeout running while a
            # connection waits: a shorter one ends the wait first, as cQ.
            self.timer = self.reactor.callLater(client, self._abort, "cQ")
        elif timeout is not None:
            self.timer = self.reactor.callLater(timeout, self._queue_timed_out)

    def dequeued(self, server: "Server", served_before: int) -> None:
        """
        A slot is free on C{server}: leave the queue and connect.

        @param served_before: Connections served from the queue before
            this one since start.
        """
        if self.state != QUEUED:
            return
        self._cancel_timer()
        self.state = CONNECTING
        self.dequeued_at = self.seconds()
        # HAProxy's %bq counts the positions the connection moved through,
        # its own included: the first in line logs 1.
        self.queue_passed = served_before - self.queue_mark + 1
        self._assign(server)
        self._connect()

    def _queue_timed_out(self) -> None:
        self.timer = None
        self._abort("sQ")

    def _assign(self, server: "Server") -> None:
        self.server = server
        self.backend.take(server, self, self.seconds())

    def _unassign(self) -> None:
        if self.server is not None:
            self.backend.drop(self.server, self)
            self.server = None

    def _early_data(self, data: bytes) -> None:
        """
        Bytes the client sent while its server is chosen or connected: the
        server receives them first.
        """
        self.bytes_in += len(data)
        self.last_activity = self.seconds()
        early = self.early
        if early is None:
            self.early = bytearray(data)
        else:
            early += data

    def _client_hung_up(self) -> None:
        self.watcher = None
        if self.state == CONNECTING:
            self._abort("CC")
        elif self.state == QUEUED:
            self._abort("CQ")

    # -- established -----------------------------------------------------

    def server_connected(self, leg: ServerLeg) -> None:
        """
        The server accepted: choose the data path, once, and start it.
        """
        self._cancel_timer()
        self.connector = None
        self.handshaking = None
        self.state = ESTABLISHED
        self.server_leg = leg
        server = self.server
        if server is not None and server.observer is not None:
            server.observer.connect_succeeded()
        now = self.seconds()
        self.connected_at = now
        self.last_activity = now
        first = self._first_bytes()
        dialer, self.dialed = self.dialed, None
        watcher, self.watcher = self.watcher, None
        client_transport, server_transport = self.client.transport, leg.transport
        path: IDataPath
        if self.lean_allowed and lean.usable(self.reactor, client_transport, server_transport):
            path = lean.LeanRelay(self, client_transport, server_transport)
        else:
            path = ClassicPath(self)
        self.path = path
        path.start(first, watcher, dialer)
        self._arm_idle_timer()

    def _first_bytes(self) -> bytes:
        """
        What the server receives before anything relayed: the server's
        preamble (a PROXY header) and what the client sent while its stages
        inspected it.
        """
        first = b""
        server = self.server
        if server is not None and server.preamble is not None:
            first = server.preamble(self)
        if self.early:
            first += bytes(self.early)
            self.early = None
        return first

    def client_eof(self) -> None:
        """
        The client shut its write half: shut the server's.
        """
        if self.client_eof_seen or self.state != ESTABLISHED:
            return
        self.client_eof_seen = True
        self.last_activity = self.seconds()
        assert self.path is not None
        self.path.shut_write(True)
        self._half_closed()

    def server_eof(self) -> None:
        """
        The server shut its write half: shut the client's.
        """
        if self.server_eof_seen or self.state != ESTABLISHED:
            return
        self.server_eof_seen = True
        self.last_activity = self.seconds()
        assert self.path is not None
        self.path.shut_write(False)
        self._half_closed()

    def _half_closed(self) -> None:
        if self.client_eof_seen and self.server_eof_seen:
            self._close("--")
        else:
            self._arm_idle_timer()

    def _idle_limit(self, held: bool = True) -> tuple[float, str]:
        """
        The idle time allowed now, and the termination state if it passes.

        As in HAProxy, a side is not read while the other side does not
        take what it is sent: only that other side's timeout runs then, and
        it is blamed (C{sD} for a server that does not read, C{cD} for a
        client).

        @param held: Whether to take a peer that does not read into
            account; without it, the shortest limit the session may have.
        """
        client_side = self.client_timeouts.client
        server_side = self.timeouts.server
        tunnel = self.timeouts.tunnel
        if tunnel is not None:
            client_side = server_side = tunnel
        if self.client_eof_seen and self.client_timeouts.client_fin is not None:
            client_side = self.client_timeouts.client_fin
        if self.server_eof_seen and self.timeouts.server_fin is not None:
            server_side = self.timeouts.server_fin
        c = _INFINITY if client_side is None else client_side
        s = _INFINITY if server_side is None else server_side
        if held:
            to_server, to_client = self._held_up()
            if to_server and not to_client:
                c = _INFINITY
            elif to_client and not to_server:
                s = _INFINITY
        if c <= s:
            return c, "cD"
        return s, "sD"

    def _arm_idle_timer(self) -> None:
        """
        Make the idle timer fire when the idle time allowed now has passed
        since the last activity.  A timer already set to fire no later is
        kept: L{_idle_check} sets it again for the rest of the time.
        """
        # The shortest limit: a peer that stops reading can only lengthen
        # it, which _idle_check finds out.
        limit, _ = self._idle_limit(False)
        if limit == _INFINITY:
            self._cancel_timer()
            return
        deadline = self.last_activity + limit
        timer = self.timer
        if timer is not None and timer.active() and timer.getTime() <= deadline:
            return
        self._cancel_timer()
        delay = max(0.0, deadline - self.seconds())
        self.timer = self.reactor.callLater(delay, self._idle_check)

    def _idle_check(self) -> None:
        self.timer = None
        limit, termination = self._idle_limit()
        idle = self.seconds() - self.last_activity
        if idle >= limit:
            self._abort(termination)
            return
        shortest, _ = self._idle_limit(False)
        if idle < shortest:
            self._arm_idle_timer()
            return
        # Only a peer that does not read keeps the session open: check again
        # when its own limit passes, or sooner in case it reads again (then
        # the shortest limit applies anew from that moment).
        self.timer = self.reactor.callLater(min(limit - idle, shortest), self._idle_check)

    def _held_up(self) -> Tuple[bool, bool]:
        """
        Whether data waits for a server that does not read it (the client
        is not read meanwhile), and whether data waits for a client that
        does not read it.
        """
        path = self.path
        if self.state != ESTABLISHED or path is None:
            return False, False
        return path.held_up()

    # -- closing ---------------------------------------------------------

    def _close(self, termination: str) -> None:
        """
        End the session gracefully: flush what is buffered, then close both
        sockets.  The idle timer keeps running so that a peer that never
        reads cannot hold the session open forever.
        """
        if self.termination is None:
            self.termination = termination
        self.state = CLOSING
        assert self.path is not None
        # Whatever a slow reader has not taken yet is still sent.
        self.path.close()
        if self.state == DONE:
            return
        self._arm_idle_timer()

    def _abort(self, termination: str) -> None:
        """
        End the session now, dropping what is buffered.
        """
        if self.termination is None:
            self.termination = termination
        if self.state == QUEUED:
            self.queue_passed = self.backend.queue.served - self.queue_mark + 1
            self.backend.queue.remove(self)
        self.state = CLOSING
        self._cancel_timer()
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.connector is not None:
            connector, self.connector = self.connector, None
            stop_connecting(connector)
            self.server_closed = True
        if self.handshaking is not None:
            self._drop_handshake()
            self.server_closed = True
        if self.path is not None:
            self.path.abort()
        else:
            abort_legs(self)
        self._maybe_done()

    def kill(self, termination: str) -> None:
        """
        Close the session at once from outside with the termination state
        given.  Nothing happens once it is closing.

        @param termination: The two-character state to log.
        """
        if self.state in (INSPECTING, QUEUED, CONNECTING, ESTABLISHED):
            self._abort(termination)

    def killed(self, cause: str) -> str:
        """
        The termination state to log if the session is ended from outside
        now for C{cause}: C{cause}, then the phase it is in
        (L{l4lb.tcp.phases.killed}).

        @param cause: C{"K"} (an administrator, a stop, a reload), C{"D"}
            (its server went down) or C{"U"} (an active server came back).
        """
        return killed(self.state, cause)

    def kill_for(self, cause: str) -> None:
        """
        Close the session at once from outside for C{cause}, logged with
        the phase it was in (L{killed}).
        """
        self.kill(killed(self.state, cause))

    def client_lost(self, reason: Failure) -> None:
        """
        The client's socket closed.
        """
        self.client_closed = True
        if self.state == INSPECTING:
            self._abort("CR")
        elif self.state == QUEUED:
            self._abort("CQ")
        elif self.state == CONNECTING:
            self._abort("CC")
        elif self.state == ESTABLISHED:
            # Before both directions ended (a TLS leg's close_notify or FIN
            # is an end of stream, as a FIN is): a reset, or a broken TLS
            # connection, which may have cut what was in flight.
            self._close("CD")
        self._maybe_done()

    def server_lost(self, reason: Failure) -> None:
        """
        The server's socket closed.
        """
        self.server_closed = True
        if self.state == ESTABLISHED:
            self._close("SD")
        self._maybe_done()

    def _cancel_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _maybe_done(self) -> None:
        if self.state == DONE or not (self.client_closed and self.server_closed):
            return
        self.state = DONE
        self._cancel_timer()
        frontend = self.frontend
        backend = self.backend
        server = self.server
        log_session(self)
        # Traffic is added to the totals once, when the session ends.
        frontend.bytes_in += self.bytes_in
        frontend.bytes_out += self.bytes_out
        if server is not None:
            server.bytes_in += self.bytes_in
            server.bytes_out += self.bytes_out
            if self.termination == "SD":
                # HAProxy's response errors: the server ended the exchange.
                server.failed_responses += 1
                backend.failed_responses += 1
            backend.drop(server, self)
            self.server = None
        if self.dispatched:
            backend.current -= 1
        frontend.gate.release()
        on_end = self.on_end
        if on_end is not None:
            self.on_end = None
            on_end(self)
