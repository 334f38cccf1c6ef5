"""
The stick table: per source address, the connections open now
(C{conn_cur}) and the rate of new connections over a period
(C{conn_rate(PERIOD)}), with a size cap and an expiry.

The table is pure: every method that needs the time takes C{now}.

Entries are kept in the order they were last seen.  An entry expires once
it has not been seen for C{expire} seconds and has no open connection.
When the table is full, a new source takes the place of the least recently
seen entry that has no open connection; entries with open connections are
never dropped (their count must be released when the connections end).
When every entry has open connections, which can only happen when C{size}
is below the frontend's connection limit, the new source is not tracked:
its connection is served without per-source limits, and counted in
L{StickTable.untracked}.

Why the least recently seen: a flood of many sources (each costing the
sender a completed TCP handshake, since a spoofed source cannot complete
one) only replaces sources quieter than itself.  A source that keeps
connecting, as one over a rate limit does, is always among the most
recently seen: to push it out, a flood must bring C{size} new sources
between two of its connections.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Iterator, Optional, Tuple

from l4lb.protect.cidr import AddressKey

_V6 = 1 << 128


class Entry:
    """
    What the table knows of one source.

    @ivar key: The table key (L{StickTable.key}).
    @ivar conn_cur: Its connections open now.
    @ivar conn_cnt: Its connections since it entered the table.
    @ivar seen: When it was last seen (a connection began or ended).
    """

    __slots__ = ("key", "conn_cur", "conn_cnt", "seen", "rate_start", "rate_curr", "rate_prev")

    def __init__(self, key: int, now: float) -> None:
        self.key = key
        self.conn_cur = 0
        self.conn_cnt = 0
        self.seen = now
        self.rate_start = now
        self.rate_curr = 0
        self.rate_prev = 0


class StickTable:
    """
    A bounded table of per-source counters.

    @ivar size: The most entries it holds.
    @ivar expire: Seconds after which an idle entry is dropped.
    @ivar period: The period of the connection rate, in seconds.
    @ivar v6_prefix: IPv6 sources are keyed on this many leading bits (128:
        the full address; 64: one entry per /64 network).
    @ivar untracked: Connections that found the table full of entries with
        open connections, and were not tracked.
    @ivar evicted: Entries dropped to make room before they expired.
    """

    def __init__(self, size: int, expire: float, period: float, v6_prefix: int = 128) -> None:
        if size < 1 or expire <= 0 or period <= 0 or not 1 <= v6_prefix <= 128:
            raise ValueError("size >= 1, expire > 0, period > 0 and 1 <= v6_prefix <= 128")
        self.size = size
        self.expire = expire
        self.period = period
        self.v6_prefix = v6_prefix
        self._v6_mask = ((1 << v6_prefix) - 1) << (128 - v6_prefix)
        self.untracked = 0
        self.evicted = 0
        self._entries: "OrderedDict[int, Entry]" = OrderedDict()

    @property
    def used(self) -> int:
        """
        Entries in the table now.
        """
        return len(self._entries)

    def key(self, address: AddressKey) -> int:
        """
        The table key of a source address (L{l4lb.protect.cidr.address_key}).
        """
        family, value = address
        if family == 4:
            return value
        return _V6 | (value & self._v6_mask)

    def lookup(self, key: int, now: float) -> Optional[Entry]:
        """
        The entry of C{key} if it is in the table, without counting anything.
        """
        self.expire_entries(now)
        return self._entries.get(key)

    def track(self, key: int, now: float) -> Optional[Entry]:
        """
        Count a new connection from C{key} in its connection rate, adding an
        entry for it when there is none.

        @return: The entry, or C{None} when the table is full of entries
            with open connections.
        """
        self.expire_entries(now)
        entries = self._entries
        entry = entries.get(key)
        if entry is None:
            if len(entries) >= self.size and not self._evict(now):
                self.untracked += 1
                return None
            entry = entries[key] = Entry(key, now)
        else:
            entries.move_to_end(key)
            entry.seen = now
        self._roll(entry, now)
        entry.rate_curr += 1
        entry.conn_cnt += 1
        return entry

    def acquire(self, entry: Entry) -> None:
        """
        A connection of C{entry}'s source is open.
        """
        entry.conn_cur += 1

    def release(self, entry: Entry, now: float) -> None:
        """
        A connection of C{entry}'s source ended; the source counts as seen.
        """
        entry.conn_cur -= 1
        entry.seen = now
        if self._entries.get(entry.key) is entry:
            self._entries.move_to_end(entry.key)

    def conn_rate(self, entry: Entry, now: float) -> float:
        """
        The source's new connections over the last period, as HAProxy
        reckons it: those of the current period plus the previous period's
        weighted by how much of it is still within the last C{period}
        seconds.
        """
        self._roll(entry, now)
        remaining = self.period - (now - entry.rate_start)
        return entry.rate_curr + entry.rate_prev * remaining / self.period

    def expire_entries(self, now: float) -> None:
        """
        Drop the entries not seen for C{expire} seconds that have no open
        connection.
        """
        entries = self._entries
        limit = now - self.expire
        while entries:
            entry = next(iter(entries.values()))
            if entry.seen > limit:
                return
            del entries[entry.key]
            if entry.conn_cur:
                # In use: it stays, as if seen now.
                entry.seen = now
                entries[entry.key] = entry

    def entries(self) -> Iterator[Entry]:
        """
        The entries, least recently seen first.
        """
        return iter(list(self._entries.values()))

    def describe(self, key: int) -> str:
        """
        The source of a key as text (an IPv6 network when keyed on a
        prefix).
        """
        if key < _V6:
            return str(ipaddress.IPv4Address(key))
        address = ipaddress.IPv6Address(key & (_V6 - 1))
        if self.v6_prefix < 128:
            return f"{address}/{self.v6_prefix}"
        return str(address)

    def _evict(self, now: float) -> bool:
        entries = self._entries
        for _ in range(len(entries)):
            key, entry = entries.popitem(last=False)
            if not entry.conn_cur:
                self.evicted += 1
                return True
            entry.seen = now
            entries[key] = entry
        return False

    def _roll(self, entry: Entry, now: float) -> None:
        period = self.period
        elapsed = now - entry.rate_start
        if elapsed >= period:
            entry.rate_prev = entry.rate_curr if elapsed < 2 * period else 0
            entry.rate_curr = 0
            entry.rate_start += period * (elapsed // period)


def entry_line(table: StickTable, entry: Entry, now: float) -> Tuple[str, str]:
    """
    A line describing an entry as C{show table} lists it, HAProxy's way.

    @return: The source as text and the line.
    """
    source = table.describe(entry.key)
    left = table.expire if entry.conn_cur else entry.seen + table.expire - now
    expires_ms = max(0, int(left * 1000))
    rate = int(table.conn_rate(entry, now))
    line = (
        f"key={source} use={entry.conn_cur} exp={expires_ms}"
        f" conn_cnt={entry.conn_cnt} conn_cur={entry.conn_cur}"
        f" conn_rate({int(table.period * 1000)})={rate}"
    )
    return source, line
