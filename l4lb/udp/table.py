"""
The UDP session table: which sessions exist, which was active last, which
have been idle too long, and the cap on their number.

It is a pure data structure: it never reads a clock nor arms a timer.  The
caller passes C{now}, keeps C{last_activity} on each session up to date and
calls L{SessionTable.touch} after each datagram, which keeps the sessions
ordered from least to most recently active.  Expiring idle sessions is then
a walk from the front that stops at the first live one, and the session to
evict at the cap is the first one.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Iterator, List, Optional, Protocol, TypeVar


class Expiring(Protocol):
    """
    What the table needs of a session.
    """

    last_activity: float


S = TypeVar("S", bound=Expiring)


class SessionTable(Generic[S]):
    """
    Sessions ordered by last activity, with an idle timeout and a cap.

    @ivar capacity: The most sessions the table holds.
    @ivar idle_timeout: Seconds a session may stay idle.
    """

    def __init__(self, capacity: int, idle_timeout: float) -> None:
        """
        @param capacity: The most sessions the table holds (>= 1).
        @param idle_timeout: Seconds a session may stay idle (> 0).
        """
        if capacity < 1:
            raise ValueError(f"capacity {capacity} must be >= 1")
        if idle_timeout <= 0:
            raise ValueError(f"idle timeout {idle_timeout} must be > 0")
        self.capacity = capacity
        self.idle_timeout = idle_timeout
        self._sessions: "OrderedDict[S, None]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[S]:
        return iter(list(self._sessions))

    def __contains__(self, session: object) -> bool:
        return session in self._sessions

    @property
    def full(self) -> bool:
        """
        Whether the table is at its capacity.
        """
        return len(self._sessions) >= self.capacity

    def add(self, session: S) -> None:
        """
        Add a session as the most recently active one.

        @raise OverflowError: When the table is full; the caller decides
            what to evict or drop first.
        """
        if self.full:
            raise OverflowError(f"the table holds {self.capacity} sessions")
        self._sessions[session] = None

    def touch(self, session: S) -> None:
        """
        Mark a session as the most recently active one (after a datagram in
        either direction).  Constant time, allocates nothing.
        """
        self._sessions.move_to_end(session)

    def remove(self, session: S) -> bool:
        """
        Remove a session.

        @return: Whether it was in the table.
        """
        return self._sessions.pop(session, 0) is None

    def oldest(self) -> Optional[S]:
        """
        The least recently active session, or C{None} when empty.
        """
        for session in self._sessions:
            return session
        return None

    def expire(self, now: float) -> List[S]:
        """
        Remove every session idle for at least the idle timeout at C{now}.

        @return: The removed sessions, least recently active first.
        """
        expired: List[S] = []
        limit = now - self.idle_timeout
        sessions = self._sessions
        while sessions:
            session = next(iter(sessions))
            if session.last_activity > limit:
                break
            del sessions[session]
            expired.append(session)
        return expired

    def next_deadline(self) -> Optional[float]:
        """
        When the least recently active session expires if nothing happens,
        or C{None} when the table is empty.
        """
        oldest = self.oldest()
        if oldest is None:
            return None
        return oldest.last_activity + self.idle_timeout
