"""
The statistics as an HTML page a person reads at a glance: one table per
backend, its servers with a coloured status, weight, connections, queue,
bytes, last check and the time since the last state change.  The page
reloads itself.
"""

from __future__ import annotations

from html import escape
from typing import Dict, Iterable, List

import l4lb
from l4lb.admin.stats import Row

#: Seconds between the page's automatic reloads.
REFRESH = 5

_COLOURS = {
    "UP": "#c8f0c8",
    "DOWN": "#f4b8b8",
    "DRAIN": "#b8d8f4",
    "MAINT": "#d0d0d0",
    "NOLB": "#f4e0a0",
    "no check": "#e8f4e8",
}

_STYLE = """
body { font: 14px sans-serif; margin: 1em; }
table { border-collapse: collapse; margin-bottom: 1.5em; min-width: 60em; }
th, td { border: 1px solid #999; padding: 2px 8px; text-align: right; }
th { background: #445; color: #fff; }
td.name, th.name { text-align: left; }
tr.backend td { font-weight: bold; background: #eee; }
tr.frontend td { background: #f4f4e0; }
caption { text-align: left; font-weight: bold; font-size: 120%; padding: 4px 0; }
"""

_HEAD = (
    "<tr><th class='name'>Name</th><th>Status</th><th>Weight</th><th>Current</th>"
    "<th>Total</th><th>Queue</th><th>Bytes in</th><th>Bytes out</th>"
    "<th>Last check</th><th>Since change</th></tr>"
)


def duration(seconds: str) -> str:
    """
    Seconds as a short duration: C{42s}, C{3m05s}, C{2h01m}, C{4d03h}.
    """
    if not seconds.isdigit():
        return ""
    value = int(seconds)
    if value < 60:
        return f"{value}s"
    if value < 3600:
        return f"{value // 60}m{value % 60:02d}s"
    if value < 86400:
        return f"{value // 3600}h{value % 3600 // 60:02d}m"
    return f"{value // 86400}d{value % 86400 // 3600:02d}h"


def _status_colour(status: str) -> str:
    return _COLOURS.get(status, _COLOURS.get(status.split(" ")[0], "#fff"))


def _row(row: Row, kind: str) -> str:
    status = row.get("status", "")
    check = row.get("check_status", "")
    if check and row.get("check_duration"):
        check += f" in {row['check_duration']}ms"
    cells = [
        f"<td class='name'>{escape(row['svname'])}</td>",
        f"<td style='background:{_status_colour(status)}'>{escape(status)}</td>",
        f"<td>{escape(row.get('weight', ''))}</td>",
        f"<td>{escape(row.get('scur', ''))}</td>",
        f"<td>{escape(row.get('stot', ''))}</td>",
        f"<td>{escape(row.get('qcur', ''))}</td>",
        f"<td>{escape(row.get('bin', ''))}</td>",
        f"<td>{escape(row.get('bout', ''))}</td>",
        f"<td>{escape(check)}</td>",
        f"<td>{duration(row.get('lastchg', '')) if kind != 'frontend' else ''}</td>",
    ]
    return f"<tr class='{kind}'>" + "".join(cells) + "</tr>"


def stat_html(rows: Iterable[Row]) -> str:
    """
    The page for C{rows} (L{l4lb.admin.stats.stat_rows} order).
    """
    proxies: Dict[str, List[Row]] = {}
    for row in rows:
        proxies.setdefault(row["pxname"], []).append(row)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{REFRESH}'>",
        f"<title>l4lb statistics</title><style>{_STYLE}</style></head><body>",
        f"<h1>l4lb {escape(l4lb.__version__)} statistics</h1>",
    ]
    for name, members in proxies.items():
        parts.append(f"<table><caption>{escape(name)}</caption>{_HEAD}")
        for row in members:
            kind = {"0": "frontend", "1": "backend"}.get(row.get("type", ""), "server")
            parts.append(_row(row, kind))
        parts.append("</table>")
    parts.append("<p>CSV: <a href='/;csv'>/;csv</a> &middot; JSON: <a href='/stats.json'>"
                 "/stats.json</a> &middot; Prometheus: <a href='/metrics'>/metrics</a></p>")
    parts.append("</body></html>\n")
    return "".join(parts)
