"""
Servers added, removed and moved at run time: the policies behind the
runtime API's C{add server}, C{del server} and C{set server ... addr}, and
behind whatever else changes servers while l4lb runs (DNS discovery, a
key-value store).

A server added at run time is built as a start builds one: its line is
read by the configuration's own server parser
(L{l4lb.config.servers.parse_server}), the L{l4lb.pool.Server} made by its
constructor, and the backend's balancer built again over the new list by
the algorithm's factory.  Its definition (an L{AddedServer}) is runtime
state: a reload builds the backend with it again, unless the new file
defines a server of that name (the file wins), and the server-state file
(L{l4lb.statefile}) writes it so that a restart recreates it.

As in HAProxy, a new server starts in maintenance unless told otherwise;
C{default-server} lines do not apply to it; its checks begin when it is
enabled.  One with a host name and C{resolvers} is watched by DNS
discovery (L{l4lb.dns.discovery.DnsDiscovery.server_added}) until it is
deleted or a reload drops it.  It can be removed only in maintenance and without connections.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Dict, Optional, Tuple

import attr
from twisted.logger import Logger

from l4lb.config.errors import ConfigError, Problem
from l4lb.config.model import ServerSpec
from l4lb.config.servers import mode_problems, parse_server, split_words
from l4lb.config.units import is_ip_literal
from l4lb.pool import BackendState, Server
from l4lb.runtime_state import capture_server, prepare_health

_log = Logger(namespace="l4lb")

__all__ = [
    "AddedServer",
    "ServerChangeError",
    "add_server",
    "added_spec",
    "added_specs",
    "prune_added",
    "remove_server",
    "set_server_address",
    "RUNTIME_SOURCE",
]

#: The C{file} of the problems of a server line given at run time.
RUNTIME_SOURCE = "runtime API"

#: How a cause of address change is written in the log (HAProxy's words).
_CAUSES = {"runtime": "stats socket command"}


class ServerChangeError(Exception):
    """
    A server cannot be added, removed or moved now; the message is
    HAProxy's reply, one line, e.g. C{"Only servers in maintenance mode can
    be deleted."}.
    """


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AddedServer:
    """
    The definition of a server added at run time.

    @ivar backend: Its backend's name.
    @ivar name: Its name.
    @ivar line: What was given after C{server NAME =}: C{ADDR:PORT
        [options]}.
    @ivar enabled: Whether it was asked to start enabled.
    """

    backend: str
    name: str
    line: str
    enabled: bool = False


def added_spec(backend_spec: Any, added: AddedServer) -> ServerSpec:
    """
    The L{ServerSpec} of a server added at run time to the backend
    C{backend_spec}: its line read as a file's C{server} line (without the
    C{default-server} options, as HAProxy's C{add server}), in
    maintenance unless C{enabled} (the word or the argument).

    @raise ConfigError: With the problems the configuration check would
        report for that line.
    """
    server, errors = parse_server(added.name, added.line, 0)
    if server is not None:
        errors.extend(mode_problems(server, backend_spec.mode))
    if errors or server is None:
        raise ConfigError(
            [
                Problem(
                    RUNTIME_SOURCE, 0, f"backend {backend_spec.name}", f"server {added.name}", e
                )
                for e in errors
            ]
        )
    words = [w.lower() for w in split_words(added.line)[1:]]
    enabled = added.enabled or "enabled" in words
    return attr.evolve(server, disabled=not enabled)


def add_server(service: Any, added: AddedServer) -> Server:
    """
    Add the server C{added} to its running backend (see
    L{l4lb.interfaces.IBalancerRuntime.add_server}).

    @raise ServerChangeError: When the backend does not exist, already
        has a server of that name, or runs in C{nbproc} workers.
    @raise ConfigError: When the line is not valid.
    """
    backend = _backend(service, added.backend)
    if service.workers is not None:
        raise ServerChangeError(_NBPROC)
    if any(server.name == added.name for server in backend.servers):
        raise ServerChangeError("Already exists a server with the same name in backend.")
    spec = added_spec(backend.spec, added)
    server = Server(spec, backend)
    service.prepare_servers([server])
    backend.set_servers([*backend.servers, server])
    service.added_servers[(added.backend, added.name)] = added
    if service.slowstart is not None:
        service.slowstart.follow(server)
    service.monitor.watch(backend, server)
    if service.dns is not None:
        # With 'resolvers' its name is watched as a file server's is.
        service.dns.server_added(backend.name, server.name)
    if server.address is None and service.running:
        service.resolve_server(backend, server)
    for listener in list(backend.listeners):
        listener(server)
    _log.info(
        "Server {backend}/{server} added at run time at {address}:{port}{state}.",
        backend=backend.name,
        server=server.name,
        address=spec.host,
        port=spec.port,
        state=" (in maintenance)" if server.admin == "maint" else "",
    )
    return server


def remove_server(service: Any, backend_name: str, name: str) -> Server:
    """
    Remove a server in maintenance that has no connection (see
    L{l4lb.interfaces.IBalancerRuntime.remove_server}).

    @return: The removed server.
    @raise ServerChangeError: With HAProxy's reason when it cannot be.
    """
    backend = _backend(service, backend_name)
    if service.workers is not None:
        raise ServerChangeError(_NBPROC)
    try:
        server = backend.server(name)
    except KeyError:
        raise ServerChangeError("No such server.") from None
    if server.admin != "maint":
        raise ServerChangeError("Only servers in maintenance mode can be deleted.")
    if server.current or server.sessions:
        raise ServerChangeError("Server still has connections attached to it, cannot remove it.")
    service.monitor.unwatch(server)
    if service.slowstart is not None:
        service.slowstart.forget(server)
    backend.set_servers([s for s in backend.servers if s is not server])
    service.added_servers.pop((backend_name, name), None)
    if service.dns is not None:
        service.dns.server_removed(backend_name, name)
    _log.info("Server {backend}/{server} deleted.", backend=backend_name, server=name)
    return server


def set_server_address(
    service: Any, server: Server, host: str, port: Optional[int] = None, cause: str = "runtime"
) -> str:
    """
    Send C{server}'s new connections and checks to C{host} (an IP address)
    and C{port}; established connections stay where they are (see
    L{l4lb.interfaces.IBalancerRuntime.set_server_address}).

    @return: HAProxy's reply, e.g. C{"IP changed from '127.0.0.1' to
        '127.0.0.2' by 'stats socket command'"}; empty when nothing changed.
    @raise ServerChangeError: When C{host} is not an IP address or C{port}
        not a port, or with C{nbproc} workers.
    """
    if not is_ip_literal(host):
        raise ServerChangeError("Could not understand IP address format.")
    if port is not None and not 1 <= port <= 65535:
        raise ServerChangeError("provided port is not valid.")
    if service.workers is not None:
        raise ServerChangeError(_NBPROC)
    new_port = server.port if port is None else port
    old_address, old_port = server.address, server.port
    if (old_address, old_port) == (host, new_port):
        return ""
    backend = server.backend
    was_eligible = server.eligible
    if backend is not None and was_eligible:
        # Out of the balancer under its old key, back in under the new one
        # (the hashing balancers key servers by address).
        backend.balancer.server_down(server)
    server.address, server.port = host, new_port
    if backend is not None:
        if server.eligible:
            backend.balancer.server_up(server)
        if old_port != new_port:
            _rebuild_checks(service, backend, server)
        for listener in list(backend.listeners):
            listener(server)
    who = _CAUSES.get(cause, cause)
    parts = []
    changes = []
    if old_address != host:
        parts.append(f"IP changed from '{old_address or '-'}' to '{host}'")
        changes.append(f"its IP from {old_address or '-'} to {host}")
    if old_port != new_port:
        parts.append(f"port changed from '{old_port}' to '{new_port}'")
        changes.append(f"its port from {old_port} to {new_port}")
    _log.warn(
        "{backend}/{server} changed {changes} by {who}.",
        backend=backend.name if backend is not None else "-",
        server=server.name,
        changes=" and ".join(changes),
        who=who,
    )
    return ", ".join(parts) + f" by '{who}'"


def _rebuild_checks(service: Any, backend: BackendState, server: Server) -> None:
    """
    Build C{server}'s checks again (their port follows the server's unless
    C{port} is set), keeping their state and history.
    """
    monitor = service.monitor
    try:
        health = monitor.find(backend.name, server.name)
    except KeyError:
        return
    state = capture_server(server, health)
    monitor.unwatch(server)
    monitor.watch(backend, server, partial(prepare_health, state))


def parse_backend_server(text: str) -> Tuple[str, str]:
    """
    Split C{BACKEND/SERVER}.

    @raise ServerChangeError: Without a C{/}.
    """
    backend, slash, name = text.partition("/")
    if not slash or not backend or not name:
        raise ServerChangeError("Require 'backend/server'.")
    return backend, name


def _backend(service: Any, name: str) -> BackendState:
    backend: Optional[BackendState] = service.backends.get(name)
    if backend is None:
        raise ServerChangeError("No such backend.")
    return backend


_NBPROC = (
    "Servers cannot be added, deleted or moved at run time with 'nbproc' above 1;"
    " change the configuration file and reload instead."
)


def added_specs(
    added: Dict[Tuple[str, str], AddedServer], backend_spec: Any
) -> Tuple[ServerSpec, ...]:
    """
    The L{ServerSpec}s of the servers added at run time to the backend
    C{backend_spec}, in the order they were added, but for those the
    backend's configuration defines (the file wins) or no longer accepts
    (L{prune_added} logs and forgets those).
    """
    defined = {s.name for s in backend_spec.servers}
    specs = []
    for definition in added.values():
        if definition.backend != backend_spec.name or definition.name in defined:
            continue
        try:
            specs.append(added_spec(backend_spec, definition))
        except ConfigError:
            continue
    return tuple(specs)


def prune_added(added: Dict[Tuple[str, str], AddedServer], backends: Any) -> None:
    """
    Forget, with a warning, the runtime-added servers that a new
    configuration does not keep: their backend is gone, the file now
    defines a server of that name (the file wins), or their line is no
    longer valid there.

    @param backends: The new configuration's backends.
    """
    specs = {spec.name: spec for spec in backends}
    for key, definition in list(added.items()):
        backend_spec = specs.get(definition.backend)
        reason = None
        if backend_spec is None:
            reason = "its backend is gone"
        elif any(s.name == definition.name for s in backend_spec.servers):
            reason = "the configuration file now defines a server of that name, which wins"
        else:
            try:
                added_spec(backend_spec, definition)
            except ConfigError as e:
                reason = "; ".join(p.message for p in e.problems)
        if reason is not None:
            del added[key]
            _log.warn(
                "Server {backend}/{server} added at run time is dropped: {reason}.",
                backend=definition.backend,
                server=definition.name,
                reason=reason,
            )
