"""
The UDP session table: ordering by activity, idle expiry, the cap.
"""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l4lb.udp.table import SessionTable


class Entry:
    """
    A session as the table sees it.
    """

    def __init__(self, name: str, last_activity: float) -> None:
        self.name = name
        self.last_activity = last_activity

    def __repr__(self) -> str:
        return f"<Entry {self.name} {self.last_activity}>"


def test_expire_removes_only_idle_sessions_oldest_first() -> None:
    """Sessions idle for the timeout or longer are removed, in activity order; the others stay."""
    table: SessionTable[Entry] = SessionTable(10, 5.0)
    a, b, c = Entry("a", 0.0), Entry("b", 1.0), Entry("c", 3.0)
    for e in (a, b, c):
        table.add(e)
    assert table.expire(6.0) == [a, b]
    assert list(table) == [c]
    assert table.expire(7.9) == []
    assert table.expire(8.0) == [c]
    assert len(table) == 0


def test_touch_keeps_a_refreshed_session() -> None:
    """A touched session moves behind the others, so expiry stops before it."""
    table: SessionTable[Entry] = SessionTable(10, 5.0)
    a, b = Entry("a", 0.0), Entry("b", 1.0)
    table.add(a)
    table.add(b)
    a.last_activity = 4.0
    table.touch(a)
    assert table.oldest() is b
    assert table.expire(6.0) == [b]
    assert list(table) == [a]


def test_next_deadline_is_the_oldest_sessions_expiry() -> None:
    """The next deadline is when the least recently active session expires; none when empty."""
    table: SessionTable[Entry] = SessionTable(10, 5.0)
    assert table.next_deadline() is None
    table.add(Entry("a", 2.0))
    table.add(Entry("b", 3.0))
    assert table.next_deadline() == 7.0


def test_full_table_refuses_a_session() -> None:
    """At its capacity the table says it is full and refuses another session."""
    table: SessionTable[Entry] = SessionTable(2, 5.0)
    table.add(Entry("a", 0.0))
    assert not table.full
    table.add(Entry("b", 0.0))
    assert table.full
    with pytest.raises(OverflowError):
        table.add(Entry("c", 0.0))


def test_remove_reports_whether_present() -> None:
    """Removing a session reports whether it was there, and removing twice is harmless."""
    table: SessionTable[Entry] = SessionTable(2, 5.0)
    a = Entry("a", 0.0)
    table.add(a)
    assert table.remove(a)
    assert not table.remove(a)
    assert a not in table


def test_bad_limits_are_refused() -> None:
    """A capacity below 1 or a non-positive idle timeout is a programming error."""
    with pytest.raises(ValueError):
        SessionTable(0, 1.0)
    with pytest.raises(ValueError):
        SessionTable(1, 0.0)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 3)), max_size=60))
def test_expire_matches_a_brute_force_scan(steps: List[tuple]) -> None:
    """After any sequence of activity, expire removes exactly the sessions a full scan finds idle."""
    table: SessionTable[Entry] = SessionTable(100, 4.0)
    entries = {i: Entry(str(i), 0.0) for i in range(10)}
    now = 0.0
    for index, gap in steps:
        now += gap
        entry = entries[index]
        entry.last_activity = now
        if entry in table:
            table.touch(entry)
        else:
            table.add(entry)
    later = now + 2.0
    expected = {e.name for e in entries.values() if e in table and e.last_activity <= later - 4.0}
    expired = table.expire(later)
    assert {e.name for e in expired} == expected
    times = [e.last_activity for e in expired]
    assert times == sorted(times)
    assert all(e.last_activity > later - 4.0 for e in table)
