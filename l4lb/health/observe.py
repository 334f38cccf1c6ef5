"""
Passive health checks (C{observe layer4}): connection errors on live
traffic count against a server.

The relay tells a server's L{PassiveObserver} of every connection attempt
to that server that fails (refused, unreachable, timed out) and of every
one that succeeds.  A success resets the count; after C{error-limit}
consecutive failures the observer calls its action (C{on-error}: see
L{l4lb.health.server.ServerHealth.passive_limit_reached}) and starts
counting again.  The action runs from the reactor, not from inside the
relay's callback, so that it may close the very session that reported the
error.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IReactorTime


class PassiveObserver:
    """
    Counts consecutive connection errors of one server.

    @ivar limit: Consecutive errors that trigger the action.
    @ivar consecutive: Errors in a row so far.
    """

    __slots__ = ("limit", "consecutive", "_clock", "_action")

    def __init__(self, limit: int, clock: IReactorTime, action: Callable[[int], None]) -> None:
        """
        @param action: Called (soon, from the reactor) with the number of
            errors each time the limit is reached.
        """
        self.limit = limit
        self.consecutive = 0
        self._clock = clock
        self._action = action

    def connect_failed(self) -> None:
        """
        A connection attempt to the server failed.
        """
        self.consecutive += 1
        if self.consecutive >= self.limit:
            self.consecutive = 0
            self._clock.callLater(0, self._action, self.limit)

    def connect_succeeded(self) -> None:
        """
        A connection attempt to the server succeeded.
        """
        self.consecutive = 0
