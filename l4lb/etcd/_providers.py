"""
The watches of a running balancer: one per backend with C{servers-from}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from twisted.application.service import Service

from l4lb.interfaces import IBalancerRuntime

if TYPE_CHECKING:
    # The modules themselves are imported once a backend has servers-from:
    # they load Twisted's HTTP client.
    from l4lb.etcd._gateway import IEtcdGateway
    from l4lb.etcd._sync import ServerSync
    from l4lb.etcd._watch import PrefixWatch


class EtcdProviders(Service):
    """
    Starts, keeps and stops the L{PrefixWatch} of each backend whose
    configuration has C{servers-from = etcd ...}; a reload keeps a watch
    whose settings did not change (it goes on from its revision), and
    replaces one whose endpoints or prefix changed.

    @ivar watches: The running watches by backend name.
    """

    def __init__(
        self,
        runtime: IBalancerRuntime,
        clock: Any,
        gateway: Optional[Callable[[str], IEtcdGateway]] = None,
        backoff: Optional[Callable[[int], float]] = None,
    ) -> None:
        """
        @param runtime: The running balancer (L{l4lb.interfaces.IBalancerRuntime}).
        @param clock: The reactor: time, and TCP for the HTTP client.
        @param gateway: Makes the gateway of one endpoint URL (by default
            L{EtcdGateway} on C{clock}).
        @param backoff: The delay before retry number N, for every watch.
        """
        self.runtime = runtime
        self.clock = clock
        self._gateway = gateway or self._default_gateway
        self._backoff = backoff
        self.watches: Dict[str, PrefixWatch] = {}
        # What each backend's servers were last told, kept while its
        # watch is replaced by one on another prefix or endpoint.
        self._syncs: Dict[str, ServerSync] = {}

    def _default_gateway(self, url: str) -> IEtcdGateway:
        """
        The gateway of one endpoint URL: an L{EtcdGateway} on the clock.
        """
        from l4lb.etcd._gateway import EtcdGateway

        return EtcdGateway(self.clock, url)

    def startService(self) -> None:
        """
        Watch the prefixes of the running configuration.
        """
        super().startService()
        self.apply(self.runtime.config)

    def stopService(self) -> None:
        """
        Stop every watch; the servers stay.
        """
        super().stopService()
        for watch in self.watches.values():
            watch.stop()
        self.watches.clear()

    def apply(self, config: Any) -> None:
        """
        Watch what C{config} asks (at start and after a reload).
        """
        if not self.running:
            return
        wanted = {b.name: b.servers_from for b in config.backends if b.servers_from is not None}
        if not wanted and not self.watches:
            self._syncs = {}
            return
        from l4lb.etcd._sync import ServerSync
        from l4lb.etcd._watch import PrefixWatch

        for name in list(self.watches):
            if wanted.get(name) != self.watches[name].spec:
                self.watches.pop(name).stop()
        for name, spec in wanted.items():
            if name in self.watches:
                continue
            before = self._syncs.get(name)
            sync = before or ServerSync(self.runtime, name, self.clock)
            watch = PrefixWatch(
                spec, sync, [self._gateway(url) for url in spec.endpoints], self.clock, self._backoff
            )
            self.watches[name] = watch
            watch.start()
        self._syncs = {name: watch.sync for name, watch in self.watches.items()}

    def status(self) -> Tuple[int, int]:
        """
        How many prefixes are watched, and how many of them cannot reach
        etcd now (C{show info}).
        """
        down = sum(1 for w in self.watches.values() if w.unreachable_since is not None)
        return len(self.watches), down
