"""
The stage that applies a frontend's C{tcp-request connection} rules and
per-source limits to each new connection (after the PROXY header is read,
so that the address checked is the real client's).

The rules are tried in order; the first whose condition holds decides
(C{reject}: the connection is closed at once, logged C{PR} and counted in
the frontend's C{dcon}; C{accept}: the later rules are skipped).  A
connection no rule decides is accepted.

With a stick table, a connection's source is tracked when the first rule
on a counter is reached, or when the connection is accepted before any:
its connection rate counts every connection tracked, refused or not, and
its open connections count those accepted, until they end.  The counters
a rule compares are those before this connection is counted, so that
C{reject if { src_conn_cur ge 10 }} lets ten connections through, not
nine.  A source the table cannot track (not an IP address, or the table
full of sources with open connections) matches no counter rule.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from zope.interface import implementer

from l4lb.config.model import SourceRule, StickTableSpec
from l4lb.interfaces import IClientStage
from l4lb.protect.cidr import address_key
from l4lb.protect.table import Entry, StickTable
from l4lb.tcp.stages import StageRejected

_COMPARE = {
    "ge": lambda value, limit: value >= limit,
    "gt": lambda value, limit: value > limit,
    "le": lambda value, limit: value <= limit,
    "lt": lambda value, limit: value < limit,
    "eq": lambda value, limit: value == limit,
}


@implementer(IClientStage)
class SourceStage:
    """
    Checks each new connection of a frontend against its source rules and
    per-source limits.

    @ivar rules: The L{SourceRule}s, in order.
    @ivar table: The frontend's L{StickTable}, or C{None}.
    """

    def __init__(self, rules: Sequence[SourceRule], table: Optional[StickTable]) -> None:
        self.rules = tuple(rules)
        self.table = table

    def inspect(self, session: Any, data: bytearray) -> Optional[int]:
        """
        Decide at once, before the client sends anything; see
        L{IClientStage.inspect}.

        @raise StageRejected: C{PR} when a C{reject} rule matches.
        """
        key = address_key(session.client_host)
        table = self.table
        now = session.seconds()
        entry: Optional[Entry] = None
        tracked = False
        for rule in self.rules:
            if rule.fetch == "src":
                hit = key is not None and rule.addresses.contains_key(key)
            else:
                if not tracked:
                    tracked = True
                    if table is not None and key is not None:
                        entry = table.track(table.key(key), now)
                if entry is None or table is None:
                    continue
                if rule.fetch == "src_conn_cur":
                    value: float = entry.conn_cur
                else:
                    # The rate already counts this connection.
                    value = table.conn_rate(entry, now) - 1
                hit = _COMPARE[rule.operator](value, rule.threshold)
            if hit != rule.negate:
                if rule.action == "reject":
                    raise StageRejected("PR")
                break
        if table is not None and key is not None:
            if not tracked:
                entry = table.track(table.key(key), now)
            if entry is not None:
                table.acquire(entry)
                _chain_on_end(session, _releaser(table, entry))
        return 0

    def expired(self, session: Any, data: bytearray) -> Optional[int]:
        """
        Never called: the stage decides without waiting.
        """
        return 0


def _releaser(table: StickTable, entry: Entry) -> Callable[[Any], None]:
    def release(session: Any) -> None:
        table.release(entry, session.seconds())

    return release


def _chain_on_end(session: Any, callback: Callable[[Any], None]) -> None:
    """
    Have C{callback} called when the session ends, besides what is
    already to be called.
    """
    previous = session.on_end
    if previous is None:
        session.on_end = callback
        return

    def both(done: Any) -> None:
        previous(done)
        callback(done)

    session.on_end = both


def make_table(spec: StickTableSpec) -> StickTable:
    """
    The stick table a C{stick-table} line describes.
    """
    period = spec.conn_rate if spec.conn_rate is not None else 10.0
    return StickTable(spec.size, spec.expire, period, spec.ipv6_prefix)


def build_source_stage(spec: Any) -> Optional[SourceStage]:
    """
    The source stage of a frontend, or C{None} when it has neither source
    rules nor a stick table.

    @param spec: The L{l4lb.config.model.Frontend}.
    """
    if not spec.source_rules and spec.stick_table is None:
        return None
    table = make_table(spec.stick_table) if spec.stick_table is not None else None
    return SourceStage(spec.source_rules, table)
