"""
What every balancing algorithm shares: L{BalancerBase}, with no-op hooks and
the choice of candidate servers, and L{BalancerFactory}, the plugin object
that names an algorithm.
"""

from __future__ import annotations

from typing import Callable, Container, List, Optional, Sequence, Tuple

import attr
from twisted.plugin import IPlugin
from zope.interface import implementer

from l4lb.interfaces import IBalancer, IBalancerFactory
from l4lb.pool import Server


class BalancerArgumentError(ValueError):
    """
    The arguments after C{balance = NAME} are not valid for that algorithm.

    @ivar name: The algorithm's name.
    @ivar arguments: The arguments as written.
    @ivar reason: Why they are refused, including the allowed values.
    """

    def __init__(self, name: str, args: Tuple[str, ...], reason: str) -> None:
        self.name = name
        self.arguments = args
        self.reason = reason
        super().__init__(f"balance {name}({', '.join(args)}): {reason}")


@implementer(IBalancer)
class BalancerBase:
    """
    A base for balancers: every L{IBalancer} hook as a no-op, and
    L{candidates}, which applies HAProxy's rules about which servers may be
    chosen at all.

    Subclasses set L{name}, implement L{pick} and override the hooks they
    need.  The servers are split into active and backup ones once, when the
    balancer is built; everything else (state, weight, connection counts) is
    read live from the L{Server} objects at each pick.

    @cvar name: The algorithm's name.
    @cvar needs_client_address: Whether L{pick} uses the client's address.
    @ivar servers: The backend's servers, in file order.
    @ivar args: The arguments written after the algorithm's name.
    @ivar allbackups: Whether every eligible backup server is used when no
        active server is (HAProxy's C{option allbackups}) rather than the
        first one only.
    """

    name: str = ""
    needs_client_address: bool = False

    def __init__(
        self,
        servers: Sequence[Server],
        args: Tuple[str, ...] = (),
        allbackups: Optional[bool] = None,
    ) -> None:
        """
        @param servers: The backend's servers, in file order.
        @param args: The arguments written after the algorithm's name.
        @param allbackups: Use every eligible backup rather than the first
            one; C{None} takes the setting of the servers' backend, or
            C{False} when they have none.
        """
        self.servers: Tuple[Server, ...] = tuple(servers)
        self.args = args
        if allbackups is None:
            allbackups = _backend_allbackups(self.servers)
        self.allbackups = allbackups
        self._active = tuple(s for s in self.servers if not s.spec.backup)
        self._backups = tuple(s for s in self.servers if s.spec.backup)

    def candidates(self, avoid: Container[Server] = ()) -> List[Server]:
        """
        Return the servers a new connection may go to now, in file order.

        These are the servers that are eligible (up, ready, non-zero
        weight, resolved), not at their C{maxconn} and not in C{avoid},
        taken from the active servers when at least one of those is
        eligible, otherwise from the backup servers: the first eligible one
        only, or all of them with C{allbackups}.  When C{avoid} rules out
        every one of them, C{avoid} is ignored, so that a retry may return
        to the only server left.

        Active servers that are eligible but all full give an empty list:
        the connection waits for a slot rather than spilling over to the
        backups, as in HAProxy.

        @param avoid: Servers not to choose unless nothing else is left.
        @return: A new list, empty when no server may be chosen.
        """
        tier = self._tier()
        found = [s for s in tier if s.eligible and not s.full and s not in avoid]
        if not found and avoid:
            found = [s for s in tier if s.eligible and not s.full]
        return found

    def _tier(self) -> Sequence[Server]:
        """
        Return the servers that L{candidates} chooses from: the active ones
        while any is eligible, otherwise the backup ones that may be used.
        """
        for server in self._active:
            if server.eligible:
                return self._active
        if self.allbackups:
            return self._backups
        for server in self._backups:
            if server.eligible:
                return (server,)
        return ()

    def pick(
        self, client_address: Optional[str], avoid: Container[Server]
    ) -> Optional[Server]:
        """
        Choose a server for a new connection; see L{IBalancer.pick}.

        @raise NotImplementedError: Always; subclasses implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement pick")

    def server_up(self, server: Server) -> None:
        """
        C{server} became eligible.  Does nothing.
        """

    def server_down(self, server: Server) -> None:
        """
        C{server} stopped being eligible.  Does nothing.
        """

    def weight_changed(self, server: Server) -> None:
        """
        C{server}'s effective weight changed.  Does nothing.
        """

    def connection_taken(self, server: Server) -> None:
        """
        A connection to C{server} was counted.  Does nothing.
        """

    def connection_dropped(self, server: Server) -> None:
        """
        A connection to C{server} ended.  Does nothing.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} over {len(self.servers)} servers>"


def _backend_allbackups(servers: Sequence[Server]) -> bool:
    """
    Return the C{allbackups} setting of the backend C{servers} belong to,
    or C{False} when they belong to none.
    """
    for server in servers:
        if server.backend is not None:
            return server.backend.spec.allbackups
    return False


@implementer(IPlugin, IBalancerFactory)
@attr.s(frozen=True, slots=True, auto_attribs=True)
class BalancerFactory:
    """
    The plugin for one algorithm: its name and the class that implements it.

    A plugin module creates one of these per algorithm at module level;
    L{l4lb.balancers.find_factory} finds it by C{name}.

    @ivar name: The name written after C{balance =}.
    @ivar balancer: What builds the balancer: a L{BalancerBase} subclass,
        or any callable taking C{(servers, args)} and returning an
        L{IBalancer} provider.
    @ivar description: One line for listings and documentation.
    """

    name: str
    balancer: Callable[[Sequence[Server], Tuple[str, ...]], IBalancer]
    description: str = ""

    def build(self, servers: Sequence[Server], args: Tuple[str, ...]) -> IBalancer:
        """
        Make a balancer over C{servers}.

        @param servers: The backend's servers, in file order.
        @param args: The arguments written after the algorithm's name.
        @raise BalancerArgumentError: When C{args} are not valid.
        """
        return self.balancer(servers, tuple(args))
