"""
The counters a worker reports, and how the main process adds them to its
own statistics rows.

A worker reads its rows with L{l4lb.admin.stats.stat_rows} (so live bytes
of open connections count, as in one process) and keeps the columns of
L{SUMMED} and L{HIGHEST}.  The main process adds each worker's values to
its row of the same proxy and server; it accepts no TCP connection itself,
so its own values for them are 0.  Cumulative columns (L{CUMULATIVE}) of a
worker that exited or was replaced are kept, so that totals never go back.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Mapping, Tuple

from l4lb.interfaces import IBalancerRuntime
from l4lb.tcp import lean

#: Columns added up over the processes.
SUMMED = (
    "qcur", "scur", "stot", "bin", "bout", "econ", "eresp", "wretr", "wredis", "dcon",
    "conn_tot", "lbtot", "rate",
)
#: Columns whose highest value over the processes is shown (for C{smax}
#: and C{rate_max}, the busiest process's).
HIGHEST = ("qmax", "smax", "rate_max")
#: Summed columns that only grow: kept when a worker goes.
CUMULATIVE = ("stot", "bin", "bout", "econ", "eresp", "wretr", "wredis", "dcon", "conn_tot", "lbtot")

#: A reading: C{{"rows": [[pxname, svname, {column: value}], ...],
#: "current": connections open, "total": connections accepted, "pipes":
#: splice pipes open}}.
Snapshot = Dict[str, Any]


def snapshot(service: IBalancerRuntime, now: float) -> Snapshot:
    """
    The counters of the worker running C{service}.
    """
    from l4lb.admin.stats import stat_rows

    rows = []
    for row in stat_rows(service, now):
        values = {}
        for column in SUMMED + HIGHEST:
            text = row.get(column, "")
            if text.isdigit():
                values[column] = int(text)
        rows.append([row["pxname"], row["svname"], values])
    return {
        "rows": rows,
        "current": int(service.limiter.current),
        "total": sum(f.total for f in service.frontends.values()),
        "pipes": lean.PIPES.open,
    }


def pages(reading: Snapshot, size: int) -> List[str]:
    """
    C{reading} as JSON text cut in pages of at most C{size} characters.
    """
    text = json.dumps(reading, separators=(",", ":"))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def parse(text: str) -> Snapshot:
    """
    The reading of the joined pages.

    @raise ValueError: When it is not a reading.
    """
    reading = json.loads(text)
    if not isinstance(reading, dict) or not isinstance(reading.get("rows"), list):
        raise ValueError("not a counters reading")
    return reading


def cumulative(reading: Snapshot) -> Snapshot:
    """
    Only the cumulative part of C{reading}: what is kept of a worker that
    went.
    """
    rows = [
        [px, sv, {c: v for c, v in values.items() if c in CUMULATIVE}]
        for px, sv, values in reading.get("rows", [])
    ]
    return {"rows": rows, "current": 0, "total": reading.get("total", 0)}


def add(readings: Iterable[Snapshot]) -> Snapshot:
    """
    The sum of several readings (the highest value for L{HIGHEST}).
    """
    table: Dict[Tuple[str, str], Dict[str, int]] = {}
    order: List[Tuple[str, str]] = []
    current = total = pipes = 0
    for reading in readings:
        current += int(reading.get("current", 0))
        total += int(reading.get("total", 0))
        pipes += int(reading.get("pipes", 0))
        for px, sv, values in reading.get("rows", []):
            key = (px, sv)
            if key not in table:
                table[key] = {}
                order.append(key)
            _combine(table[key], values)
    return {
        "rows": [[px, sv, table[(px, sv)]] for px, sv in order],
        "current": current,
        "total": total,
        "pipes": pipes,
    }


def _combine(into: Dict[str, int], values: Mapping[str, int]) -> None:
    for column, value in values.items():
        if column in HIGHEST:
            into[column] = max(into.get(column, 0), int(value))
        else:
            into[column] = into.get(column, 0) + int(value)


def merge(rows: List[Dict[str, str]], reading: Snapshot) -> None:
    """
    Add C{reading} to the main process's C{rows} in place, row by row
    (same C{pxname} and C{svname}); a row the main process does not have
    (a proxy a reload removed) is left out.
    """
    by_key = {(row["pxname"], row["svname"]): row for row in rows}
    for px, sv, values in reading.get("rows", []):
        row = by_key.get((px, sv))
        if row is None:
            continue
        for column, value in values.items():
            mine = row.get(column, "")
            base = int(mine) if mine.isdigit() else 0
            if column in HIGHEST:
                row[column] = str(max(base, int(value)))
            else:
                row[column] = str(base + int(value))
