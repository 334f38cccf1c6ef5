"""
The queue of a backend: connections waiting for a free server slot.

When every server a new connection could go to is at its C{maxconn}, the
connection waits here, first come first served.  The queue is served
whenever a slot may have freed: a connection to one of the backend's
servers ended, or a server changed state (came up, left maintenance, got
a higher weight or C{maxconn}).  Each time, the connection at the head is
given to the balancer's choice, until the balancer finds no free server.

Its length is bounded by the servers' C{maxqueue}: the sum over the
eligible servers, or no bound when one of them has C{maxqueue 0} (the
default).  How long a connection may wait is the relay's business
(C{timeout queue}).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Deque, List, Optional, Protocol

from twisted.logger import Logger

if TYPE_CHECKING:
    from l4lb.pool import BackendState, Server


class Waiter(Protocol):
    """
    A connection that may wait in a L{WaitQueue}.
    """

    client_host: str

    def dequeued(self, server: "Server", served_before: int) -> None:
        """
        Leave the queue for C{server}; C{served_before} connections had
        left the queue for a server before this one, since start.
        """


__all__ = ["Waiter", "WaitQueue"]

_log = Logger(namespace="l4lb")


class WaitQueue:
    """
    Connections of one backend waiting for a free server slot, in arrival
    order.

    @ivar backend: The L{l4lb.pool.BackendState} it belongs to.
    @ivar max: The longest the queue has been (stats C{qmax}).
    @ivar total: Connections that entered it since start.
    @ivar served: Connections that left it for a server since start.
    """

    def __init__(self, backend: "BackendState") -> None:
        self.backend = backend
        self._waiting: Deque[Waiter] = deque()
        self.max = 0
        self.total = 0
        self.served = 0
        self._serving = False

    @property
    def current(self) -> int:
        """
        Connections waiting now (stats C{qcur}).
        """
        return len(self._waiting)

    def waiting(self) -> List[Waiter]:
        """
        The connections waiting now, oldest first.
        """
        return list(self._waiting)

    def limit(self) -> Optional[int]:
        """
        Return how many connections may wait: the sum of the eligible
        servers' C{maxqueue}, or C{None} for no limit (a server with
        C{maxqueue 0}, or no eligible server).
        """
        total = 0
        for server in self.backend.servers:
            if server.eligible:
                if server.spec.maxqueue == 0:
                    return None
                total += server.spec.maxqueue
        return total or None

    def add(self, waiter: Waiter) -> Optional[int]:
        """
        Put C{waiter} at the end of the queue.

        @return: The number of connections served so far (to count how many
            are served before it), or C{None} when the queue is at its
            limit and C{waiter} was not added.
        """
        limit = self.limit()
        if limit is not None and len(self._waiting) >= limit:
            return None
        self._waiting.append(waiter)
        self.total += 1
        if len(self._waiting) > self.max:
            self.max = len(self._waiting)
        return self.served

    def remove(self, waiter: Waiter) -> None:
        """
        Take C{waiter} out of the queue (it timed out or its client left);
        nothing happens when it is not there.
        """
        try:
            self._waiting.remove(waiter)
        except ValueError:
            pass

    def hand_over(self, successor: "WaitQueue") -> None:
        """
        Move the waiting connections, in order, and the counters to
        C{successor}, the queue of the backend a reload built to replace
        this one's; each waiting connection's C{backend} becomes the
        successor's.
        """
        for waiter in self._waiting:
            if getattr(waiter, "backend", None) is self.backend:
                waiter.backend = successor.backend  # type: ignore[attr-defined]
        successor._waiting.extend(self._waiting)
        self._waiting.clear()
        successor.max = max(successor.max, self.max)
        successor.total += self.total
        successor.served += self.served

    def __contains__(self, waiter: object) -> bool:
        return waiter in self._waiting

    def serve(self, server: "Optional[Server]" = None) -> None:
        """
        Give waiting connections, oldest first, to the servers the balancer
        chooses, until it finds none free.  Usable as a backend listener.

        @param server: The server whose state changed, if any; unused.
        """
        if self._serving or not self._waiting:
            return
        self._serving = True
        try:
            backend = self.backend
            while self._waiting:
                head = self._waiting[0]
                chosen = backend.pick(head.client_host, ())
                if chosen is None:
                    break
                self._waiting.popleft()
                self.served += 1
                try:
                    head.dequeued(chosen, self.served - 1)
                except Exception:
                    _log.failure("l4lb: a queued connection failed to leave the queue")
        finally:
            self._serving = False
