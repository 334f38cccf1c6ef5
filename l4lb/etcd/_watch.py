"""
Watching one prefix: list it, then follow its changes, through outages.

L{PrefixWatch} lists the prefix once, hands the listing to its
L{ServerSync <l4lb.etcd._sync.ServerSync>}, then watches from the next
revision.  When etcd cannot be reached or the stream ends, the servers stay
as last known (HAProxy's and gobetween's "keep last" rule), the outage is
logged once, and the watch is tried again after a growing delay, on the
next endpoint, from the revision it had reached: nothing that happened
meanwhile is missed.  Only when etcd has compacted that revision away is
the prefix listed again.
"""

from __future__ import annotations

import random
from typing import Any, Callable, List, Optional, Sequence, Tuple

from twisted.application.internet import backoffPolicy
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed

from l4lb.etcd._gateway import IEtcdGateway, IWatchStream, WatchMessage
from l4lb.etcd._sync import ServerSync

_log = Logger(namespace="l4lb")

#: The delay before the first retry, its growth and its ceiling, in seconds.
FIRST_RETRY = 0.5
RETRY_FACTOR = 2.0
MAX_RETRY = 10.0


def default_backoff() -> Callable[[int], float]:
    """
    The delay before retry number N (0 first): 0.5s doubling up to 10s,
    plus up to a quarter of a second so that many balancers restarted
    together do not all call etcd at the same instant.
    """
    return backoffPolicy(FIRST_RETRY, MAX_RETRY, RETRY_FACTOR, jitter=lambda: random.random() / 4)


def reason_text(reason: Failure) -> str:
    """
    What went wrong, in a few words for the log.
    """
    if reason.check(ResponseFailed):
        reasons = reason.value.reasons
        if reasons:
            return reason_text(reasons[0])
    if reason.check(ResponseDone):
        # A clean end of the stream: etcd stopping, or a proxy between.
        return "etcd closed the watch"
    return reason.getErrorMessage() or reason.type.__name__


class PrefixWatch:
    """
    Keeps one backend's servers as the keys under one prefix say.

    @ivar spec: The backend's L{l4lb.config.model.ServersFrom}.
    @ivar sync: What turns keys into servers.
    @ivar revision: The store's revision the servers reflect (0: never
        listed).
    @ivar unreachable_since: When etcd became unreachable (clock
        seconds), or C{None} while it answers.
    @ivar error: Why it is unreachable.
    """

    def __init__(
        self,
        spec: Any,
        sync: ServerSync,
        gateways: Sequence[IEtcdGateway],
        clock: Any,
        backoff: Optional[Callable[[int], float]] = None,
    ) -> None:
        self.spec = spec
        self.sync = sync
        self._gateways: List[IEtcdGateway] = list(gateways)
        self._clock = clock
        self._backoff = backoff or default_backoff()
        self.revision = 0
        self.unreachable_since: Optional[float] = None
        self.error = ""
        self._listed = False
        self._attempt = 0
        self._current = 0
        self._stream: Optional[IWatchStream] = None
        self._retry: Any = None
        self._running = False
        self._generation = 0

    @property
    def prefix(self) -> str:
        """
        The watched prefix.
        """
        return str(self.spec.prefix)

    @property
    def endpoints(self) -> Tuple[str, ...]:
        """
        The client URLs it tries, in turn.
        """
        return tuple(str(getattr(g, "endpoint", "etcd")) for g in self._gateways)

    @property
    def endpoint(self) -> str:
        """
        The endpoint in use (or tried last).
        """
        return str(getattr(self._gateways[self._current], "endpoint", "etcd"))

    def start(self) -> None:
        """
        List the prefix and watch it.
        """
        if self._running:
            return
        self._running = True
        self._connect()

    def stop(self) -> None:
        """
        Stop watching; the servers stay as they are.
        """
        self._running = False
        self._generation += 1
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
        self.sync.stop()

    # -- the cycle ------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if not self._running:
            return
        generation = self._generation
        gateway = self._gateways[self._current]
        if self._listed:
            self._watch(gateway, generation)
            return
        d = gateway.list_prefix(self.prefix)

        def listed(result: Any) -> None:
            if generation != self._generation:
                return
            revision, values = result
            self._reachable()
            self.sync.replace_all(values, self.prefix)
            self.revision = revision
            self._listed = True
            self._watch(gateway, generation)

        def failed(reason: Failure) -> None:
            if generation == self._generation:
                self._unreachable(reason)

        d.addCallbacks(listed, failed)

    def _watch(self, gateway: IEtcdGateway, generation: int) -> None:
        stream = gateway.watch_prefix(
            self.prefix,
            self.revision + 1,
            lambda message: self._received(message, generation),
        )
        self._stream = stream

        def ended(result: Any) -> None:
            if generation != self._generation:
                return
            self._stream = None
            if not self._listed:
                # Compacted: list again at once, this is no outage.
                self._connect()
                return
            if isinstance(result, Failure):
                self._unreachable(result)
            else:
                self._unreachable(Failure(ConnectionError("etcd ended the watch")))

        stream.ended().addBoth(ended)

    def _received(self, message: WatchMessage, generation: int) -> None:
        if generation != self._generation:
            return
        if message.compacted:
            _log.info(
                "Backend {backend}: etcd compacted its history past revision"
                " {revision}; listing {prefix} again.",
                backend=self.sync.backend,
                revision=self.revision,
                prefix=self.prefix,
            )
            self._listed = False
            if self._stream is not None:
                self._stream.stop()
            return
        if message.created:
            self._reachable()
        if message.canceled:
            if self._stream is not None:
                self._stream.stop()
            return
        for event in message.events:
            if event.kind == "DELETE":
                self.sync.delete_key(event.key, self.prefix)
            else:
                self.sync.put_key(event.key, event.value, self.prefix)
            self.revision = max(self.revision, event.revision)
        if not message.events and not message.created and message.revision:
            # A progress report: every change up to it has been sent.
            self.revision = max(self.revision, message.revision)

    # -- outages --------------------------------------------------------------

    def _reachable(self) -> None:
        self._attempt = 0
        if self.unreachable_since is None:
            return
        _log.info(
            "Backend {backend}: etcd {endpoint} answers again after {seconds:.1f}s;"
            " watching {prefix} from revision {revision}.",
            backend=self.sync.backend,
            endpoint=self.endpoint,
            seconds=self._clock.seconds() - self.unreachable_since,
            prefix=self.prefix,
            revision=self.revision + 1,
        )
        self.unreachable_since = None
        self.error = ""

    def _unreachable(self, reason: Failure) -> None:
        if not self._running:
            return
        self.error = reason_text(reason)
        if self.unreachable_since is None:
            self.unreachable_since = self._clock.seconds()
            _log.warn(
                "Backend {backend}: etcd {endpoint} is unreachable ({error}); its"
                " {count} server(s) from etcd stay as last known; retrying.",
                backend=self.sync.backend,
                endpoint=self.endpoint,
                error=self.error,
                count=len(self.sync.known),
            )
        delay = self._backoff(self._attempt)
        self._attempt += 1
        self._current = (self._current + 1) % len(self._gateways)
        self._retry = self._clock.callLater(delay, self._connect)
