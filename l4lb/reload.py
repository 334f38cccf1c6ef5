"""
Reloading the configuration in place (SIGHUP, the runtime API's C{reload}).

L{reload_file} reads the file again.  When it has errors, they are logged
and returned, and nothing changes; so is a file without errors that has
no listener (an empty or half-written file, L{l4lb.config.listeners}),
which would otherwise close every port.  When it is valid, L{apply_config}
runs it as a fresh start would, and keeps the running process's state.

A reload is a fresh start that keeps its state: every frontend, backend,
server, balancer, check, UDP session table, limit and stick table is built
again from the new configuration, by the same code as at start
(L{l4lb.service.BalancerService.build_backend}, C{build_frontend},
C{listen}, the health monitor's builders).  Then only runtime state is
carried over, by name (L{l4lb.runtime_state}):

 - the listening sockets of binds that did not change (no rebind, no
   gap); changed binds are opened or closed;
 - open TCP connections and UDP sessions: they go on with the server and
   the settings they started with, counted and listed until they end;
   those to a server the file removed are closed C{hard-stop-after}
   seconds after the reload, unless the server comes back by then;
 - per server: the state set at run time (drain, maint, weight), its
   health and check history (its checks restart from C{init-state} when
   they are made differently), its counters;
 - the stick tables of frontends whose table is defined as before;
 - a frontend's C{maxconn} set at run time;
 - the servers added at run time (C{add server}), unless the new file
   defines a server of the same name in their backend: the file wins.

A value the file changed overrides the same value set at run time; a value
it did not change keeps the run-time one.  Global settings other than
C{maxconn}, C{maxpipes}, C{hard-stop-after}, C{grace}, C{spread-checks} and
C{tune.relay} need a restart; a reload says so.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Dict, List, Optional

import attr
from twisted.internet.defer import DeferredList
from twisted.logger import Logger

from l4lb.config import ConfigError, load_config_with_warnings
from l4lb.config.listeners import require_listener
from l4lb.config.model import Config
from l4lb.interfaces import IBalancerRuntime
from l4lb.pool import BackendState, Server
from l4lb.runtime_servers import prune_added
from l4lb.statefile import load_server_state
from l4lb.runtime_state import (
    BACKEND_COUNTERS,
    FRONTEND_COUNTERS,
    UDP_FRONTEND_COUNTERS,
    ServerState,
    apply_server,
    capture_servers,
    carry_counters,
    plain,
    prepare_health,
)
from l4lb.tcp.phases import kill as kill_session

_log = Logger(namespace="l4lb")

__all__ = ["ReloadResult", "RUNTIME_GLOBALS", "apply_config", "plain", "reload_file"]

#: Global settings a reload applies; a change of any other needs a restart.
RUNTIME_GLOBALS = frozenset(
    {"maxconn", "maxpipes", "hard_stop_after", "grace", "spread_checks", "relay"}
)


@attr.s(auto_attribs=True)
class ReloadResult:
    """
    What a reload did.

    @ivar errors: The configuration's errors (nothing was changed), or
        the binds that failed (the rest was applied).
    @ivar warnings: The configuration's warnings and the settings that need
        a restart.
    @ivar counts: How many of each kind of change, e.g. C{{"frontend
        added": 1}}, in the order they happened.
    """

    errors: List[str] = attr.Factory(list)
    warnings: List[str] = attr.Factory(list)
    counts: Dict[str, int] = attr.Factory(dict)

    @property
    def applied(self) -> bool:
        """
        Whether the new configuration was applied (it had no errors).
        """
        return not self.counts.get("rejected")

    def count(self, what: str, number: int = 1) -> None:
        """
        Count C{number} changes of kind C{what} (C{"server added"}).
        """
        if number:
            self.counts[what] = self.counts.get(what, 0) + number

    def summary(self) -> str:
        """
        The one line logged: C{Reload: 1 frontend added, 2 servers
        removed.}
        """
        if not self.applied:
            errors = len(self.errors)
            return f"Reload rejected: {errors} error(s); the running configuration stays."
        parts = []
        for what, number in self.counts.items():
            noun, _, verb = what.partition(" ")
            parts.append(f"{number} {noun}{'' if number == 1 else 's'} {verb}")
        return "Reload: " + (", ".join(parts) if parts else "no change") + "."


def reload_file(service: IBalancerRuntime, path: Optional[str] = None) -> ReloadResult:
    """
    Read the configuration file again and apply it to C{service}.

    @param service: The running L{l4lb.service.BalancerService}.
    @param path: The file; by default C{service.config_path}.
    @return: What happened; also logged.
    """
    path = path or service.config_path
    try:
        config, warnings = load_config_with_warnings(path)
        require_listener(config, warnings)
    except ConfigError as e:
        result = ReloadResult(errors=[str(p) for p in e.problems])
        result.counts["rejected"] = 1
        for error in result.errors:
            _log.error("Reload: {error}", error=error)
        _log.error("{summary}", summary=result.summary())
        return result
    result = apply_config(service, config)
    result.warnings[:0] = [str(w) for w in warnings]
    for warning in warnings:
        _log.warn("Reload: {warning}", warning=str(warning))
    return result


def apply_config(service: IBalancerRuntime, new: Config) -> ReloadResult:
    """
    Run C{new} in the running C{service} as a fresh start would, keeping
    the runtime state (L{l4lb.runtime_state}) and every open connection,
    and log what changed.
    """
    result = ReloadResult()
    old = service.config
    _apply_globals(service, old, new, result)
    states = capture_servers(service)
    service.config = new
    # Servers added at run time stay, unless the file now defines them.
    prune_added(service.added_servers, new.backends)
    _apply_backends(service, new, states, result)
    # The state the process carried is newer than any file: the file
    # applies only to the servers it did not have.
    load_server_state(service, only=_new_servers(service, states))
    _apply_frontends(service, old, new, result)
    # Watches of unchanged prefixes go on from their revision.
    service.etcd.apply(new)
    # Names still watched give their records to the servers built afresh.
    service.dns.apply(new)
    _retire_later(service, new.global_settings.hard_stop_after)
    workers = service.workers
    if workers is not None:
        # nbproc: workers run the configuration they read at start.
        workers.reload()
    for error in result.errors:
        _log.error("Reload: {error}", error=error)
    _log.info("{summary}", summary=result.summary())
    return result


# -- global ----------------------------------------------------------------


def _apply_globals(service: IBalancerRuntime, old: Config, new: Config, result: ReloadResult) -> None:
    from l4lb.service import default_maxconn, set_pipe_limit

    before, after = old.global_settings, new.global_settings
    for field in attr.fields(type(after)):
        name = field.name
        if plain(getattr(before, name)) == plain(getattr(after, name)):
            continue
        if name in RUNTIME_GLOBALS:
            result.count("setting changed")
            continue
        message = (
            f"the global setting '{name.replace('_', '-')}' changed; it takes effect"
            " only after a restart"
        )
        result.warnings.append(message)
        _log.warn("Reload: {message}", message=message)
    # The own listeners keep their caps until a restart: count those.
    service.limiter.maxconn = after.maxconn or default_maxconn(sum(service.own_caps.values()))
    set_pipe_limit(service.limiter.maxconn, after.maxpipes)
    service.monitor.spread_checks = after.spread_checks
    for state in service.frontends.values():
        state.gate.update()


# -- backends and servers --------------------------------------------------


def _apply_backends(
    service: IBalancerRuntime, new: Config, states: Dict[Any, ServerState], result: ReloadResult
) -> None:
    """
    Build every backend of C{new} afresh, hand each the open connections,
    queue and counters of the backend of the same name, and give each
    server the runtime state of the server of the same name; then check
    them all with checks built afresh.
    """
    monitor = service.monitor
    for health in list(monitor.servers):
        monitor.unwatch(health.server)
    running: Dict[str, BackendState] = dict(service.backends)
    old_backends = list(running.values())
    built: Dict[str, BackendState] = {}
    for spec in new.backends:
        backend = built[spec.name] = service.build_backend(spec)
        before = running.get(spec.name)
        if before is None or before.spec.mode != spec.mode:
            result.count("backend added")
            result.count("server added", len(backend.servers))
            continue
        del running[spec.name]
        if plain(before.spec) != plain(spec):
            result.count("backend changed")
        _carry_backend(service, before, backend, result)
    for before in old_backends:
        if service.slowstart is not None:
            service.slowstart.unwatch(before)
    for name, before in running.items():
        _retire_servers(service, before.servers)
        if name not in built:
            result.count("backend removed")
            result.count("server removed", len(before.servers))
    service.backends.clear()
    service.backends.update(built)
    for backend in built.values():
        for server in backend.servers:
            state = states.get((backend.name, server.name))
            prepare = None if state is None else partial(prepare_health, state)
            health = monitor.watch(backend, server, prepare)
            if state is not None:
                added = (backend.name, server.name) in service.added_servers
                apply_server(state, server, health, added)
            if server.address is None and service.running:
                service.resolve_server(backend, server)
        backend.queue.serve()


def _new_servers(service: IBalancerRuntime, states: Dict[Any, ServerState]) -> List[Any]:
    """
    The C{(backend, server)} of the running servers that had no state
    before the reload.
    """
    return [
        (backend.name, server.name)
        for backend in service.backends.values()
        for server in backend.servers
        if (backend.name, server.name) not in states
    ]


def _carry_backend(
    service: IBalancerRuntime, before: BackendState, backend: BackendState, result: ReloadResult
) -> None:
    """
    Hand what C{before} holds at run time to C{backend}, its fresh
    replacement: counters, queued connections, and the open connections
    of each server that stays (same name).
    """
    carry_counters(before, backend, BACKEND_COUNTERS)
    old_servers = {server.name: server for server in before.servers}
    for server in backend.servers:
        prior = old_servers.pop(server.name, None)
        if prior is None:
            result.count("server added")
            _take_back(service, backend, server)
            continue
        if plain(prior.spec) != plain(server.spec):
            result.count("server changed")
        _move_sessions(prior, server, backend)
    removed = list(old_servers.values())
    _retire_servers(service, removed)
    result.count("server removed", len(removed))
    for server in backend.servers:
        for _ in range(server.current):
            backend.balancer.connection_taken(server)
    before.queue.hand_over(backend.queue)


def _move_sessions(prior: Server, server: Server, backend: BackendState) -> None:
    """
    Make the open connections of C{prior} those of C{server}, its
    replacement in C{backend}: they count against its C{maxconn} and show
    in its stats and C{show sess}.
    """
    sessions, prior.sessions = prior.sessions, set()
    for session in sessions:
        session.server = server
        if getattr(session, "backend", None) is prior.backend:
            session.backend = backend
    server.sessions |= sessions
    server.current += prior.current
    prior.current = 0


def _retire_servers(service: IBalancerRuntime, servers: List[Server]) -> None:
    """
    Keep the removed C{servers} that have connections where a stop or
    C{hard-stop-after} finds them.
    """
    for server in servers:
        if server.sessions:
            service.retired.append(server)


def _take_back(service: IBalancerRuntime, backend: BackendState, server: Server) -> None:
    """
    When C{server} (new in the file) is a server an earlier reload removed
    from the same backend, with the same name and address, and whose
    connections are still open, those connections belong to C{server} now:
    they count against its C{maxconn}, show in its stats, and are no
    longer closed at C{hard-stop-after}.  The new server starts otherwise
    as the file says, as any added server does.
    """
    spec = server.spec
    for retired in service.retired:
        old = retired.spec
        if (
            retired.backend is not None
            and retired.backend.name == backend.name
            and retired.name == server.name
            and (old.host, old.port) == (spec.host, spec.port)
        ):
            break
    else:
        return
    service.retired.remove(retired)
    count = len(retired.sessions)
    _move_sessions(retired, server, backend)
    if count:
        _log.info(
            "Server {backend}/{server} is back after a reload: its {count} open"
            " connection(s) stay open.",
            backend=backend.name,
            server=server.name,
            count=count,
        )


# -- frontends -------------------------------------------------------------


def _apply_frontends(service: IBalancerRuntime, old: Config, new: Config, result: ReloadResult) -> None:
    from l4lb.service import BindError

    wanted = {spec.name: spec for spec in new.frontends}
    running = {spec.name: spec for spec in old.frontends}
    closing = []
    for name, spec in running.items():
        if name not in wanted or wanted[name].mode != spec.mode:
            closing.append(service.stop_frontend(name))
            if name not in wanted:
                result.count("frontend removed")
    for spec in new.frontends:
        before = running.get(spec.name)
        try:
            if before is None or before.mode != spec.mode:
                if before is None:
                    result.count("frontend added")
                try:
                    service.start_frontend(spec)
                except BindError:
                    if not closing:
                        raise
                    # A closed frontend's address, taken over by this one,
                    # is free once its port has finished closing.
                    DeferredList(closing).addCallback(_start_later, service, spec)
                    continue
                _open(service, spec.name)
            else:
                if plain(before) != plain(spec):
                    result.count("frontend changed")
                _replace_frontend(service, before, spec)
        except BindError as e:
            result.errors.append(str(e))


def _start_later(_: Any, service: IBalancerRuntime, spec: Any) -> None:
    from l4lb.service import BindError

    try:
        service.start_frontend(spec)
    except BindError as e:
        _log.error("Reload: {error}", error=str(e))
        return
    _open(service, spec.name)
    workers = service.workers
    if workers is not None:
        workers.reload()


def _open(service: IBalancerRuntime, name: str) -> None:
    """
    Let a frontend started by a reload accept, unless the service is not
    open yet (it opens every frontend then).
    """
    if not service.ready.called:
        return
    state = service.frontends.get(name)
    if state is not None:
        if service.workers is None:
            state.gate.open()
    elif name in service.udp_frontends:
        for port in service.ports.get(name, []):
            port.startReading()
    _log.info("Proxy {name} started.", name=name)


def _replace_frontend(service: IBalancerRuntime, before: Any, spec: Any) -> None:
    """
    Build the frontend C{spec} afresh and hand it the ports, connections,
    counters and run-time settings of the running frontend of that name.
    """
    from l4lb.udp.frontend import UdpFrontend

    fresh = service.build_frontend(spec)
    if isinstance(fresh, UdpFrontend):
        running = service.udp_frontends[spec.name]
        carry_counters(running, fresh, UDP_FRONTEND_COUNTERS)
        running.hand_over(fresh)
        service.udp_frontends[spec.name] = fresh
    else:
        _hand_over_tcp(service, before, spec, service.frontends[spec.name], fresh)
        service.frontends[spec.name] = fresh
    _rebind(service, before, spec)


def _hand_over_tcp(service: IBalancerRuntime, before: Any, spec: Any, state: Any, fresh: Any) -> None:
    """
    Give the fresh TCP frontend C{fresh} the listening ports, the count of
    open connections, the counters, the stick table and the run-time
    C{maxconn} of C{state}, the one it replaces.  The connections already
    open keep C{state} (their log format and sink).
    """
    from l4lb.protect.stage import SourceStage

    carry_counters(state, fresh, FRONTEND_COUNTERS)
    old_gate, gate = state.gate, fresh.gate
    gate.current = old_gate.current
    if spec.maxconn == before.maxconn:
        # Not changed in the file: the value set at run time stays.
        gate.maxconn = old_gate.maxconn
    if before.stick_table is not None and plain(before.stick_table) == plain(spec.stick_table):
        tables = [s.table for s in state.stages if isinstance(s, SourceStage)]
        for stage in fresh.stages:
            if isinstance(stage, SourceStage) and tables:
                stage.table = tables[0]
    service.limiter.remove(old_gate)
    if old_gate.rate is not None:
        old_gate.rate.stop()
    old_gate.successor = gate
    state.gate = gate
    for port in service.ports.get(spec.name, []):
        old_gate.remove_port(port)
        factory = service.port_factories.get(port)
        if factory is not None:
            factory.frontend = fresh
        gate.add_port(port)
    if service.ready.called and service.workers is None:
        gate.open()


def _rebind(service: IBalancerRuntime, before: Any, spec: Any) -> None:
    """
    Close the ports of binds no longer written and bind the new ones; the
    ports of binds that stay are kept (their accept queues too), their
    PROXY-header stage made again for the frontend's new settings.
    """
    from l4lb.tcp.stagelist import bind_stages

    ports = service.ports.setdefault(spec.name, [])
    kept: Dict[Any, Any] = {}
    for bind, port in zip(before.binds, list(ports)):
        key = plain(bind)
        if key in kept or key not in {plain(b) for b in spec.binds}:
            service.unlisten(spec.name, port)
        else:
            kept[key] = port
    ports.clear()
    for bind in spec.binds:
        port = kept.pop(plain(bind), None)
        if port is None:
            # A new TCP port reads as its frontend's gate does already.
            port = service.listen(spec, bind)
            if service.ready.called and spec.name in service.udp_frontends:
                port.startReading()
        elif port in service.port_factories:
            service.port_factories[port].first = bind_stages(spec, bind)
            _relisten(service, spec, bind, port)
        ports.append(port)


def _relisten(service: IBalancerRuntime, spec: Any, bind: Any, port: Any) -> None:
    """
    Give a kept TCP port the listen backlog a start would give it now
    (C{backlog}, C{maxconn} and the global C{maxconn} may have changed):
    calling C{listen} again on a listening socket only changes its backlog.
    """
    from l4lb._twistedcompat import stream_port_socket
    from l4lb.tcp.backlog import effective_backlog

    sock = stream_port_socket(port)
    if sock is not None:
        sock.listen(
            effective_backlog(bind.backlog, spec.backlog, spec.maxconn, service.limiter.maxconn)
        )


# -- connections to removed servers ---------------------------------------


def _retire_later(service: IBalancerRuntime, grace: float) -> None:
    """
    After C{grace} seconds, close the connections still open to the
    servers retired so far, and forget the retired servers that have none.
    """
    service.retired[:] = [s for s in service.retired if s.sessions]
    if not service.retired:
        return
    due = list(service.retired)

    def expire() -> None:
        closing = [session for server in due for session in list(server.sessions)]
        if closing:
            _log.warn(
                "Reload: hard-stop-after reached: closing {count} connection(s) to removed"
                " servers.",
                count=len(closing),
            )
        for session in closing:
            # As a stop does: logged with the phase it was in.
            kill_session(session, "K")
        service.retired[:] = [s for s in service.retired if s.sessions]

    service.reactor.callLater(grace, expire)
