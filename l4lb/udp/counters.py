"""
Counters of UDP traffic, kept per frontend, backend and server.

A session counts its own datagrams and bytes while it runs (the only
counting done per datagram) and adds them to its frontend's, backend's and
server's L{UdpCounters} when it ends; L{live} adds the sessions still
running, for the stats.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable


class UdpCounters:
    """
    Totals of UDP sessions and datagrams.

    @ivar sessions: Sessions started.
    @ivar datagrams_in: Datagrams from clients to servers.
    @ivar bytes_in: Bytes of those datagrams.
    @ivar datagrams_out: Datagrams from servers to clients.
    @ivar bytes_out: Bytes of those datagrams.
    @ivar dropped: Datagrams not delivered: a send error (full socket
        buffer, datagram too large), no server available, no socket for a
        new session.
    @ivar refused: ICMP port unreachable answers from servers.
    @ivar evicted: Sessions ended to make room at C{maxsessions}.
    """

    __slots__ = (
        "sessions",
        "datagrams_in",
        "bytes_in",
        "datagrams_out",
        "bytes_out",
        "dropped",
        "refused",
        "evicted",
    )

    def __init__(self) -> None:
        self.sessions = 0
        self.datagrams_in = 0
        self.bytes_in = 0
        self.datagrams_out = 0
        self.bytes_out = 0
        self.dropped = 0
        self.refused = 0
        self.evicted = 0

    def add_traffic(self, session: Any) -> None:
        """
        Add the datagrams, bytes and drops of a session.
        """
        self.datagrams_in += session.datagrams_in
        self.bytes_in += session.bytes_in
        self.datagrams_out += session.datagrams_out
        self.bytes_out += session.bytes_out
        self.dropped += session.dropped

    def as_dict(self) -> Dict[str, int]:
        """
        The counters by name.
        """
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        values = " ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return f"<UdpCounters {values}>"


def live(counters: UdpCounters, running: Iterable[Any]) -> UdpCounters:
    """
    The totals including the traffic of sessions still running.

    @param counters: The totals of ended sessions.
    @param running: The sessions still running.
    @return: A new L{UdpCounters}.
    """
    total = UdpCounters()
    for name in UdpCounters.__slots__:
        setattr(total, name, getattr(counters, name))
    for session in running:
        total.add_traffic(session)
    return total
