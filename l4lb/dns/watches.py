"""
What DNS discovery watches: a L{Watch} per name looked up for a backend,
built from frozen configuration, whether a server comes from the file
(L{watches_of}) or from C{add server} (L{server_watch}).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from l4lb.config.dns import ResolversSpec, ServerDns, server_dns
from l4lb.config.model import Backend, Config, ServerSpec
from l4lb.dns.records import Record, Resolution


class Watch:
    """
    One name looked up for one backend: a template's slots, or one
    server that follows its host name.

    @ivar backend: The backend's name.
    @ivar fqdn: The name looked up.
    @ivar names: The servers it places: the slots, or the one server.
    @ivar template: Whether C{names} are a template's slots.
    @ivar port: The port written with the name (0: none).
    @ivar options: The servers' DNS options.
    @ivar resolution: The records across answers.
    @ivar held: The record each server holds (C{None}: empty).
    """

    def __init__(
        self,
        backend: str,
        fqdn: str,
        names: Tuple[str, ...],
        template: bool,
        port: int,
        options: ServerDns,
        spec: ResolversSpec,
    ) -> None:
        self.backend = backend
        self.fqdn = fqdn
        self.names = names
        self.template = template
        self.port = port
        self.options = options
        self.spec = spec
        self.resolution = Resolution(spec)
        self.held: Dict[str, Optional[Record]] = {}
        self.call: Any = None
        self.busy = False

    @property
    def srv(self) -> bool:
        """
        Whether the name is an SRV name.
        """
        return self.fqdn.startswith("_")

    @property
    def key(self) -> Tuple[Any, ...]:
        """
        What a watch of the next configuration must share to take over
        this one's records.
        """
        return (self.backend, self.fqdn, self.names, self.template, self.port, self.spec)


def watches_of(config: Config) -> List[Watch]:
    """
    The watches a configuration asks for (those of the servers added at
    run time are L{server_watch}'s).
    """
    specs = {spec.name: spec for spec in config.resolvers}
    found: List[Watch] = []
    for backend in config.backends:
        found.extend(_backend_watches(backend, specs))
    return found


def _backend_watches(backend: Backend, specs: Mapping[str, ResolversSpec]) -> List[Watch]:
    found = []
    in_template: Set[str] = set()
    servers = {server.name: server for server in backend.servers}
    for template in backend.templates:
        in_template.update(template.names)
        first = servers.get(template.names[0])
        if first is None:
            continue
        options = server_dns(first.options)
        if options.resolvers in specs:
            found.append(
                Watch(backend.name, template.fqdn, template.names, True, template.port,
                      options, specs[options.resolvers])  # type: ignore[index]
            )
    for server in backend.servers:
        watch = None if server.name in in_template else server_watch(backend.name, server, specs)
        if watch is not None:
            found.append(watch)
    return found


def server_watch(
    backend: str, server: ServerSpec, specs: Mapping[str, ResolversSpec]
) -> Optional[Watch]:
    """
    The watch of a server that follows its host name (one with a host
    name, not an IP address, and C{resolvers} naming one of C{specs}),
    whether the file defines it or C{add server} added it; else C{None}.

    @param backend: Its backend's name.
    @param specs: The C{[resolvers]} sections by name.
    """
    options = server_dns(server.options)
    if server.address is not None or options.resolvers is None:
        return None
    spec = specs.get(options.resolvers)
    if spec is None:
        return None
    return Watch(
        backend, server.host.rstrip(".").lower(), (server.name,), False, server.port, options, spec
    )
