"""
Resolving server host names without blocking the reactor.

A server written with a host name (C{server app = app.internal:8080}) is
parsed with C{address=None}.  L{resolve_config} asks an
L{IHostnameResolver} (in production C{reactor.nameResolver}, which runs
C{getaddrinfo} in a thread) for every such name and returns a configuration
whose servers all have an address.  An IPv4 address is preferred when a name
has both kinds.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import attr
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IResolutionReceiver,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from l4lb.config.errors import ConfigError, Problem
from l4lb.config.dns import server_dns
from l4lb.config.model import Config, ServerSpec
from l4lb.config.units import is_ip_literal


@implementer(IResolutionReceiver)
class _Receiver:
    """
    Collects the addresses of one resolution and fires C{done} with them.
    """

    def __init__(self) -> None:
        self.addresses: List[IAddress] = []
        self.done: Deferred[List[IAddress]] = Deferred()

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        """
        Nothing to do: the resolution is never cancelled.
        """

    def addressResolved(self, address: IAddress) -> None:
        """
        Keep C{address}.
        """
        self.addresses.append(address)

    def resolutionComplete(self) -> None:
        """
        Deliver the addresses.
        """
        self.done.callback(self.addresses)


def pick_address(addresses: List[IAddress]) -> Optional[str]:
    """
    Choose the address to connect to: the first IPv4 one, else the first
    IPv6 one, else C{None}.
    """
    for kind in (IPv4Address, IPv6Address):
        for address in addresses:
            if isinstance(address, kind):
                return address.host
    return None


def libc_at_start(server: ServerSpec) -> bool:
    """
    Whether a server's host name must resolve through the system at
    start: not when it follows C{resolvers} with an C{init-addr} that
    falls back to C{none} or an IP address, or lacks C{libc}.
    """
    dns = server_dns(server.options)
    if dns.resolvers is None:
        return True
    methods = dns.init_addr
    return "libc" in methods and not any(m != "libc" and m != "last" for m in methods)


def resolve_host(
    resolver: IHostnameResolver, host: str, port: int = 0
) -> "Deferred[Optional[str]]":
    """
    Resolve one host name.

    @param resolver: Usually C{reactor.nameResolver}.
    @param host: A host name, or an IP literal (returned as it is).
    @param port: Passed on to the resolver.
    @return: A L{Deferred} that fires with the chosen address, or C{None}
        when the name has no IPv4 or IPv6 address.  It fails only when the
        resolver itself raises.
    """
    if is_ip_literal(host):
        return succeed(host)
    receiver = _Receiver()
    try:
        resolver.resolveHostName(
            receiver, host, port, addressTypes=[IPv4Address, IPv6Address]
        )
    except Exception:
        failed: Deferred[Optional[str]] = Deferred()
        failed.errback(Failure())
        return failed
    return receiver.done.addCallback(pick_address)


def resolve_config(
    config: Config, resolver: IHostnameResolver
) -> "Deferred[Config]":
    """
    Fill in the address of every server written with a host name.

    Each distinct name is resolved once, all of them at the same time.

    @param resolver: Usually C{reactor.nameResolver}.
    @return: A L{Deferred} that fires with a new L{Config}, or fails with a
        L{ConfigError} naming the file, line, backend, server and host of
        every name that does not resolve.
    """
    hosts: Dict[str, int] = {}
    for backend in config.backends:
        slots = {name for template in backend.templates for name in template.names}
        for server in backend.servers:
            if server.address is None and server.name not in slots and libc_at_start(server):
                hosts.setdefault(server.host, server.port)
    if not hosts:
        return succeed(config)
    names = list(hosts)
    reasons: Dict[str, str] = {}

    def one(host: str) -> "Deferred[Optional[str]]":
        def failed(failure: Failure) -> None:
            reasons[host] = failure.getErrorMessage()
            return None

        return resolve_host(resolver, host, hosts[host]).addErrback(failed)

    def done(results: List[Optional[str]]) -> Config:
        found = dict(zip(names, results))
        problems = []
        backends = []
        for backend in config.backends:
            servers = []
            for server in backend.servers:
                if server.address is None and server.host in hosts:
                    address = found.get(server.host)
                    if address is None:
                        reason = reasons.get(server.host, "no IPv4 or IPv6 address")
                        problems.append(
                            Problem(
                                config.source,
                                server.line,
                                f"backend {backend.name}",
                                f"server {server.name}",
                                f"cannot resolve host {server.host!r}: {reason};"
                                " use a host name that resolves or an IP address"
                                + (
                                    ", or add 'init-addr last,libc,none' to start it in"
                                    " maintenance until its resolvers answer"
                                    if server_dns(server.options).resolvers
                                    else ""
                                ),
                            )
                        )
                    server = attr.evolve(server, address=address)
                servers.append(server)
            backends.append(attr.evolve(backend, servers=tuple(servers)))
        if problems:
            raise ConfigError(problems)
        return attr.evolve(config, backends=tuple(backends))

    return gatherResults([one(host) for host in names]).addCallback(done)
