"""
The service tree: one L{BalancerService} runs a whole configuration.

It binds every frontend in C{privilegedStartService}, so that C{twistd
--uid/--gid} can drop root after binding port 80, and fails at once, with
a message naming the frontend and the address, when a bind fails.  Host
names in server lines are resolved with the reactor's non-blocking resolver
in C{startService}; the listening sockets accept nothing until that is
done.
"""

from __future__ import annotations

import resource
from typing import Any, Dict, List, Optional

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from l4lb.balancers import find_factory
from l4lb.admin.cap import CappedFactory, caps_in_effect, own_listeners
from l4lb.config.model import Config, GlobalSettings
from l4lb.etcd._providers import EtcdProviders
from l4lb.handover.sockets import (
    Key,
    adopt_datagram,
    adopt_stream,
    admin_key,
    bind_key,
    close_unused,
    stats_key,
)
from l4lb.handover.state import CarriedState, apply_carried
from l4lb.fdlimit import traffic_maxconn
from l4lb.health.monitor import DEFAULT_BUILDERS, HealthMonitor
from l4lb.health.warmup import SlowStart
from l4lb.interfaces import IBalancerRuntime
from l4lb.logs import open_sink
from l4lb.pool import BackendState
from l4lb.readiness import READY, STOPPING
from l4lb.protect.ratelimit import SessionRate
from l4lb.runtime import RuntimeControls
from l4lb.runtime_servers import added_specs
from l4lb.statefile import load_server_state
from l4lb.tcp import lean
from l4lb.tcp.accept import accept_directly
from l4lb.tcp.backlog import effective_backlog, with_backlog
from l4lb.tcp.listen import listening_factory, server_endpoint
from l4lb.tcp.frontend import FrontendFactory, FrontendState
from l4lb.tcp.stagelist import bind_stages, build_stages
from l4lb.tcp.limits import ConnectionLimiter
from l4lb.tcp.phases import kill as kill_session
from l4lb.udp.check import udp_checks
from l4lb.udp.frontend import UdpFrontend
from l4lb.udp.reader import read_directly
from l4lb.udp.sockets import MAX_DATAGRAM, listen_bind

_log = Logger(namespace="l4lb")


class BindError(Exception):
    """
    A frontend could not listen where its configuration says.
    """


def set_pipe_limit(maxconn: int, maxpipes: Optional[int]) -> None:
    """
    Let the lean relays of this process hold C{maxpipes} pipes at once, or
    a quarter of C{maxconn} when the configuration sets none (HAProxy's
    default).
    """
    lean.PIPES.limit = maxconn // 4 if maxpipes is None else maxpipes


