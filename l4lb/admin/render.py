"""
Statistics rows rendered as HAProxy's C{show stat} CSV.
"""

from __future__ import annotations

import csv
import json
import io
from typing import Iterable

from l4lb.admin.fields import FIELDS
from l4lb.admin.stats import Row


def stat_csv(rows: Iterable[Row]) -> str:
    """
    The CSV text: a C{# pxname,svname,...} header line, then one line per
    row with every column in L{FIELDS} order, and an empty line at the end
    as HAProxy prints it.
    """
    out = io.StringIO()
    out.write("# " + ",".join(FIELDS) + ",\n")
    writer = csv.writer(out, lineterminator=",\n")
    for row in rows:
        writer.writerow([row.get(name, "") for name in FIELDS])
    out.write("\n")
    return out.getvalue()


def _value(text: str) -> object:
    return int(text) if text.isdigit() else text


def stat_json(rows: Iterable[Row]) -> str:
    """
    The same rows as JSON: C{{"stats": [ROW, ...]}}, each row an object of
    its filled columns (numbers as numbers), in L{FIELDS} order, then the
    UDP counters of C{mode udp} rows (C{udp_*}).
    """
    data = [
        {
            **{name: _value(row[name]) for name in FIELDS if row.get(name, "") != ""},
            **{name: _value(value) for name, value in row.items() if name.startswith("udp_")},
        }
        for row in rows
    ]
    return json.dumps({"stats": data}, indent=1) + "\n"
