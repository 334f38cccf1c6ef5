"""
Source address sets, the stick table, the source stage and the session
rate limit (L{l4lb.protect}), driven without sockets and with a fake clock.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from l4lb.config.model import SourceRule, StickTableSpec
from l4lb.config.protect import parse_rule
from l4lb.interfaces import IClientStage
from l4lb.protect.cidr import AddressSet, address_key, parse_range
from l4lb.protect.ratelimit import SessionRate
from l4lb.protect.stage import SourceStage, build_source_stage, make_table
from l4lb.protect.table import StickTable, entry_line
from l4lb.tcp.stages import StageRejected


class FakeSession:
    """
    What the source stage reads and writes on a session.
    """

    def __init__(self, host: str, clock: Clock) -> None:
        self.client_host = host
        self.seconds = clock.seconds
        self.on_end: Any = None

    def end(self) -> None:
        if self.on_end is not None:
            callback, self.on_end = self.on_end, None
            callback(self)


# -- address sets --------------------------------------------------------


def test_ipv4_ranges_match_their_addresses_only() -> None:
    """
    An address is in the set when it is in one of its ranges, the first and
    last addresses included.
    """
    s = AddressSet.from_texts(["127.16.0.0/12", "127.200.1.7", "127.64.0.0/10"])
    assert "127.16.0.0" in s and "127.31.255.255" in s and "127.200.1.7" in s
    assert "127.32.0.0" not in s and "127.200.1.8" not in s and "127.15.255.255" not in s
    assert "127.127.255.255" in s and "127.128.0.0" not in s


def test_ipv6_ranges_match_and_do_not_mix_with_ipv4() -> None:
    """
    IPv6 ranges match IPv6 addresses; an IPv4 address with the same integer
    value is not matched by them.
    """
    s = AddressSet.from_texts(["2001:db8::/32", "::1"])
    assert "2001:db8:ffff::1" in s and "::1" in s
    assert "2001:db9::" not in s
    assert "0.0.0.1" not in s


def test_mapped_addresses_match_ipv4_ranges() -> None:
    """
    An IPv4-mapped IPv6 client (a dual-stack socket's view of an IPv4
    client) is matched as its IPv4 address, and a mapped range as IPv4.
    """
    s = AddressSet.from_texts(["127.16.0.0/12", "::ffff:127.200.0.0/112"])
    assert "::ffff:127.17.2.3" in s
    assert "127.200.3.4" in s and "::ffff:127.200.3.4" in s
    assert "::ffff:127.32.2.3" not in s
    assert address_key("::ffff:127.0.0.1") == (4, 0x7F000001)


def test_not_an_address_is_in_nothing() -> None:
    """
    A peer that is not an IP address (a UNIX socket) is in no set.
    """
    s = AddressSet.from_texts(["0.0.0.0/0", "::/0"])
    assert "unix" not in s and "" not in s and address_key("example.com") is None
    assert "fe80::1%eth0" in s


def test_overlapping_ranges_are_merged() -> None:
    """
    Overlapping and adjacent ranges become one, and matching still follows
    their union.
    """
    s = AddressSet.from_texts(["127.0.0.0/24", "127.0.1.0/24", "127.0.0.128/25", "127.0.3.0/24"])
    assert len(s.v4_starts) == 2
    assert "127.0.1.255" in s and "127.0.2.0" not in s and "127.0.3.1" in s


def test_matching_agrees_with_ipaddress_on_random_lists() -> None:
    """
    For random ranges and addresses, the bisection answers as a linear scan
    with C{ipaddress} does.
    """
    rng = random.Random(7)
    networks = [
        ipaddress.IPv4Network((rng.randrange(1 << 32), rng.randrange(8, 33)), strict=False)
        for _ in range(300)
    ]
    s = AddressSet.from_networks(networks)
    for _ in range(3000):
        address = ipaddress.IPv4Address(rng.randrange(1 << 32))
        assert (str(address) in s) == any(address in n for n in networks)


def test_union_holds_both() -> None:
    """
    The union of two sets holds the ranges of each.
    """
    s = AddressSet.from_texts(["127.0.0.0/8"]).union(AddressSet.from_texts(["::1"]))
    assert "127.1.1.1" in s and "::1" in s and s.count == 2


# -- the stick table ------------------------------------------------------


def test_rate_counts_over_the_period_and_decays() -> None:
    """
    The connection rate counts the current period, plus the previous one
    weighted by how much of it is within the last period, and is 0 two
    periods later.
    """
    table = StickTable(size=10, expire=100.0, period=10.0)
    entry = None
    for _ in range(10):
        entry = table.track(1, 0.0)
    assert entry is not None
    assert table.conn_rate(entry, 5.0) == 10
    assert table.conn_rate(entry, 15.0) == pytest.approx(5.0)
    assert table.conn_rate(entry, 20.0) == pytest.approx(0.0)


def test_entries_expire_unless_in_use() -> None:
    """
    An entry not seen for C{expire} seconds is dropped, unless it has an
    open connection; once that ends, it expires C{expire} later.
    """
    table = StickTable(size=10, expire=30.0, period=10.0)
    idle = table.track(1, 0.0)
    busy = table.track(2, 0.0)
    assert idle is not None and busy is not None
    table.acquire(busy)
    table.expire_entries(30.0)
    assert table.used == 1 and table.lookup(2, 30.0) is busy
    table.release(busy, 40.0)
    table.expire_entries(69.0)
    assert table.used == 1
    table.expire_entries(70.0)
    assert table.used == 0


def test_full_table_evicts_least_recently_seen_idle_entry() -> None:
    """
    When full, a new source replaces the least recently seen source without
    open connections; a source with open connections stays.
    """
    table = StickTable(size=3, expire=100.0, period=10.0)
    first = table.track(1, 0.0)
    assert first is not None
    table.acquire(first)
    table.track(2, 1.0)
    table.track(3, 2.0)
    table.track(2, 3.0)
    table.track(4, 4.0)
    assert table.lookup(1, 4.0) is first
    assert table.lookup(3, 4.0) is None
    assert table.lookup(2, 4.0) is not None and table.evicted == 1


def test_table_full_of_open_connections_does_not_track() -> None:
    """
    When every entry has open connections, a new source is not tracked and
    is counted as untracked.
    """
    table = StickTable(size=2, expire=100.0, period=10.0)
    for key in (1, 2):
        entry = table.track(key, 0.0)
        assert entry is not None
        table.acquire(entry)
    assert table.track(3, 1.0) is None
    assert table.untracked == 1 and table.used == 2


def test_table_stays_within_its_cap_for_100k_sources() -> None:
    """
    100,000 distinct sources through a table of 1,000 entries leave it at
    1,000 at most, at every step.
    """
    table = StickTable(size=1000, expire=30.0, period=10.0)
    most = 0
    for key in range(100_000):
        entry = table.track(key, key / 10_000)
        assert entry is not None
        table.acquire(entry)
        table.release(entry, key / 10_000)
        most = max(most, table.used)
    assert most == 1000


def test_ipv6_sources_are_keyed_on_the_prefix() -> None:
    """
    With an IPv6 prefix of 64, two addresses of one /64 share an entry; by
    default every address has its own; IPv4 keys never collide with IPv6.
    """
    a, b = address_key("2001:db8::1"), address_key("2001:db8::2")
    assert a is not None and b is not None
    wide = StickTable(10, 30.0, 10.0, v6_prefix=64)
    assert wide.key(a) == wide.key(b)
    assert wide.describe(wide.key(a)) == "2001:db8::/64"
    full = StickTable(10, 30.0, 10.0)
    assert full.key(a) != full.key(b)
    one = address_key("::1")
    v4 = address_key("0.0.0.1")
    assert one is not None and v4 is not None
    assert full.key(one) != full.key(v4)


def test_entry_line_shows_haproxy_counters() -> None:
    """
    A C{show table} line names the source and its counters as HAProxy does.
    """
    table = StickTable(10, 30.0, 10.0)
    key = address_key("127.0.0.2")
    assert key is not None
    entry = table.track(table.key(key), 0.0)
    assert entry is not None
    table.acquire(entry)
    source, line = entry_line(table, entry, 1.0)
    assert source == "127.0.0.2"
    assert line == "key=127.0.0.2 use=1 exp=30000 conn_cnt=1 conn_cur=1 conn_rate(10000)=1"


# -- the stage ------------------------------------------------------------


def stage_for(lines: List[str], table: Optional[StickTable] = None) -> SourceStage:
    return SourceStage([parse_rule(line) for line in lines], table)


def decide(stage: SourceStage, host: str, clock: Clock) -> Optional[FakeSession]:
    """
    The session when the stage lets it through, C{None} when it refuses
    it (C{PR}).
    """
    session = FakeSession(host, clock)
    try:
        assert stage.inspect(session, bytearray()) == 0
    except StageRejected as e:
        assert e.termination == "PR"
        return None
    return session


def test_stage_provides_the_interface() -> None:
    """
    The source stage is an L{IClientStage}.
    """
    assert verifyObject(IClientStage, stage_for(["reject if src 127.0.0.0/8"]))


def test_first_matching_rule_decides_and_default_is_accept() -> None:
    """
    Rules are tried in order and the first that matches decides; a source
    no rule matches is accepted.
    """
    clock = Clock()
    stage = stage_for(["accept if src 127.1.0.0/16", "reject if src 127.0.0.0/8"])
    assert decide(stage, "127.1.2.3", clock) is not None
    assert decide(stage, "127.2.2.3", clock) is None
    assert decide(stage, "11.0.0.1", clock) is not None


def test_negated_allow_list_rejects_everyone_else() -> None:
    """
    C{reject if !src ...} (and C{reject unless src ...}) keeps out every
    source outside the list, IPv6 and mapped addresses included.
    """
    clock = Clock()
    for rule in ("reject if !src 127.0.0.1 ::1", "reject unless src 127.0.0.1 ::1"):
        stage = stage_for([rule])
        assert decide(stage, "127.0.0.1", clock) is not None
        assert decide(stage, "::ffff:127.0.0.1", clock) is not None
        assert decide(stage, "::1", clock) is not None
        assert decide(stage, "127.0.0.2", clock) is None
        assert decide(stage, "::2", clock) is None


def test_conn_cur_limit_lets_n_connections_through() -> None:
    """
    C{reject if { src_conn_cur ge 2 }} lets two connections of a source be
    open at once; when one ends, another may open; other sources are not
    affected.
    """
    clock = Clock()
    stage = stage_for(["reject if { src_conn_cur ge 2 }"], StickTable(100, 30.0, 10.0))
    first = decide(stage, "127.0.0.1", clock)
    second = decide(stage, "127.0.0.1", clock)
    assert first is not None and second is not None
    assert decide(stage, "127.0.0.1", clock) is None
    assert decide(stage, "127.0.0.2", clock) is not None
    first.end()
    assert decide(stage, "127.0.0.1", clock) is not None


def test_conn_rate_limit_over_the_period() -> None:
    """
    C{reject if { src_conn_rate ge 3 }} lets three new connections of a
    source through per period; refused attempts count too, so a source
    that keeps trying stays refused; after two quiet periods it is let in.
    """
    clock = Clock()
    stage = stage_for(["reject if { src_conn_rate ge 3 }"], StickTable(100, 60.0, 10.0))
    results = [decide(stage, "127.0.0.1", clock) is not None for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert decide(stage, "127.0.0.9", clock) is not None
    clock.advance(20)
    assert decide(stage, "127.0.0.1", clock) is not None


def test_counter_rules_need_a_tracked_source() -> None:
    """
    A source that is not an IP address matches no counter rule, and an
    accept rule before the counters spares a source from them.
    """
    clock = Clock()
    table = StickTable(100, 30.0, 10.0)
    stage = stage_for(["accept if src 127.9.0.0/16", "reject if { src_conn_cur ge 1 }"], table)
    assert decide(stage, "unix", clock) is not None
    assert decide(stage, "unix", clock) is not None
    assert decide(stage, "127.9.0.1", clock) is not None
    assert decide(stage, "127.9.0.1", clock) is not None
    assert table.used == 1


def test_source_stage_is_built_only_when_configured() -> None:
    """
    A frontend without rules or table gets no source stage; one with a
    table gets a table of the configured size.
    """
    from l4lb.config.model import Frontend

    assert build_source_stage(Frontend("f", (), "b")) is None
    stage = build_source_stage(Frontend("f", (), "b", stick_table=StickTableSpec(5, 3.0)))
    assert stage is not None and stage.table is not None and stage.table.size == 5
    assert make_table(StickTableSpec(5, 3.0, conn_rate=None)).period == 10.0


def test_rule_objects_compare_equal_when_parsed_twice() -> None:
    """
    A rule parsed twice is equal to itself (configurations compare by
    value).
    """
    assert parse_rule("reject if src 127.0.0.0/8", 3) == parse_rule("reject  if src 127.0.0.0/8", 3)
    assert isinstance(parse_rule("accept if src ::1"), SourceRule)


# -- the session rate limit ------------------------------------------------


class FakeGate:
    def __init__(self) -> None:
        self.woken = 0

    def update(self) -> None:
        self.woken += 1


def test_session_rate_stops_until_the_next_second() -> None:
    """
    After N connections in a second, none is free until the next second
    begins, when the gate is woken once.
    """
    clock = Clock()
    clock.advance(100.25)
    gate = FakeGate()
    rate = SessionRate(clock, 3, gate.update)
    for _ in range(3):
        assert rate.free() > 0
        rate.count()
    assert rate.free() == 0 and gate.woken == 0
    clock.advance(0.5)
    assert rate.free() == 0 and gate.woken == 0
    clock.advance(0.25)
    assert gate.woken == 1 and rate.free() == 3
    rate.stop()
    assert not clock.getDelayedCalls()


def test_gate_with_a_rate_pauses_and_resumes_its_ports() -> None:
    """
    A frontend gate with a session rate stops reading its ports at the
    rate and resumes them the next second.
    """
    from l4lb.tcp.limits import ConnectionLimiter

    class Port:
        reading = True
        numberAccepts = 100

        def doRead(self) -> None:
            pass

        def startReading(self) -> None:
            self.reading = True

        def stopReading(self) -> None:
            self.reading = False

    clock = Clock()
    gate = ConnectionLimiter().gate()
    gate.rate = SessionRate(clock, 2, gate.update)
    port = Port()
    gate.add_port(port)
    gate.open()
    assert port.reading
    gate.acquire()
    gate.acquire()
    assert not port.reading
    gate.release()
    gate.release()
    assert not port.reading
    clock.advance(1)
    assert port.reading


_RANGE_TEXT = st.one_of(
    st.builds(
        lambda value, prefix: f"{ipaddress.IPv4Address(value)}/{prefix}",
        st.integers(0, (1 << 32) - 1),
        st.integers(0, 33),
    ),
    st.builds(
        lambda value, prefix: f"{ipaddress.IPv6Address(value)}/{prefix}",
        st.one_of(st.integers(0, (1 << 128) - 1), st.integers(0xFFFF00000000, 0xFFFFFFFFFFFF)),
        st.integers(0, 129),
    ),
    st.text(alphabet="0123456789abcdef.:/%x ", max_size=45),
    st.text(max_size=20),
)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(_RANGE_TEXT)
def test_parse_range_agrees_with_ipaddress(text: str) -> None:
    """
    Whatever the text, L{parse_range} either raises C{ValueError} or gives
    the range C{ipaddress} reads from it; it never accepts text
    C{ipaddress} refuses.
    """
    try:
        got = parse_range(text)
    except ValueError:
        return
    network = ipaddress.ip_network(text, strict=False)
    assert AddressSet.from_ranges([got]) == AddressSet.from_networks([network])


def test_benchmark_runs_and_stops() -> None:
    """
    C{bench/bench_protect.py} runs to the end on small sizes and prints its
    table.
    """
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "bench_protect.py"
    done = subprocess.run(
        [sys.executable, str(script), "--seconds", "0.01", "--sizes", "50"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| `src` lookup, 50 ranges (text address) |" in done.stdout
