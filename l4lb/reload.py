"""
Reloading the configuration in place (SIGHUP, the runtime API's C{reload}).

L{reload_file} reads the file again.  When it has errors, they are logged
and returned, and nothing changes; so is a file without errors that has
no listener (an empty or half-written file, L{l4lb.config.listeners}),
which would otherwise close every port.  When it is valid, L{apply_config}
compares it with the running one and changes only what differs:

 - frontends: new ones bound and opened, removed ones' ports closed (their
   connections continue), changed ones updated for new connections (binds
   added or closed, backend, C{maxconn}, timeouts, logging);
 - backends: new ones created, removed ones forgotten (their connections
   continue), changed ones updated: servers added, removed, reweighted or
   moved to a new address, the balancer rebuilt when the algorithm or the
   set of servers changes;
 - servers that stay (same backend, same name) keep their runtime state:
   admin state set through the API, health, counters, open connections;
   a setting changed in the file (weight, C{maxconn}, C{disabled})
   replaces the runtime value.  Their checks restart when check settings
   change.

Connections to a removed server (or of a removed backend) are left alone
until they end, or until C{hard-stop-after} seconds after the reload.
Global settings other than C{maxconn}, C{maxpipes}, C{hard-stop-after},
C{spread-checks} and C{tune.relay} need a restart; a reload says so.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import attr
from twisted.internet.defer import DeferredList
from twisted.logger import Logger

from l4lb.config import ConfigError, load_config_with_warnings
from l4lb.config.listeners import require_listener
from l4lb.config.model import Config
from l4lb.pool import BackendState, Server

_log = Logger(namespace="l4lb")

#: Global settings a reload applies; a change of any other needs a restart.
RUNTIME_GLOBALS = frozenset(
    {"maxconn", "maxpipes", "hard_stop_after", "spread_checks", "relay"}
)

#: Server settings that do not affect its health checks.
_NOT_CHECK = frozenset({"weight", "maxconn", "maxqueue", "disabled", "backup", "line", "options"})

#: Backend settings that affect the health checks of all its servers.
_BACKEND_CHECK = ("tcp_check", "tcp_check_rules", "udp_check", "log_health_checks", "mode")

#: Backend settings that change how its balancer chooses.
_BACKEND_BALANCE = ("balance", "balance_args", "hash_type", "hash_balance_factor", "allbackups")


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


def reload_file(service: Any, path: Optional[str] = None) -> ReloadResult:
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


def apply_config(service: Any, new: Config) -> ReloadResult:
    """
    Change the running C{service} to run C{new}, keeping every established
    connection, and log what changed.
    """
    result = ReloadResult()
    old = service.config
    _apply_globals(service, old, new, result)
    replaced = _apply_backends(service, old, new, result)
    service.config = new
    _apply_frontends(service, old, new, replaced, result)
    _retire_later(service, new.global_settings.hard_stop_after)
    workers = getattr(service, "workers", None)
    if workers is not None:
        # nbproc: workers run the configuration they read at start.
        workers.reload()
    for error in result.errors:
        _log.error("Reload: {error}", error=error)
    _log.info("{summary}", summary=result.summary())
    return result


# -- comparing -------------------------------------------------------------


def plain(value: Any, skip: frozenset = frozenset({"line"})) -> Any:
    """
    C{value} (a configuration object) as nested tuples, without the fields
    in C{skip} (line numbers by default), so that two configurations
    compare equal when they differ only where things are written.
    """
    if attr.has(type(value)):
        return tuple(
            (f.name, plain(getattr(value, f.name)))
            for f in attr.fields(type(value))
            if f.name not in skip
        )
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


# -- global ----------------------------------------------------------------


def _apply_globals(service: Any, old: Config, new: Config, result: ReloadResult) -> None:
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
    for state in service.frontends.values():
        state.gate.update()


# -- backends --------------------------------------------------------------


def _apply_backends(service: Any, old: Config, new: Config, result: ReloadResult) -> set:
    """
    Add, drop and update backends.

    @return: The names of the backends whose L{BackendState} is new (added,
        or replaced because their mode changed).
    """
    replaced = set()
    wanted = {spec.name: spec for spec in new.backends}
    for name in list(service.backends):
        backend = service.backends[name]
        spec = wanted.get(name)
        if spec is None or spec.mode != backend.spec.mode:
            del service.backends[name]
            _retire_servers(service, backend, list(backend.servers))
            if spec is None:
                result.count("backend removed")
                result.count("server removed", len(backend.servers))
    for spec in new.backends:
        backend = service.backends.get(spec.name)
        if backend is None:
            backend = service.build_backend(spec)
            service.backends[spec.name] = backend
            replaced.add(spec.name)
            result.count("backend added")
            result.count("server added", len(backend.servers))
            for server in backend.servers:
                _start_server(service, backend, server)
        elif plain(backend.spec) != plain(spec):
            result.count("backend changed")
            _update_backend(service, backend, spec, result)
        else:
            backend.spec = spec
    return replaced


def _start_server(service: Any, backend: BackendState, server: Server) -> None:
    """
    Check and, when its host is a name, resolve a server new to the
    running configuration.
    """
    service.monitor.watch(backend, server)
    if server.address is None and service.running:
        service._resolve_server(backend, server)


def _retire_servers(service: Any, backend: BackendState, servers: List[Server]) -> None:
    """
    Stop checking C{servers} (removed) and keep those with connections
    where a stop or C{hard-stop-after} finds them.
    """
    for server in servers:
        service.monitor.unwatch(server)
        if server.sessions:
            service.retired.append(server)


def _take_back(service: Any, backend: BackendState, server: Server) -> None:
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
            retired.backend is backend
            and retired.name == server.name
            and (old.host, old.port) == (spec.host, spec.port)
        ):
            break
    else:
        return
    service.retired.remove(retired)
    sessions, retired.sessions = retired.sessions, set()
    for session in sessions:
        session.server = server
    server.sessions = sessions
    server.current, retired.current = retired.current, 0
    if sessions:
        _log.info(
            "Reload: server {backend}/{server} is back: its {count} open connection(s)"
            " stay open.",
            backend=backend.name,
            server=server.name,
            count=len(sessions),
        )


def _update_backend(service: Any, backend: BackendState, spec: Any, result: ReloadResult) -> None:
    old_spec = backend.spec
    old_servers = {server.name: server for server in backend.servers}
    checks_changed = any(
        plain(getattr(old_spec, name)) != plain(getattr(spec, name)) for name in _BACKEND_CHECK
    ) or old_spec.timeouts.check != spec.timeouts.check or (
        old_spec.timeouts.connect != spec.timeouts.connect
    )
    rebuild = any(getattr(old_spec, name) != getattr(spec, name) for name in _BACKEND_BALANCE)
    backend.spec = spec
    servers: List[Server] = []
    added: List[Server] = []
    for server_spec in spec.servers:
        server = old_servers.pop(server_spec.name, None)
        if server is None:
            server = Server(server_spec, backend)
            service.prepare_servers([server])
            _take_back(service, backend, server)
            added.append(server)
            rebuild = True
        else:
            changed, recheck, moved = _update_server(service, server, server_spec)
            if changed:
                result.count("server changed")
            rebuild = rebuild or moved or server.spec.backup != server_spec.backup
            if recheck or (checks_changed and server_spec.check):
                service.monitor.unwatch(server)
                service.monitor.watch(backend, server)
        servers.append(server)
    removed = list(old_servers.values())
    if removed:
        rebuild = True
        _retire_servers(service, backend, removed)
    backend.servers[:] = servers
    if rebuild:
        _rebuild_balancer(service, backend)
    for server in added:
        _start_server(service, backend, server)
    result.count("server added", len(added))
    result.count("server removed", len(removed))
    backend.queue.serve()


def _update_server(service: Any, server: Server, spec: Any) -> Tuple[bool, bool, bool]:
    """
    Apply a server's new configuration, keeping its runtime state where
    the file did not change it.

    @return: Whether anything changed, whether its checks must restart,
        and whether its address changed.
    """
    old = server.spec
    if plain(old) == plain(spec):
        server.spec = spec
        return False, False, False
    recheck = plain(old, _NOT_CHECK) != plain(spec, _NOT_CHECK)
    moved = (old.host, old.port) != (spec.host, spec.port)
    server.spec = spec
    fresh = Server(spec)
    # What the relay derives from the configuration (PROXY header, TLS).
    for name in ("preamble", "tls"):
        if hasattr(fresh, name):
            setattr(server, name, getattr(fresh, name))
    service.prepare_servers([server])
    if moved:
        server.port = spec.port
        server.address = spec.address
        if spec.address is None and service.running:
            service._resolve_server(server.backend, server)
    if spec.weight != old.weight:
        server.set_weight(spec.weight)
    if spec.maxconn != old.maxconn:
        server.set_maxconn(spec.maxconn)
    if spec.disabled != old.disabled:
        server.set_admin("maint" if spec.disabled else "ready")
    return True, recheck, moved


def _rebuild_balancer(service: Any, backend: BackendState) -> None:
    """
    Build the backend's balancer again over its servers, and tell it of
    the connections already open, including those to removed servers.
    """
    from l4lb.balancers import find_factory

    balancer = find_factory(backend.spec.balance).build(backend.servers, backend.spec.balance_args)
    for server in backend.servers + [s for s in service.retired if s.backend is backend]:
        for _ in range(server.current):
            balancer.connection_taken(server)
    backend.balancer = balancer


# -- frontends -------------------------------------------------------------


def _apply_frontends(
    service: Any, old: Config, new: Config, replaced: set, result: ReloadResult
) -> None:
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
            elif plain(before) != plain(spec):
                result.count("frontend changed")
                _update_frontend(service, before, spec)
            elif _uses(spec, replaced):
                # Unchanged, but a backend it names is a new object now.
                _update_frontend(service, before, spec)
        except BindError as e:
            result.errors.append(str(e))


def _uses(spec: Any, backends: set) -> bool:
    """
    Whether the frontend C{spec} sends connections to any of C{backends}.
    """
    names = {spec.default_backend} | {route.backend for route in spec.sni_routes}
    return bool(names & backends)


def _start_later(_: Any, service: Any, spec: Any) -> None:
    from l4lb.service import BindError

    try:
        service.start_frontend(spec)
    except BindError as e:
        _log.error("Reload: {error}", error=str(e))
        return
    _open(service, spec.name)
    workers = getattr(service, "workers", None)
    if workers is not None:
        workers.reload()


def _open(service: Any, name: str) -> None:
    """
    Let a frontend started by a reload accept, unless the service is not
    open yet (it opens every frontend then).
    """
    if not service.ready.called:
        return
    state = service.frontends.get(name)
    if state is not None:
        if getattr(service, "workers", None) is None:
            state.gate.open()
    elif name in service.udp_frontends:
        for port in service.ports.get(name, []):
            port.startReading()
    _log.info("Proxy {name} started.", name=name)


def _update_frontend(service: Any, before: Any, spec: Any) -> None:
    from l4lb.tcp.stagelist import build_stages

    backend = service.backends[spec.default_backend]
    sink = service.sink if spec.log else None
    state = service.frontends.get(spec.name)
    if state is not None:
        state.spec = spec
        state.backend = backend
        state.backend_spec = backend.spec
        state.sink = sink
        state.lean = service.config.global_settings.relay == "lean"
        state.inspect_delay = (
            spec.inspect_delay if spec.inspect_delay is not None else spec.timeouts.client
        )
        state.stages = build_stages(spec, service.backends)
        state.gate.maxconn = spec.maxconn
        state.gate.update()
    udp = service.udp_frontends.get(spec.name)
    if udp is not None:
        if udp.backend is not backend:
            if udp._server_changed in udp.backend.listeners:
                udp.backend.listeners.remove(udp._server_changed)
            backend.listeners.append(udp._server_changed)
        udp.spec = spec
        udp.backend = backend
        udp.sink = sink
        udp.max_responses = backend.spec.udp_responses
        udp.max_requests = backend.spec.udp_requests
        udp._retries = backend.spec.retries
    _rebind(service, before, spec)


def _rebind(service: Any, before: Any, spec: Any) -> None:
    """
    Close the ports of binds no longer written and bind the new ones; the
    ports of binds that stay are kept (their accept queues too).
    """
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
        ports.append(port)


# -- connections to removed servers ---------------------------------------


def _retire_later(service: Any, grace: float) -> None:
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
            kill = getattr(session, "kill", None)
            if kill is not None:
                # As a stop does: the phase it was in (a UDP session has none).
                phase = "C" if getattr(session, "state", None) == "connecting" else "D"
                kill("K" + phase)
        service.retired[:] = [s for s in service.retired if s.sessions]

    service.reactor.callLater(grace, expire)
