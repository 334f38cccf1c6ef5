"""
Runtime state of backends and servers: what balancers, health checks, the
relay and (later) the stats read and change.
"""

from __future__ import annotations

from typing import Any, Callable, Container, List, Optional, Sequence, Set

from zope.interface import Interface

from l4lb.config.model import Backend as BackendSpec
from l4lb.config.model import ServerSpec
from l4lb.eventrate import EventRate
from l4lb.proxyproto import preamble
from l4lb.udp.counters import UdpCounters
from l4lb.queue import WaitQueue


class Server:
    """
    A server and its live state.

    @ivar spec: The configuration it came from.
    @ivar name: Its name.
    @ivar address: The IP address connections go to (C{None} while the host
        name is not resolved; such a server is not eligible).
    @ivar port: The port connections go to.
    @ivar weight: The effective weight the balancer uses: L{user_weight},
        or a share of it while L{throttle} is below 100.
    @ivar user_weight: The weight asked for: the configured one, or what
        the runtime API or an agent set.
    @ivar throttle: The percentage of L{user_weight} and L{user_maxconn}
        the server is given while it warms up after coming back
        (C{slowstart}); 100 otherwise.
    @ivar up: The health state; a server without checks is always up.
    @ivar admin: C{"ready"}, C{"drain"} or C{"maint"}.
    @ivar current: Connections open to it now.
    @ivar total: Connections it was given since start.
    @ivar failed_connects: Connection attempts to it that failed.
    @ivar sessions: The relay sessions assigned to it now (connecting or
        established), so that they can be listed or shut down.
    @ivar backend: The L{BackendState} it belongs to.
    @ivar maxconn: The current connection limit (0: none): L{user_maxconn},
        or a share of it while L{throttle} is below 100.
    @ivar user_maxconn: The limit asked for: the configured one, or what an
        agent set.
    @ivar observer: What is told of each connection attempt's outcome on
        live traffic (C{observe layer4}), or C{None}: an object with
        C{connect_failed()} and C{connect_succeeded()}.
    @ivar health_text: The health as the stats show it: C{"no check"},
        C{"UP"}, C{"UP 1/3"} (going down), C{"DOWN"}, C{"DOWN 1/2"} (going
        up) or C{"DOWN (agent)"}.
    @ivar check_status: The last health check's status code (C{"L4OK"},
        C{"L4CON"}, ...; C{"INI"} before the first, C{""} without checks).
    @ivar check_duration: Seconds the last health check took, or C{None}.
    @ivar check_desc: What the last health check reported, or C{""}.
    @ivar agent_status: The last agent check's status code, or C{""}.
    @ivar agent_duration: Seconds the last agent check took, or C{None}.
    @ivar agent_desc: What the last agent check reported, or C{""}.
    @ivar failed_checks: Failed health checks since start (stats
        C{chkfail}).
    @ivar down_transitions: Transitions from UP to DOWN (stats C{chkdown}).
    @ivar failed_hana: Times the passive checks' error limit was reached
        (stats C{hanafail}).
    @ivar last_change: When the health state last changed (reactor
        seconds; 0 before the checks start).
    @ivar down_time: Seconds spent DOWN, not counting the current spell
        (stats C{downtime} adds it).
    @ivar udp: Its UDP traffic (L{l4lb.udp.counters.UdpCounters}).
    @ivar bytes_in: Bytes from clients relayed to it by connections that
        have ended (the stats add the open ones).
    @ivar bytes_out: Bytes from it relayed to clients by connections that
        have ended.
    @ivar preamble: What makes the first bytes it receives on each relayed
        connection (its PROXY protocol header), given the session, or
        C{None}.
    @ivar tls: For a server with C{ssl}, the
        L{IOpenSSLClientConnectionCreator
        <twisted.internet.interfaces.IOpenSSLClientConnectionCreator>} its
        relayed connections are wrapped with; C{None} for plain TCP.
    @ivar admin_cause: Who set the administrative state: C{"config"}
        (C{disabled}), C{"runtime"} (the runtime API), C{"agent"} (an agent
        check's reply); C{""} while it is as configured.
    @ivar session_rate: Its new connections per second
        (L{l4lb.eventrate.EventRate}; stats C{rate}, C{rate_max}).
    @ivar max_current: The most connections it had open at once (stats
        C{smax}).
    @ivar retries: Connection attempts to it that failed and were retried
        (stats C{wretr}).
    @ivar redispatches: Connections taken away from it to another server
        after a failed attempt (stats C{wredis}).
    @ivar failed_responses: Established connections it closed abruptly
        (termination state C{SD}; stats C{eresp}).
    """

    __slots__ = (
        "spec",
        "name",
        "address",
        "port",
        "weight",
        "user_weight",
        "throttle",
        "up",
        "admin",
        "current",
        "total",
        "failed_connects",
        "sessions",
        "backend",
        "maxconn",
        "user_maxconn",
        "observer",
        "health_text",
        "check_status",
        "check_duration",
        "check_desc",
        "agent_status",
        "agent_duration",
        "agent_desc",
        "failed_checks",
        "down_transitions",
        "failed_hana",
        "last_change",
        "down_time",
        "udp",
        "bytes_in",
        "bytes_out",
        "preamble",
        "tls",
        "admin_cause",
        "session_rate",
        "max_current",
        "retries",
        "redispatches",
        "failed_responses",
    )

    def __init__(self, spec: ServerSpec, backend: Optional["BackendState"] = None):
        self.spec = spec
        self.name = spec.name
        self.address = spec.address
        self.port = spec.port
        self.weight = spec.weight
        self.user_weight = spec.weight
        self.throttle = 100
        self.up = True
        self.admin = "maint" if spec.disabled else "ready"
        self.current = 0
        self.total = 0
        self.failed_connects = 0
        self.sessions: Set[Any] = set()
        self.backend = backend
        self.maxconn = spec.maxconn
        self.user_maxconn = spec.maxconn
        self.observer: Any = None
        self.health_text = "no check"
        self.check_status = ""
        self.check_duration: Optional[float] = None
        self.check_desc = ""
        self.agent_status = ""
        self.agent_duration: Optional[float] = None
        self.agent_desc = ""
        self.failed_checks = 0
        self.down_transitions = 0
        self.failed_hana = 0
        self.last_change = 0.0
        self.down_time = 0.0
        self.udp = UdpCounters()
        self.bytes_in = 0
        self.bytes_out = 0
        self.preamble: Optional[Callable[[Any], bytes]] = preamble(spec.send_proxy)
        self.tls: Any = None
        self.admin_cause = "config" if spec.disabled else ""
        self.session_rate = EventRate()
        self.max_current = 0
        self.retries = 0
        self.redispatches = 0
        self.failed_responses = 0

    @property
    def full(self) -> bool:
        """
        Whether the server is at its C{maxconn}.
        """
        return 0 < self.maxconn <= self.current

    @property
    def status(self) -> str:
        """
        The state as the stats C{status} column shows it: C{"MAINT"},
        C{"DRAIN"}, or L{health_text}.
        """
        if self.admin == "maint":
            return "MAINT"
        if self.admin == "drain" and self.up:
            return "DRAIN"
        return self.health_text

    @property
    def eligible(self) -> bool:
        """
        Whether the server may be given new connections (ignoring
        C{maxconn}).
        """
        return (
            self.up
            and self.admin == "ready"
            and self.weight > 0
            and self.address is not None
        )

    def set_health(self, up: bool) -> None:
        """
        Record the outcome of health checking: C{up} or down.  The balancer
        and the backend's listeners hear of a change in eligibility.
        """
        self._change(lambda: setattr(self, "up", up))

    def set_admin(self, admin: str, cause: str = "runtime") -> None:
        """
        Set the administrative state: C{"ready"}, C{"drain"} or C{"maint"}.

        @param cause: Who asks (L{admin_cause}): C{"runtime"},
            C{"agent"} or C{"config"}.
        """
        if admin not in ("ready", "drain", "maint"):
            raise ValueError(f"unknown server state {admin!r}; allowed: ready, drain, maint")
        self.admin_cause = cause
        self._change(lambda: setattr(self, "admin", admin))

    def set_weight(self, weight: int) -> None:
        """
        Set the weight asked for (0-256); the effective weight follows,
        throttled while the server warms up.
        """
        if not 0 <= weight <= 256:
            raise ValueError(f"weight {weight} out of range; allowed: 0-256")
        self._rethrottle("user_weight", weight)

    def set_maxconn(self, maxconn: int) -> None:
        """
        Set the connection limit asked for (0: none); the current limit
        follows, throttled while the server warms up.  Listeners hear of
        it.
        """
        if maxconn < 0:
            raise ValueError(f"maxconn {maxconn} out of range; allowed: 0 or more")
        self._rethrottle("user_maxconn", maxconn)

    def set_throttle(self, percent: int) -> None:
        """
        Give the server C{percent} (1-100) of its weight and C{maxconn}
        while it warms up (C{slowstart}), as HAProxy does: the limit is
        C{max(1, maxconn * percent / 100)}; the weight is
        C{max(1, weight * percent / 100)} rounded up, where the balancer
        takes weight changes at once (L{IBalancer.dynamic_weights
        <l4lb.interfaces.IBalancer.dynamic_weights>}), and unchanged where
        a change would reshuffle its table.
        """
        if not 1 <= percent <= 100:
            raise ValueError(f"throttle {percent} out of range; allowed: 1-100")
        self._rethrottle("throttle", percent)

    def _rethrottle(self, name: str, value: int) -> None:
        """
        Set one of the inputs of the effective weight and limit, then
        derive them again; the balancer and listeners hear of the change.
        """

        def apply() -> None:
            setattr(self, name, value)
            self._throttled()

        self._change(apply)

    def _throttled(self) -> None:
        """
        Derive the effective weight and limit from those asked for and the
        throttle.
        """
        percent = self.throttle
        weight, maxconn = self.user_weight, self.user_maxconn
        if percent < 100:
            backend = self.backend
            dynamic = backend is None or getattr(backend.balancer, "dynamic_weights", True)
            if weight and dynamic:
                weight = max(1, (weight * percent + 99) // 100)
            if maxconn:
                maxconn = max(1, maxconn * percent // 100)
        self.weight = weight
        self.maxconn = maxconn

    def _change(self, apply: Callable[[], None]) -> None:
        was_eligible, old_weight = self.eligible, self.weight
        apply()
        backend = self.backend
        if backend is None:
            return
        balancer = backend.balancer
        if self.eligible != was_eligible:
            if self.eligible:
                balancer.server_up(self)
            else:
                balancer.server_down(self)
        elif self.weight != old_weight:
            balancer.weight_changed(self)
        for listener in list(backend.listeners):
            listener(self)

    def __repr__(self) -> str:
        return f"<Server {self.name} {self.address}:{self.port}>"


class Downtime:
    """
    The time a backend spent with no usable server (stats C{downtime} of
    its C{BACKEND} row, as in HAProxy).

    @ivar total: Seconds without a usable server, not counting the current
        spell.
    @ivar since: When the current spell began (reactor seconds), or C{None}
        while a server is usable.
    @ivar spells: How many spells began (stats C{chkdown} of the
        C{BACKEND} row: HAProxy's count of the backend going DOWN).
    """

    __slots__ = ("total", "since", "spells")

    def __init__(self) -> None:
        self.total = 0.0
        self.since: Optional[float] = None
        self.spells = 0

    def note(self, usable: bool, now: float) -> None:
        """
        Record whether the backend has a usable server at C{now}.
        """
        if usable and self.since is not None:
            self.total += now - self.since
            self.since = None
        elif not usable and self.since is None:
            self.since = now
            self.spells += 1

    def seconds(self, now: float) -> float:
        """
        Seconds without a usable server up to C{now}.
        """
        return self.total + (now - self.since if self.since is not None else 0.0)


class BackendState:
    """
    A backend, its servers and its balancer.

    @ivar spec: The configuration it came from.
    @ivar name: Its name.
    @ivar servers: Its L{Server}s in file order.
    @ivar balancer: Its L{l4lb.interfaces.IBalancer}.
    @ivar current: Connections open through it now.
    @ivar total: Connections it handled since start.
    @ivar listeners: Callables called with a L{Server} after any change of
        its state, admin state or weight (health logging, queues, stats).
    @ivar udp: Its UDP traffic (L{l4lb.udp.counters.UdpCounters}).
    @ivar queue: The L{l4lb.queue.WaitQueue} of connections waiting for a
        free server slot; served when a connection ends and when a server
        changes.
    @ivar session_rate: Its new connections per second
        (L{l4lb.eventrate.EventRate}; stats C{rate}, C{rate_max}).
    @ivar max_current: The most connections open through it at once
        (stats C{smax}).
    @ivar retries: Failed connection attempts retried (stats C{wretr}).
    @ivar redispatches: Connections sent to another server after a failed
        attempt (stats C{wredis}).
    @ivar failed_responses: Established connections a server closed
        abruptly (stats C{eresp}).
    """

    def __init__(
        self,
        spec: BackendSpec,
        balancer_factory: Interface,
        added: Sequence[ServerSpec] = (),
    ) -> None:
        """
        @param spec: The backend's configuration.
        @param balancer_factory: Its algorithm's
            L{l4lb.interfaces.IBalancerFactory}.
        @param added: The servers added at run time (C{add server}), after
            those of the file.
        """
        self.spec = spec
        self.name = spec.name
        self.factory = balancer_factory
        self.servers: List[Server] = [Server(s, self) for s in (*spec.servers, *added)]
        self.balancer = balancer_factory.build(  # type: ignore[attr-defined]
            self.servers, spec.balance_args
        )
        self.current = 0
        self.total = 0
        self.udp = UdpCounters()
        self.listeners: List[Callable[[Server], None]] = []
        self.session_rate = EventRate()
        self.max_current = 0
        self.retries = 0
        self.redispatches = 0
        self.failed_responses = 0
        self.downtime = Downtime()
        self.queue = WaitQueue(self)
        # Any change of a server may free a slot for a queued connection.
        self.listeners.append(self.queue.serve)

    def set_servers(self, servers: Sequence[Server]) -> None:
        """
        Make C{servers} the backend's servers (one added or removed at run
        time) and build its balancer again over them, through the same
        factory as at start, telling it of the connections already open.
        """
        self.servers = list(servers)
        self.balancer = self.factory.build(  # type: ignore[attr-defined]
            self.servers, self.spec.balance_args
        )
        for server in self.servers:
            for _ in range(server.current):
                self.balancer.connection_taken(server)

    def server(self, name: str) -> Server:
        """
        Return the server called C{name}.

        @raise KeyError: When there is none.
        """
        for server in self.servers:
            if server.name == name:
                return server
        raise KeyError(name)

    def pick(self, client_address: Optional[str], avoid: Container[Server] = ()) -> Optional[Server]:
        """
        Choose a server for a new connection through the balancer.
        """
        return self.balancer.pick(client_address, avoid)  # type: ignore[no-any-return]

    def take(self, server: Server, session: Any = None, now: Optional[float] = None) -> None:
        """
        Count a new connection to C{server}, made by C{session}.

        @param now: The clock's time, to count it in the server's
            L{Server.session_rate}; not counted there without it.
        """
        server.current += 1
        server.total += 1
        if server.current > server.max_current:
            server.max_current = server.current
        if now is not None:
            server.session_rate.hit(now)
        if session is not None:
            server.sessions.add(session)
        self.balancer.connection_taken(server)

    def drop(self, server: Server, session: Any = None) -> None:
        """
        Count the end of C{session}'s connection to C{server}.
        """
        server.current -= 1
        server.sessions.discard(session)
        self.balancer.connection_dropped(server)
        self.queue.serve(server)

    def has_eligible(self) -> bool:
        """
        Whether any server may take connections at all (ignoring
        C{maxconn}): when the balancer finds none free but this is true,
        a new connection waits in L{queue}.
        """
        return any(s.eligible for s in self.servers)
