"""
The service that keeps servers where DNS says they are.

Each C{server-template} of a backend and each server with a host name and
C{resolvers} is a L{Watch}: its name is resolved every C{timeout resolve}
(never two resolutions of one watch at once), the answer goes through a
L{Resolution <l4lb.dns.records.Resolution>} (the C{hold} periods), and the
records are applied through the runtime API's methods
(L{IBalancerRuntime <l4lb.interfaces.IBalancerRuntime>}): a slot filled or
a server moved by C{set_server_address} (logged C{be/srv changed its IP
from A to B by DNS cache.}), an emptied slot put in maintenance by
C{set_server_admin} with the cause C{"resolvers"} (logged C{Server be/srv
is going DOWN for maintenance (No IP for server ).}) and taken out of it
when a record fills it again.  Established connections are never closed
by DNS: they finish where they are.

The watches' records outlive a reload: the watch of the same name, backend
and slots takes the records it had, so that a reload is a restart plus
what DNS said.  A server added at run time with C{resolvers} is watched
too, until C{del server} removes it or a reload drops it.

C{hold valid} does not stretch C{timeout resolve} (HAProxy removed that in
2019, commit f50e1ac, "timeout resolve not applied for valid
resolutions"): it is how long a valid answer is trusted when a health
check that could not connect asks for an early resolution
(L{DnsDiscovery.check_failed}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python.failure import Failure

from l4lb.config.dns import ResolversSpec
from l4lb.config.model import Config
from l4lb.dns.records import (
    OTHER,
    REASONS,
    VALID,
    Record,
    assign,
    follow,
    server_weight,
)
from l4lb.dns.watches import Watch, server_watch, watches_of
from l4lb.interfaces import IBalancerRuntime

_log = Logger(namespace="l4lb")

#: The cause given to the runtime API for what DNS changes.
CAUSE = "resolvers"
#: How an address change by DNS is written in the log (HAProxy's words).
ADDRESS_CAUSE = "DNS cache"

if TYPE_CHECKING:
    # l4lb.dns.client imports twisted.names: only a configuration with
    # resolvers loads it.
    from l4lb.dns.client import IDnsQuerier

    #: Makes the querier of a C{[resolvers]} section, given the reactor.
    QuerierFactory = Callable[[ResolversSpec, Any], IDnsQuerier]


def names_querier(spec: ResolversSpec, reactor: Any) -> IDnsQuerier:
    """
    The querier of a C{[resolvers]} section on C{twisted.names}
    (L{l4lb.dns.client.NamesQuerier}).
    """
    from l4lb.dns.client import NamesQuerier

    return NamesQuerier(spec, reactor)


class DnsDiscovery(Service):
    """
    Resolves the watched names and applies the answers (see the module's
    description).

    @ivar runtime: The running balancer.
    @ivar querier: Makes the querier of each C{[resolvers]} section
        (L{names_querier}; tests give a fake).
    @ivar watches: The watches in force, by L{Watch.key}: those of the
        file's servers and templates and those of the servers added at
        run time (L{server_added}).
    """

    def __init__(
        self,
        runtime: IBalancerRuntime,
        reactor: Any,
        querier: QuerierFactory = names_querier,
    ) -> None:
        self.runtime = runtime
        self.reactor = reactor
        self.querier = querier
        self._queriers: Dict[ResolversSpec, IDnsQuerier] = {}
        self.watches: Dict[Tuple[Any, ...], Watch] = {}
        self._warned = False
        self._claimed: Tuple[Any, Any] = (None, set())

    # -- which servers are ours ---------------------------------------------

    def claims(self, backend: str, server: str) -> bool:
        """
        Whether DNS gives C{backend/server} its address (so that nothing
        else resolves its host name).
        """
        # The configuration being run decides: a reload asks before the
        # watches of its configuration are made.
        config = self.runtime.config
        if self._shared():
            return False
        if self._claimed[0] is not config:
            names = {(w.backend, name) for w in watches_of(config) for name in w.names}
            self._claimed = (config, names)
        if (backend, server) in self._claimed[1]:
            return True
        return (backend, server) in self.runtime.added_servers and self._added(
            backend, server
        ) is not None

    def _added(self, backend: str, name: str) -> Optional[Watch]:
        """
        The watch of the server C{backend/name} added at run time, built
        from the spec it runs with, or C{None}.
        """
        try:
            server = self.runtime.find_server(backend, name)
        except KeyError:
            return None
        specs = {spec.name: spec for spec in self.runtime.config.resolvers}
        return server_watch(backend, server.spec, specs)

    def _wanted(self, config: Config) -> List[Watch]:
        """
        The watches of C{config} and of the servers added at run time that
        run with it.
        """
        found = watches_of(config)
        for backend, name in list(self.runtime.added_servers):
            watch = self._added(backend, name)
            if watch is not None:
                found.append(watch)
        return found

    # -- life cycle ----------------------------------------------------------

    def startService(self) -> None:
        """
        Put every watch in its starting state, then resolve at once.
        """
        super().startService()
        monitor = self.runtime.monitor
        if monitor is not None:
            monitor.connect_failures.append(self.check_failed)
        if self._shared():
            if watches_of(self.runtime.config):
                _log.error(
                    "DNS service discovery is not available with nbproc above 1:"
                    " servers with 'resolvers' are resolved once at start, and"
                    " server-template slots stay empty."
                )
            return
        self.apply(self.runtime.config)

    def _shared(self) -> bool:
        """
        Whether worker processes relay the connections (C{nbproc}): they
        cannot be told of a server's new address.
        """
        return getattr(self.runtime, "workers", None) is not None

    def stopService(self) -> Any:
        """
        Stop resolving.
        """
        for watch in self.watches.values():
            self._cancel(watch)
        monitor = self.runtime.monitor
        if monitor is not None and self.check_failed in monitor.connect_failures:
            monitor.connect_failures.remove(self.check_failed)
        return super().stopService()

    def apply(self, config: Config) -> None:
        """
        Take a new configuration (at start, or after a reload built its
        servers afresh): a watch that stays keeps its records and gives
        them to the new servers at once.
        """
        if self._shared():
            return
        fresh = {watch.key: watch for watch in self._wanted(config)}
        for key, watch in self.watches.items():
            self._cancel(watch)
            if key in fresh:
                kept = fresh[key]
                kept.resolution, kept.held = watch.resolution, watch.held
        self.watches = fresh
        self._queriers = {}
        for watch in fresh.values():
            self._settle(watch)
            if self.running:
                self._schedule(watch, 0.0)

    def server_added(self, backend: str, name: str) -> None:
        """
        C{add server} added C{backend/name}: with a host name and
        C{resolvers}, its name is watched from now on (its C{init-addr}
        first), as the servers of the file are.
        """
        if self._shared():
            return
        watch = self._added(backend, name)
        if watch is None or watch.key in self.watches:
            return
        self.watches[watch.key] = watch
        self._settle(watch)
        if self.running:
            self._schedule(watch, 0.0)

    def server_removed(self, backend: str, name: str) -> None:
        """
        C{del server} removed C{backend/name}: its name is no longer
        resolved.  (A reload that drops a server drops its watch in
        L{apply}.)
        """
        for key, watch in list(self.watches.items()):
            if not watch.template and watch.backend == backend and watch.names == (name,):
                self._cancel(watch)
                del self.watches[key]

    def _cancel(self, watch: Watch) -> None:
        if watch.call is not None and watch.call.active():
            watch.call.cancel()
        watch.call = None

    def _schedule(self, watch: Watch, delay: float) -> None:
        watch.call = self.reactor.callLater(delay, self._resolve, watch)

    def _settle(self, watch: Watch) -> None:
        """
        Give fresh servers what the watch knows: the records held, or, for
        a server with nothing yet, its C{init-addr}.
        """
        for name in watch.names:
            server = self._server(watch, name)
            if server is None:
                continue
            record = watch.held.get(name)
            if record is not None:
                self._fill(watch, server, record, quiet=True)
            elif name in watch.held:
                self._empty(watch, server, quiet=True)
            elif server.address is not None:
                # init-addr 'last': the server-state file gave it an
                # address; the first answer decides.
                continue
            elif watch.template:
                self._empty(watch, server, quiet=True)
            else:
                self._initial(watch, server)

    def _initial(self, watch: Watch, server: Any) -> None:
        """
        C{init-addr}: the first of C{last} (an address a reload or the
        state file gave), C{libc}, an IP address or C{none} that gives one.
        """
        for method in watch.options.init_addr:
            if method == "last":
                continue
            if method == "none":
                self._empty(watch, server, quiet=True)
                return
            if method == "libc":
                self._libc(watch, server)
                return
            self._place(server, method)
            return

    def _libc(self, watch: Watch, server: Any) -> None:
        from l4lb.config.resolve import resolve_host

        def resolved(address: Optional[str]) -> None:
            if address is not None and server.address is None:
                self._place(server, address)

        resolve_host(self.reactor.nameResolver, watch.fqdn, server.port).addCallbacks(
            resolved, lambda f: None
        )

    @staticmethod
    def _place(server: Any, address: str) -> None:
        # Before the first answer: the address is where the server starts,
        # not a change to log.
        server.address = address
        if server.eligible and server.backend is not None:
            server.backend.balancer.server_up(server)

    def _server(self, watch: Watch, name: str) -> Any:
        try:
            return self.runtime.find_server(watch.backend, name)
        except KeyError:
            return None

    # -- resolving -----------------------------------------------------------

    def _resolve(self, watch: Watch) -> None:
        watch.call = None
        if watch.busy or self.watches.get(watch.key) is not watch:
            return
        watch.busy = True
        querier = self._queriers.get(watch.spec)
        if querier is None:
            querier = self._queriers[watch.spec] = self.querier(watch.spec, self.reactor)
        d = querier.records(watch.fqdn, watch.srv, watch.options.prefer, watch.options.nets)

        def answered(records: List[Record]) -> None:
            now = self.reactor.seconds()
            if watch.resolution.status != VALID:
                _log.info(
                    "Resolvers {resolvers}: '{name}' resolves again.",
                    resolvers=watch.spec.name,
                    name=watch.fqdn,
                )
            self.update(watch, watch.resolution.answered(records, now))

        def failed(failure: Failure) -> None:
            now = self.reactor.seconds()
            from l4lb.dns.client import ResolutionFailed

            kind = failure.value.kind if failure.check(ResolutionFailed) else OTHER
            if watch.resolution.status != kind:
                # Once per change: a name server outage would log every
                # 'timeout resolve' otherwise.
                _log.warn(
                    "Resolvers {resolvers}: resolution of '{name}' failed ({reason});"
                    " the last valid answer is kept for {hold}s (hold {kind}).",
                    resolvers=watch.spec.name,
                    name=watch.fqdn,
                    reason=REASONS[kind],
                    hold=watch.spec.hold_for(kind),
                    kind=kind,
                )
            self.update(watch, watch.resolution.failed(kind, now))

        def done(result: Any) -> None:
            watch.busy = False
            if isinstance(result, Failure):
                _log.failure("DNS resolution of {name!r}", result, name=watch.fqdn)
            if self.running and self.watches.get(watch.key) is watch:
                self._schedule(watch, watch.spec.timeout_resolve)

        d.addCallbacks(answered, failed).addBoth(done)

    def check_failed(self, backend: Any, server: Any) -> None:
        """
        A health check of C{server} could not connect (C{L4CON},
        C{L4TOUT}): its address may have moved, so its name is resolved
        again at once rather than at the next C{timeout resolve}, unless
        the last answer was valid and is younger than C{hold valid}
        (HAProxy's C{resolv_trigger_resolution}).

        @param backend: The server's L{l4lb.pool.BackendState}.
        @param server: The L{l4lb.pool.Server}.
        """
        for watch in self.watches.values():
            if watch.backend == backend.name and server.name in watch.names:
                break
        else:
            return
        if watch.busy or not self.running:
            return
        resolution = watch.resolution
        if resolution.status == VALID and resolution.last_valid is not None:
            age = self.reactor.seconds() - resolution.last_valid
            if age < watch.spec.hold_for(VALID):
                return
        self._cancel(watch)
        self._schedule(watch, 0.0)

    def update(self, watch: Watch, records: Sequence[Record]) -> None:
        """
        Apply the records in force to the watch's servers.
        """
        if watch.template:
            slots = [watch.held.get(name) for name in watch.names]
            placed = assign(slots, records)
        else:
            placed = [self._followed(watch, records)]
        for name, record in zip(watch.names, placed):
            server = self._server(watch, name)
            watch.held[name] = record
            if server is None:
                continue
            if record is None:
                self._empty(watch, server)
            else:
                self._fill(watch, server, record)

    def _followed(self, watch: Watch, records: Sequence[Record]) -> Optional[Record]:
        server = self._server(watch, watch.names[0])
        current = None if server is None else server.address
        taken: List[str] = []
        if not watch.options.allow_dup_ip and server is not None and server.backend is not None:
            taken = [
                other.address
                for other in server.backend.servers
                if other is not server and other.address is not None
            ]
        address = follow(current, [r.address for r in records], taken)
        return None if address is None else Record(address)

    # -- applying ------------------------------------------------------------

    def _fill(self, watch: Watch, server: Any, record: Record, quiet: bool = False) -> None:
        port = record.port or watch.port or server.port
        if (server.address, server.port) != (record.address, port):
            if quiet and server.address is None:
                # A server built afresh by a reload takes back its record.
                server.port = port
                self._place(server, record.address)
            else:
                self._set_address(server, record.address, port)
        if record.weight is not None and not watch.options.ignore_weight:
            weight = server_weight(record.weight)
            if server.user_weight != weight:
                server.set_weight(weight)
        if server.admin == "maint" and server.admin_cause == CAUSE:
            self.runtime.set_server_admin(server, "ready", CAUSE)
            if not quiet:
                _log.warn(
                    "Server {backend}/{server} ('{fqdn}') is UP/READY (resolves again).",
                    backend=watch.backend,
                    server=server.name,
                    fqdn=record.target or watch.fqdn,
                )

    def _set_address(self, server: Any, address: str, port: int) -> None:
        try:
            self.runtime.set_server_address(server, address, port, ADDRESS_CAUSE)
        except Exception as error:
            if not self._warned:
                self._warned = True
                _log.error(
                    "DNS cannot move servers here ({error}); they keep their address.",
                    error=str(error),
                )

    def _empty(self, watch: Watch, server: Any, quiet: bool = False) -> None:
        if server.admin != "maint":
            self.runtime.set_server_admin(server, "maint", CAUSE)
            if not quiet:
                _log.warn(
                    "Server {backend}/{server} is going DOWN for maintenance ({reason}).",
                    backend=watch.backend,
                    server=server.name,
                    reason=watch.resolution.reason,
                )
        if watch.template and server.address is not None and not server.eligible:
            # As HAProxy clears a slot whose record went: neither a restart
            # from the state file nor an operator's 'ready' may send
            # connections to the address it had.
            server.address, server.port = None, watch.port