def default_maxconn(own: int = 0) -> int:
    """
    The global C{maxconn} when the configuration sets none: half the
    file-descriptor limit (each relayed connection holds two sockets), less
    a reserve for listeners, logs and checks and the connections of l4lb's
    own listeners (L{l4lb.fdlimit.traffic_maxconn}).

    @param own: The caps of l4lb's own listeners, added up.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return traffic_maxconn(soft, own)


def process_maxconn(settings: GlobalSettings) -> int:
    """
    The traffic's global C{maxconn}: as configured, or derived from the
    file-descriptor limit after the own listeners' caps.
    """
    return settings.maxconn or default_maxconn(sum(own_listeners(settings).values()))


@implementer(IBalancerRuntime)
class BalancerService(RuntimeControls, MultiService):
    """
    Runs the frontends and backends of one L{Config}.

    What the runtime API, a reload and the workers use of it is
    L{IBalancerRuntime}; its policies are in L{RuntimeControls}.

    @ivar config: The configuration being run.
    @ivar reactor: The reactor everything runs on.
    @ivar backends: The L{BackendState}s by name.
    @ivar frontends: The L{FrontendState}s by name.
    @ivar udp_frontends: The L{UdpFrontend}s (C{mode udp}) by name.
    @ivar limiter: The process-wide connection limit.
    @ivar ports: The listening ports of each frontend, once bound.
    @ivar port_factories: The L{FrontendFactory} of each TCP port, so that
        a reload can hand the port to the frontend that replaces its own.
    @ivar ready: A L{Deferred} that fires once every frontend accepts
        connections (names resolved, ports open).
    @ivar monitor: The L{HealthMonitor} of the servers' checks, a child
        service.
    @ivar admin_port: The runtime API's listening UNIX port (C{stats
        socket}), or C{None}.
    @ivar stats_port: The statistics pages' listening port (C{stats
        bind}), or C{None}.
    @ivar own_caps: The connection caps of l4lb's own listeners in effect
        (C{"stats socket"}, C{"stats bind"}), within the descriptors the
        traffic's C{maxconn} leaves (L{l4lb.fdlimit.own_listener_caps}).
    @ivar retired: The servers a reload removed that still have
        connections (L{l4lb.reload}).
    @ivar added_servers: The definitions of the servers added at run time
        (L{l4lb.runtime_servers.AddedServer}) by C{(backend, server)}, in
        the order they were added; each backend built includes its own.
    @ivar config_path: The file a reload reads (by default the
        configuration's C{source}).
    @ivar workers: With C{nbproc} above 1, the L{l4lb.workers.WorkerPool}
        whose processes accept the TCP connections (this process binds the
        sockets but never accepts on them); else C{None}.
    @ivar slowstart: The L{l4lb.health.warmup.SlowStart} that warms up the
        servers that come back, or C{None} in a process that is sent their
        state (an C{nbproc} worker).
    @ivar history: With C{stats bind}, the L{l4lb.admin.history.StatsHistory}
        of the trends the HTML page draws (a child service); else C{None}.
    @ivar started: When the service was made (clock time): the uptime's
        start.
    @ivar etcd: The L{l4lb.etcd.EtcdProviders} watching the prefixes of the
        backends with C{servers-from}, a child service.
    @ivar dns: The L{l4lb.dns.DnsDiscovery} resolving the servers with
        C{resolvers} and the C{server-template} slots, a child service.
    @ivar carried: The runtime state a running process handed over
        (L{l4lb.handover}), applied once the runtime is built; C{None} for
        a fresh start.
    @ivar generation: 1 after a start; N + 1 in the process that took over
        from generation N.
    @ivar inherited: The listening sockets a running process handed over,
        by key (L{l4lb.handover.sockets}), until a bind adopts them.
    @ivar bind_keys: The key of each listening port that a handover may
        pass to a new process.
    @ivar handover: The L{l4lb.handover.donor.Donor} that hands this
        process's sockets and state to a new one (set under twistd), or
        C{None}.
    """

    def __init__(
        self,
        config: Config,
        reactor: Any,
        sink: Optional[Any] = None,
        carried: Optional[CarriedState] = None,
        inherited: Optional[Dict[Key, int]] = None,
    ) -> None:
        """
        @param config: What to run.
        @param reactor: The reactor (TCP, time, file descriptors, resolver).
        @param sink: Where connection logs go; by default what the
            configuration's C{log} says.
        @param carried: The runtime state handed over by the process this
            one takes over from.
        @param inherited: The listening sockets handed over, by key; each
            bind of the same key adopts its socket instead of binding.
        """
        super().__init__()
        self.config = config
        self.reactor = reactor
        self._sink = sink
        self.sink: Any = None
        maxconn = process_maxconn(config.global_settings)
        self.limiter = ConnectionLimiter(maxconn)
        set_pipe_limit(maxconn, config.global_settings.maxpipes)
        self.slowstart: Optional[SlowStart] = self._slowstart(reactor)
        self.carried = carried
        self.generation = 1 if carried is None else carried.generation
        self.inherited: Dict[Key, int] = dict(inherited or {})
        self.bind_keys: Dict[Any, Optional[Key]] = {}
        self.handover: Any = None
        # Servers added at run time in the process this one took over from
        # are built with the file's, as a reload builds them.
        self.added_servers: Dict[Any, Any] = {} if carried is None else dict(carried.added)
        self.backends: Dict[str, BackendState] = {
            b.name: self.build_backend(b) for b in config.backends
        }
        self.retired: List[Any] = []
        self.config_path = config.source
        self.frontends: Dict[str, FrontendState] = {}
        self.udp_frontends: Dict[str, UdpFrontend] = {}
        self.ports: Dict[str, List[Any]] = {}
        self.port_factories: Dict[Any, FrontendFactory] = {}
        self.admin_port: Any = None
        self.stats_port: Any = None
        self.own_caps: Dict[str, int] = {}
        self.history: Any = None
        self.started = reactor.seconds()
        self.ready: Deferred[None] = Deferred()
        self._bound = False
        self.monitor = HealthMonitor(
            list(self.backends.values()),
            reactor,
            builders={**DEFAULT_BUILDERS, "udp": udp_checks},
            spread_checks=config.global_settings.spread_checks,
        )
        self.monitor.setServiceParent(self)
        # Backends with 'servers-from': their servers come and go as etcd says.
        self.etcd = EtcdProviders(self, reactor)
        self.etcd.setServiceParent(self)
        from l4lb.dns import DnsDiscovery

        # Servers with 'resolvers' and server-template slots follow DNS.
        self.dns = DnsDiscovery(self, reactor)
        self.dns.setServiceParent(self)
        self.instance_state = READY
        self.workers: Any = None
        if config.global_settings.nbproc > 1:
            from l4lb.workers.pool import WorkerPool

            # The workers accept the TCP connections; this process binds,
            # checks and reports (l4lb.workers).
            self.workers = WorkerPool(self, config.global_settings.nbproc, reactor)
            self.workers.setServiceParent(self)
        self._read_server_state()

    def _read_server_state(self) -> None:
        """
        Give the servers the state (and make again the servers added at run
        time) that an earlier process wrote to the server-state file
        (L{l4lb.statefile}); after a handover, the state the running
        process sent wins, as on a reload, and the file applies only to
        the servers that process did not have.
        """
        if self.carried is None:
            load_server_state(self)
            return
        fresh = apply_carried(self, self.carried)
        load_server_state(self, only=fresh)

    def privilegedStartService(self) -> None:
        """
        Bind every frontend's addresses.

        @raise BindError: When any bind fails; whatever was bound is closed
            again first.
        """
        if self._bound:
            return
        if self._sink is not None:
            self.sink = self._sink
        elif self.config.global_settings.log.kind != "none":
            self.sink = open_sink(self.config.global_settings.log, self.reactor)
        for spec in self.config.frontends:
            try:
                self.start_frontend(spec)
            except BindError:
                self._close_ports()
                raise
        self.own_caps = self._own_caps()
        self._listen_admin()
        self._listen_stats()
        # Sockets of binds the file no longer has stay with the process
        # that handed them over.
        close_unused(self.inherited)
        self._bound = True
        if self.carried is not None:
            for name, maxconn in self.carried.frontend_maxconn.items():
                self.set_frontend_maxconn(name, maxconn)
        super().privilegedStartService()

    def _own_caps(self) -> Dict[str, int]:
        """
        The own listeners' caps, lowered (with a warning) where the
        descriptor limit cannot hold them beside the traffic's C{maxconn}.
        """
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return caps_in_effect(self.config.global_settings, soft, self.limiter.maxconn)

    def _listen_admin(self) -> None:
        """
        Open the runtime API's socket when C{stats socket} is set.

        @raise BindError: When it cannot listen; the frontends bound so far
            are closed again first.
        """
        where = self.config.global_settings.stats_socket
        if where is None:
            return
        from l4lb.admin.commands import AdminCommands
        from l4lb.admin.protocol import listen_admin

        try:
            self.admin_port = listen_admin(
                self.reactor,
                where.path,
                where.mode,
                AdminCommands(self, self.reactor),
                timeout=self.config.global_settings.stats_timeout,
                maxconn=(self.own_caps or self._own_caps())["stats socket"],
                inherited=self.inherited.pop(admin_key(where.path), None),
            )
        except Exception as e:
            self._close_ports()
            raise BindError(f"stats socket cannot listen on '{where.path}': {_reason(e)}") from e

    def _listen_stats(self) -> None:
        """
        Open the statistics pages when C{stats bind} is set.

        @raise BindError: When they cannot listen; whatever was bound so far
            is closed again first.
        """
        settings = self.config.global_settings
        where = settings.stats_bind
        if where is None:
            return
        from l4lb.admin.web import stats_site

        host = where.host.replace(":", "\\:")
        kind = "tcp6" if ":" in where.host else "tcp"
        endpoint = server_endpoint(self.reactor, f"{kind}:{where.port}:interface={host}")
        if self.history is None:
            from l4lb.admin.history import StatsHistory
            from l4lb.admin.stats import stat_rows

            # The page's trends, sampled while the service runs.
            self.history = StatsHistory(
                self.reactor, lambda: stat_rows(self, self.reactor.seconds())
            )
            self.history.setServiceParent(self)
        site = stats_site(
            self, self.reactor, settings.stats_auth, settings.stats_timeout, self.history
        )
        capped = CappedFactory(site, (self.own_caps or self._own_caps())["stats bind"])
        inherited = self.inherited.pop(stats_key(where.host, where.port), None)
        try:
            if inherited is None:
                port = _listen_now(endpoint, capped)
            else:
                port = adopt_stream(self.reactor, inherited, capped)
            self.stats_port = capped.watch(port)
        except Exception as e:
            self._close_ports()
            raise BindError(
                f"stats bind cannot listen on '{where.host}:{where.port}': {_reason(e)}"
            ) from e

    def _slowstart(self, reactor: Any) -> Optional[SlowStart]:
        """
        What warms up the servers that come back (C{slowstart}).
        """
        return SlowStart(reactor)

    def build_backend(self, spec: Any) -> BackendState:
        """
        Make the runtime state of one backend (at start and on reload).
        """
        backend = BackendState(
            spec, find_factory(spec.balance), added_specs(self.added_servers, spec)
        )
        seconds = self.reactor.seconds

        def note_downtime(_: Any) -> None:
            backend.downtime.note(any(s.eligible for s in backend.servers), seconds())

        backend.listeners.append(note_downtime)
        note_downtime(None)
        self.prepare_servers(backend.servers)
        if self.slowstart is not None:
            self.slowstart.watch(backend)
        return backend

    def prepare_servers(self, servers: Any) -> None:
        """
        Give new L{l4lb.pool.Server}s what their configuration asks beyond
        the plain state (TLS settings).
        """
        servers = list(servers)
        if any(server.spec.ssl for server in servers):
            # Only then: it imports pyOpenSSL.
            from l4lb.tcp.tls import attach_tls

            attach_tls(servers)

    def start_frontend(self, spec: Any) -> None:
        """
        Make a frontend's runtime state and bind its addresses (at start
        and on reload); it accepts nothing until opened.

        @raise BindError: When a bind fails; this frontend's ports bound so
            far are closed again first.
        """
        self.ports[spec.name] = []
        frontend = self.build_frontend(spec)
        if isinstance(frontend, UdpFrontend):
            self.udp_frontends[spec.name] = frontend
        else:
            self.frontends[spec.name] = frontend
        try:
            for bind in spec.binds:
                self.ports[spec.name].append(self.listen(spec, bind))
        except BindError:
            self.stop_frontend(spec.name)
            raise

    def build_frontend(self, spec: Any) -> Any:
        """
        Make a frontend's runtime state from its configuration and the
        running backends (at start and on reload), without binding: a
        L{UdpFrontend} for C{mode udp}, else a L{FrontendState} with its
        gate under the process-wide limit.
        """
        backend = self.backends[spec.default_backend]
        if spec.mode == "udp":
            return UdpFrontend(spec, backend, self.reactor, self.sink, default_maxconn())
        gate = self.limiter.gate(spec.maxconn)
        if spec.rate_limit_sessions:
            gate.rate = SessionRate(self.reactor, spec.rate_limit_sessions, gate.update)
        state = FrontendState(spec, backend, gate, self.reactor, self.sink)
        state.lean = self.config.global_settings.relay == "lean"
        state.stages = build_stages(spec, self.backends)
        return state

    def listen(self, spec: Any, bind: Any) -> Any:
        """
        Bind one address of the running frontend C{spec.name} and return
        the port.  A TCP port joins the frontend's gate; a UDP port reads
        nothing until started.

        @raise BindError: When it cannot listen.
        """
        udp = self.udp_frontends.get(spec.name)
        key = bind_key(udp is not None, bind)
        inherited = None if key is None else self.inherited.pop(key, None)
        try:
            if udp is not None:
                listener = udp.listener()
                if inherited is None:
                    port = listen_bind(self.reactor, bind, listener)
                else:
                    port = adopt_datagram(self.reactor, inherited, listener, MAX_DATAGRAM)
                read_directly(port, listener, self.reactor)
                port.stopReading()
                self.bind_keys[port] = key
                return port
            state = self.frontends[spec.name]
            factory = FrontendFactory(state, bind_stages(spec, bind))
            backlog = effective_backlog(
                bind.backlog, spec.backlog, spec.maxconn, self.limiter.maxconn
            )
            listening = listening_factory(bind, factory, self.reactor)
            if inherited is None:
                port = _listen_now(
                    server_endpoint(self.reactor, with_backlog(bind.endpoint, backlog)),
                    listening,
                )
            else:
                port = adopt_stream(self.reactor, inherited, listening, backlog)
        except Exception as e:
            where = f"{self.config.source}:{bind.line}: " if bind.line else ""
            kind = "UDP " if udp is not None else ""
            raise BindError(
                f"{where}frontend '{spec.name}' cannot listen on"
                f" {kind}'{bind.text or bind.endpoint}': {_reason(e)}"
            ) from e
        if bind.crt is None:
            accept_directly(port, factory, self.reactor)
        state.gate.add_port(port)
        self.port_factories[port] = factory
        self.bind_keys[port] = key
        return port

    def unlisten(self, name: str, port: Any) -> "Deferred[Any]":
        """
        Close one listening port of the frontend C{name}; its established
        connections are not touched.
        """
        state = self.frontends.get(name)
        if state is not None:
            state.gate.remove_port(port)
        self.port_factories.pop(port, None)
        self.bind_keys.pop(port, None)
        udp = self.udp_frontends.get(name)
        listener = getattr(port, "protocol", None)
        if udp is not None and listener in udp.listeners:
            udp.listeners.remove(listener)
        return _maybe_deferred(port.stopListening())

    def stop_frontend(self, name: str) -> "Deferred[Any]":
        """
        Close a frontend's ports and forget it; its established TCP
        connections continue (its UDP sessions end, since their replies
        left through its ports).
        """
        closing = [self.unlisten(name, port) for port in self.ports.pop(name, [])]
        state = self.frontends.pop(name, None)
        if state is not None:
            self.limiter.remove(state.gate)
            if state.gate.rate is not None:
                state.gate.rate.stop()
        udp = self.udp_frontends.pop(name, None)
        if udp is not None:
            udp.stop()
        return DeferredList(closing, consumeErrors=True)

    def startService(self) -> None:
        """
        Resolve server host names, then open the frontends.
        """
        self.privilegedStartService()
        super().startService()
        d = self._resolve()
        d.addCallback(lambda _: self._open())
        d.addErrback(lambda f: _log.failure("l4lb: cannot start", f))

    def _resolve(self) -> "Deferred[Any]":
        pending = []
        for backend in self.backends.values():
            for server in backend.servers:
                if server.address is None:
                    pending.append(self.resolve_server(backend, server))
        if not pending:
            return succeed(None)
        return DeferredList(pending)

    def resolve_server(self, backend: BackendState, server: Any) -> "Deferred[None]":
        """
        Resolve C{server}'s host name; it enters C{backend}'s rotation once
        resolved, and stays out of it (logged) when it cannot be.
        """
        from l4lb.config.resolve import resolve_host

        if self.dns.claims(backend.name, server.name):
            # Its resolvers give its address (init-addr decides the first).
            return succeed(None)
        d = resolve_host(self.reactor.nameResolver, server.spec.host, server.port)

        def resolved(address: Optional[str]) -> None:
            if address is None:
                _log.error(
                    "Server {backend}/{server}: cannot resolve '{host}'; it stays out of"
                    " rotation.",
                    backend=backend.name,
                    server=server.name,
                    host=server.spec.host,
                )
            else:
                server.address = address
                backend.balancer.server_up(server)

        return d.addCallback(resolved)

    def _open(self) -> None:
        for name, state in self.frontends.items():
            if self.workers is None:
                state.gate.open()
            _log.info("Proxy {name} started.", name=name)
        for name in self.udp_frontends:
            for port in self.ports.get(name, []):
                port.startReading()
            _log.info("Proxy {name} started.", name=name)
        for name in self.backends:
            if name not in self.frontends and name not in self.udp_frontends:
                _log.info("Proxy {name} started.", name=name)
        if not self.ready.called:
            self.ready.callback(None)

    def stopService(self) -> "Deferred[Any]":
        """
        After C{grace} seconds of not being ready (L{l4lb.readiness};
        at once without C{grace}), stop listening and checking, then let
        established connections finish for up to C{hard-stop-after}
        seconds; those still open then are closed (logged C{KD}).  The returned
        L{Deferred} fires once no connection is left (or shortly after the
        forced close), so that twistd exits only then.
        """
        grace = self.config.global_settings.grace
        if grace <= 0 or self.instance_state == STOPPING:
            return self._stop_now()
        # Routers read /ready: tell them first, keep serving meanwhile, and
        # close the listeners only once they have had time to withdraw the
        # route.
        self.instance_state = STOPPING
        _log.info(
            "Stopping: not ready for {grace}s (grace) before closing the listeners.",
            grace=grace,
        )
        waited: Deferred[None] = Deferred()
        self.reactor.callLater(grace, waited.callback, None)
        return waited.addCallback(lambda _: self._stop_now())

    def _stop_now(self) -> "Deferred[Any]":
        """
        Close the listeners and stop the checks, then drain (see
        L{stopService}).
        """
        self.instance_state = STOPPING
        children = super().stopService()
        for udp in self.udp_frontends.values():
            udp.stop()
        d = DeferredList([children, self._close_ports()], consumeErrors=True)
        d.addBoth(lambda r: self._drain(self.config.global_settings.hard_stop_after))
        if self.sink is not None and self._sink is None:
            sink = self.sink
            d.addBoth(lambda r: (sink.close(), r)[1])
        return d

    def _drain(self, grace: float) -> "Deferred[None]":
        """
        Fire once every TCP connection has ended, closing those still open
        after C{grace} seconds.
        """
        if self.limiter.current <= 0:
            return succeed(None)
        done: Deferred[None] = Deferred()
        deadline = self.reactor.seconds() + grace
        _log.info(
            "Stopping: waiting up to {grace}s for {count} connection(s) to finish.",
            grace=grace,
            count=self.limiter.current,
        )

        def poll(forced: bool) -> None:
            now = self.reactor.seconds()
            if self.limiter.current <= 0 or (forced and now >= deadline + _FORCE_WAIT):
                done.callback(None)
                return
            if not forced and now >= deadline:
                sessions = self.open_sessions()
                _log.warn(
                    "hard-stop-after reached: closing {count} connection(s).",
                    count=len(sessions),
                )
                for session in sessions:
                    kill_session(session, "K")
                forced = True
            self.reactor.callLater(_DRAIN_POLL, poll, forced)

        poll(False)
        return done

    def reopen_logs(self) -> None:
        """
        Re-open the connection log's file (after log rotation; SIGUSR1).
        """
        if self.workers is not None:
            self.workers.reopen_logs()
        if self.sink is None:
            return
        try:
            self.sink.reopen()
        except OSError as e:
            _log.error(
                "Cannot reopen the log: {error}; still writing to the file"
                " opened before.",
                error=e,
            )
        else:
            _log.info("Log files reopened.")

    def _close_ports(self) -> "Deferred[Any]":
        closing = []
        for name, ports in self.ports.items():
            state = self.frontends.get(name)
            for port in ports:
                if state is not None:
                    state.gate.remove_port(port)
                self.bind_keys.pop(port, None)
                closing.append(_maybe_deferred(port.stopListening()))
            ports.clear()
        for attribute in ("admin_port", "stats_port"):
            admin = getattr(self, attribute)
            setattr(self, attribute, None)
            if admin is not None:
                closing.append(_maybe_deferred(admin.stopListening()))
        for state in self.frontends.values():
            self.limiter.remove(state.gate)
            if state.gate.rate is not None:
                state.gate.rate.stop()
        self._bound = False
        return DeferredList(closing, consumeErrors=True)


#: Seconds between checks for the end of connections while stopping.
_DRAIN_POLL = 0.05
#: Seconds allowed for forcibly closed connections to go before stopping.
_FORCE_WAIT = 1.0


def _maybe_deferred(result: Any) -> "Deferred[Any]":
    if isinstance(result, Deferred):
        return result
    return succeed(result)


def _listen_now(endpoint: Any, factory: Any) -> Any:
    """
    Listen and return the port, or raise why not.  Stream endpoints bind
    synchronously; one that does not answer at once is an error too, since
    the service must not start without its listeners.
    """
    outcome: List[Any] = []
    endpoint.listen(factory).addBoth(outcome.append)
    if not outcome:
        raise BindError("the endpoint did not bind immediately")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def _reason(e: Exception) -> str:
    socket_error = getattr(e, "socketError", None)
    if socket_error is not None:
        return str(getattr(socket_error, "strerror", None) or socket_error)
    return str(e)
