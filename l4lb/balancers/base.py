"""
What every balancing algorithm shares: L{BalancerBase}, with no-op hooks and
the choice of candidate servers, and L{BalancerFactory}, the plugin object
that names an algorithm.
"""

from __future__ import annotations

from typing import Any, Callable, Container, List, Optional, Sequence, Tuple

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


# Misses of a walk after which it checks whether any server is usable.
_MISSES_BEFORE_CHECK = 16


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
    @cvar dynamic_weights: Whether a weight change takes effect at once
        without reshuffling the clients (so C{slowstart} ramps weights).
    @ivar servers: The backend's servers, in file order.
    @ivar args: The arguments written after the algorithm's name.
    @ivar allbackups: Whether every eligible backup server is used when no
        active server is (HAProxy's C{option allbackups}) rather than the
        first one only.
    """

    name: str = ""
    needs_client_address: bool = False
    dynamic_weights: bool = True

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
        self.check_args(args)
        self.servers: Tuple[Server, ...] = tuple(servers)
        self.args = args
        if allbackups is None:
            allbackups = _backend_allbackups(self.servers)
        self.allbackups = allbackups
        self._active = tuple(s for s in self.servers if not s.spec.backup)
        self._backups = tuple(s for s in self.servers if s.spec.backup)
        self.setup()

    def setup(self) -> None:
        """
        Build the algorithm's own state once the servers and arguments are
        known (called last by C{__init__}); the base has none.
        """

    @classmethod
    def check_args(cls, args: Tuple[str, ...]) -> None:
        """
        Check the arguments written after the algorithm's name, when the
        configuration is read.  The base accepts any; an algorithm that
        takes none or a few overrides this; C{__init__} calls it too.

        @raise BalancerArgumentError: When C{args} are not valid.
        """

    def usable(self, server: Server, avoid: Container[Server] = ()) -> bool:
        """
        Whether C{server} may take a new connection now: eligible, not at
        its C{maxconn} and not in C{avoid}.  It does not look at backups;
        see L{candidates} for the whole rule.
        """
        return server.eligible and not server.full and server not in avoid

    def active_in_use(self) -> bool:
        """
        Whether the active servers are the ones to choose from now (at
        least one is eligible) rather than the backups.  Usually true at
        the first server looked at.
        """
        for server in self._active:
            if server.eligible:
                return True
        return False

    def fallback(self, avoid: Container[Server]) -> Optional[Server]:
        """
        Return the first of L{candidates}, or C{None}: what an algorithm
        with an index of its own returns when the index offers no usable
        server (all avoided, a stale index).
        """
        found = self.candidates(avoid)
        return found[0] if found else None

    def walk(
        self, entries: Sequence[Server], start: int, avoid: Container[Server] = ()
    ) -> Optional[Server]:
        """
        Return the first usable server of C{entries} (a hash table or
        ring's owners) from index C{start} on, going round; when there is
        none, L{fallback}.

        After a few misses it checks that some server is usable at all, so
        that a backend whose servers are all full does not cost a walk over
        the whole table.
        """
        size = len(entries)
        index = start
        for step in range(size):
            server = entries[index]
            if server.eligible and not server.full and server not in avoid:
                return server
            index += 1
            if index == size:
                index = 0
            if step == _MISSES_BEFORE_CHECK:
                found = self.candidates(avoid)
                if not found or found[0] in avoid:
                    break
        return self.fallback(avoid)

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


def backend_setting(servers: Sequence[Server], name: str, default: Any) -> Any:
    """
    Return the setting C{name} (an attribute of L{l4lb.config.model.Backend},
    such as C{hash_type}) of the backend C{servers} belong to, or
    C{default} when they belong to none.
    """
    for server in servers:
        if server.backend is not None:
            return getattr(server.backend.spec, name)
    return default


def no_arguments(name: str, args: Tuple[str, ...]) -> None:
    """
    Refuse any argument after the algorithm C{name}.

    @raise BalancerArgumentError: When C{args} is not empty.
    """
    if args:
        raise BalancerArgumentError(name, args, "takes no arguments")


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

    def check_args(self, args: Tuple[str, ...]) -> None:
        """
        Check the arguments when the configuration is read, through the
        balancer class's C{check_args} when it has one.

        @raise BalancerArgumentError: When C{args} are not valid.
        """
        check = getattr(self.balancer, "check_args", None)
        if check is not None:
            check(tuple(args))
