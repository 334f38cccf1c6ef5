"""
C{show table [FRONTEND]}: the frontends' stick tables, as HAProxy lists
them: one header line per table (its size and how many sources it holds),
then, for one named frontend, a line per source.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

from l4lb.interfaces import IBalancerRuntime
from l4lb.protect.table import StickTable, entry_line


def frontend_tables(service: IBalancerRuntime) -> Iterator[Tuple[str, StickTable]]:
    """
    Each TCP frontend that has a stick table, with the table, in
    configuration order.
    """
    for spec in service.config.frontends:
        frontend = service.frontends.get(spec.name)
        if frontend is None:
            continue
        for stage in frontend.stages:
            table = getattr(stage, "table", None)
            if isinstance(table, StickTable):
                yield spec.name, table


def _header(name: str, table: StickTable) -> str:
    return (
        f"# table: {name}, type: ip, size:{table.size}, used:{table.used},"
        f" evicted:{table.evicted}, untracked:{table.untracked}"
    )


def show_table(service: IBalancerRuntime, now: float, name: Optional[str] = None) -> Optional[str]:
    """
    The answer of C{show table}: every table's header, or one table's
    header and entries (least recently seen first).

    @return: The text, or C{None} when C{name} has no table.
    """
    lines: List[str] = []
    for frontend, table in frontend_tables(service):
        if name is not None and frontend != name:
            continue
        table.expire_entries(now)
        lines.append(_header(frontend, table))
        if name is not None:
            for entry in table.entries():
                lines.append(entry_line(table, entry, now)[1])
            return "\n".join(lines) + "\n"
    if name is not None:
        return None
    return "\n".join(lines) + "\n" if lines else ""
