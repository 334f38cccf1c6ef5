"""
Runtime state of backends and servers: what balancers, health checks, the
relay and (later) the stats read and change.
"""

from __future__ import annotations

from typing import Container, List, Optional

from zope.interface import Interface

from l4lb.config.model import Backend as BackendSpec
from l4lb.config.model import ServerSpec


class Server:
    """
    A server and its live state.

    @ivar spec: The configuration it came from.
    @ivar name: Its name.
    @ivar address: The IP address connections go to (C{None} while the host
        name is not resolved; such a server is not eligible).
    @ivar port: The port connections go to.
    @ivar weight: The current effective weight.
    @ivar up: The health state; a server without checks is always up.
    @ivar admin: C{"ready"}, C{"drain"} or C{"maint"}.
    @ivar current: Connections open to it now.
    @ivar total: Connections it was given since start.
    @ivar failed_connects: Connection attempts to it that failed.
    """

    __slots__ = (
        "spec",
        "name",
        "address",
        "port",
        "weight",
        "up",
        "admin",
        "current",
        "total",
        "failed_connects",
        "backend",
    )

    def __init__(self, spec: ServerSpec, backend: Optional["BackendState"] = None):
        self.spec = spec
        self.name = spec.name
        self.address = spec.address
        self.port = spec.port
        self.weight = spec.weight
        self.up = True
        self.admin = "maint" if spec.disabled else "ready"
        self.current = 0
        self.total = 0
        self.failed_connects = 0
        self.backend = backend

    @property
    def full(self) -> bool:
        """
        Whether the server is at its C{maxconn}.
        """
        return 0 < self.spec.maxconn <= self.current

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

    def __repr__(self) -> str:
        return f"<Server {self.name} {self.address}:{self.port}>"


class BackendState:
    """
    A backend, its servers and its balancer.

    @ivar spec: The configuration it came from.
    @ivar name: Its name.
    @ivar servers: Its L{Server}s in file order.
    @ivar balancer: Its L{l4lb.interfaces.IBalancer}.
    @ivar current: Connections open through it now.
    @ivar total: Connections it handled since start.
    """

    def __init__(self, spec: BackendSpec, balancer_factory: Interface) -> None:
        self.spec = spec
        self.name = spec.name
        self.servers: List[Server] = [Server(s, self) for s in spec.servers]
        self.balancer = balancer_factory.build(  # type: ignore[attr-defined]
            self.servers, spec.balance_args
        )
        self.current = 0
        self.total = 0

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

    def take(self, server: Server) -> None:
        """
        Count a new connection to C{server}.
        """
        server.current += 1
        server.total += 1
        self.balancer.connection_taken(server)

    def drop(self, server: Server) -> None:
        """
        Count the end of a connection to C{server}.
        """
        server.current -= 1
        self.balancer.connection_dropped(server)
