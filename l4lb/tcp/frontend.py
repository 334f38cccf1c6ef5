"""
A frontend's runtime state and the factory its listening ports use.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory

from l4lb.config.model import Backend as BackendSpec
from l4lb.config.model import Frontend as FrontendSpec
from l4lb.eventrate import EventRate
from l4lb.pool import BackendState
from l4lb.tcp.limits import Gate
from l4lb.tcp.legs import ClientLeg


class FrontendState:
    """
    A running frontend.

    @ivar spec: Its configuration.
    @ivar name: Its name.
    @ivar backend: The L{BackendState} its connections go to.
    @ivar backend_spec: That backend's configuration (timeouts, retries).
    @ivar gate: Its share of the connection limits.
    @ivar reactor: The reactor its sessions use for time and connections.
    @ivar sink: Where its connection logs go (C{None}: not logged).
    @ivar total: Connections accepted since start.
    @ivar bytes_in: Bytes from clients relayed by its ended connections.
    @ivar bytes_out: Bytes to clients relayed by its ended connections.
    @ivar lean: Whether its established connections may use the lean data
        path (L{l4lb.tcp.lean}) where the platform allows.
    @ivar stages: The L{l4lb.interfaces.IClientStage}s each new connection
        goes through before a server is chosen, in order.
    @ivar inspect_delay: Seconds a stage may wait for the client's bytes
        (C{tcp-request inspect-delay}), or C{None} for no limit.
    @ivar denied: Connections refused by a stage's rule (stats C{dcon}).
    @ivar session_rate: Its new connections per second
        (L{l4lb.eventrate.EventRate}; stats C{rate}, C{rate_max}).
    @ivar max_current: The most connections it had open at once (stats
        C{smax}).
    """

    def __init__(
        self,
        spec: FrontendSpec,
        backend: BackendState,
        gate: Gate,
        reactor: Any,
        sink: Optional[Any],
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.backend = backend
        self.backend_spec: BackendSpec = backend.spec
        self.gate = gate
        self.reactor = reactor
        self.sink = sink if spec.log else None
        self.total = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.lean = True
        self.stages: List[Any] = []
        self.inspect_delay: Optional[float] = (
            spec.inspect_delay if spec.inspect_delay is not None else spec.timeouts.client
        )
        self.denied = 0
        self.session_rate = EventRate()
        self.max_current = 0

    @property
    def current(self) -> int:
        """
        Connections open on this frontend now.
        """
        return self.gate.current


class FrontendFactory(Factory):
    """
    Builds a L{ClientLeg} for each accepted connection of one bind of a
    frontend.

    @ivar first: The stages of this bind only (reading a PROXY header),
        which its connections go through before the frontend's.
    """

    noisy = False

    def __init__(self, frontend: FrontendState, first: Sequence[Any] = ()) -> None:
        self.frontend = frontend
        self.first = list(first)

    def buildProtocol(self, addr: Optional[IAddress]) -> ClientLeg:
        """
        Make the protocol of one accepted connection.
        """
        leg = ClientLeg()
        leg.frontend = self.frontend
        if self.first:
            leg.stages = self.first + self.frontend.stages
        return leg
