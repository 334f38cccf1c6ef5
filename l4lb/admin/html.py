"""
The statistics as an HTML page a person reads at a glance, laid out as
HAProxy's: a summary of the process at the top, then one table per proxy,
its frontend, servers and backend, with HAProxy's columns for TCP (queue,
session rate, sessions, bytes, denied, errors, warnings, server state and
checks), a coloured status, backup servers marked, the reason of a
maintenance, and sparklines of the last 15 minutes
(L{l4lb.admin.history}, L{l4lb.admin.sparkline}).

The page has no script and loads nothing: its only style is one
C{<style>} element, allowed by its hash in L{CONTENT_SECURITY_POLICY}.
It reloads itself every L{REFRESH} seconds.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Dict, Iterable, List, Optional, Tuple

from l4lb.admin.history import SERIES, StatsHistory
from l4lb.admin.sparkline import sparkline
from l4lb.admin.stats import Row
from l4lb.admin.summary import ProcessSummary, summary_items

#: Seconds between the page's automatic reloads.
REFRESH = 5

_STYLE = """
body{font:13px sans-serif;margin:1em;color:#222}
h1{font-size:150%;margin:0 0 .4em}
table{border-collapse:collapse;margin-bottom:1.4em}
th,td{border:1px solid #aab;padding:1px 5px;text-align:right;white-space:nowrap}
th{background:#445;color:#fff;font-weight:normal}
thead tr:first-child th{font-weight:bold}
td.n,th.n,td.l{text-align:left}
td.t{padding:0 2px;line-height:0}
td.t svg{width:60px;height:16px}
caption{text-align:left;font-weight:bold;font-size:125%;padding:4px 0}
tr.f td{background:#f4f4e0}
tr.b td{font-weight:bold;background:#e8e8ee}
tr.k td.n{font-style:italic}
tr.k td.n::after{content:" backup";font-size:80%;color:#36c;font-style:normal}
td.up{background:#c8f0c8}
td.k.up{background:#c8dcf8}
td.down{background:#f4a8a8}
td.goingdown{background:#f8e08c}
td.goingup{background:#f8c080}
td.drain{background:#b8d8f4}
td.maint{background:#c8b8a0}
td.nolb{background:#f4e0a0}
td.nocheck{background:#e8f4e8}
td.open{background:#e0f0d8}
table.sum{min-width:0}
table.sum th{text-align:left}
table.sum td{text-align:left}
p.legend{color:#555}
"""

#: The page's Content-Security-Policy: nothing may load, no script may
#: run, and the only style allowed is the page's own C{<style>} element.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLE.encode("utf-8")).digest()).decode("ascii")
    + "'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: The column groups, HAProxy's: each a title and its columns, a column a
#: heading and the row's key (a callable for computed cells).
_GROUPS: List[Tuple[str, List[Tuple[str, str]]]] = [
    ("Queue", [("Cur", "qcur"), ("Max", "qmax")]),
    ("Session rate", [("Cur", "rate"), ("Max", "rate_max"), ("Limit", "rate_lim")]),
    ("Sessions", [("Cur", "scur"), ("Max", "smax"), ("Limit", "slim"), ("Total", "stot")]),
    ("Bytes", [("In", "bin"), ("Out", "bout")]),
    ("Denied", [("Conn", "dcon")]),
    ("Errors", [("Req", "ereq"), ("Conn", "econ"), ("Resp", "eresp")]),
    ("Warnings", [("Retr", "wretr"), ("Redis", "wredis")]),
    (
        "Server",
        [
            ("Status", "status"),
            ("Last check", "check"),
            ("Wght", "weight"),
            ("Act", "act"),
            ("Bck", "bck"),
            ("Chk", "chkfail"),
            ("Dwn", "chkdown"),
            ("Dwntme", "downtime"),
            ("Since", "lastchg"),
        ],
    ),
]

#: The trend columns: the series, its heading, its unit and colour.
_TRENDS = [
    ("rate", "Sessions/s", "sessions/s", "#2f6db5"),
    ("scur", "Current", "sessions", "#2e8b3e"),
    ("errors", "Errors", "errors in 5s", "#c0392b"),
]
assert [t[0] for t in _TRENDS] == list(SERIES)

#: Why a server is in maintenance, by L{l4lb.pool.Server.admin_cause}.
_MAINT_CAUSES = {
    "config": "disabled in the configuration",
    "runtime": "set at run time",
    "agent": "set by the agent check",
    "resolvers": "no address from DNS",
}


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


def status_class(status: str) -> str:
    """
    The CSS class colouring a C{status} cell: C{up}, C{goingdown} (C{UP
    1/3}), C{down}, C{goingup} (C{DOWN 1/2}), C{drain}, C{maint},
    C{nolb}, C{nocheck}, C{open}; C{""} for anything else.
    """
    if status == "no check":
        return "nocheck"
    word, _, progress = status.partition(" ")
    if progress and progress[0].isdigit():
        return {"UP": "goingdown", "DOWN": "goingup"}.get(word, "")
    return {"UP": "up", "DOWN": "down", "DRAIN": "drain", "MAINT": "maint", "NOLB": "nolb",
            "OPEN": "open"}.get(word, "")


def check_text(row: Row) -> str:
    """
    The C{Last check} cell of a server: why it is in maintenance (where
    its checks do not run), C{no address} while its name is not resolved,
    or the last check's status and duration.
    """
    status = row.get("status", "")
    unresolved = row.get("unresolved") == "1"
    if status.startswith("MAINT"):
        cause = _MAINT_CAUSES.get(row.get("admin_cause", ""), "")
        if unresolved and not cause:
            cause = "no address"
        return "MAINT: " + cause if cause else "MAINT"
    if unresolved:
        return "no address (host name not resolved)"
    check = row.get("check_status", "")
    if check and row.get("check_duration"):
        check += f" in {row['check_duration']}ms"
    failed = ("L4CON", "L4TOUT", "L6", "L7", "SOCKERR")
    if check and row.get("check_desc") and check.startswith(failed) and "OK" not in check:
        check += f": {row['check_desc']}"
    return check


def _cell(row: Row, key: str, kind: str) -> str:
    if key == "status":
        status = row.get("status", "")
        backup = " k" if kind == "k" else ""
        return f"<td class='{status_class(status)}{backup}'>{escape(status)}</td>"
    if key == "check":
        return f"<td class='l'>{escape(check_text(row))}</td>"
    if key == "lastchg":
        return f"<td>{duration(row.get('lastchg', '')) if kind != 'f' else ''}</td>"
    if key == "downtime":
        return f"<td>{duration(row.get('downtime', ''))}</td>"
    if key in ("act", "bck") and kind in ("s", "k"):
        return f"<td>{'Y' if row.get(key) == '1' else ''}</td>"
    return f"<td>{escape(row.get(key, ''))}</td>"


def _kind(row: Row) -> str:
    """
    The row's CSS class: C{f} frontend, C{b} backend, C{s} server, C{k}
    backup server.
    """
    kind = row.get("type", "")
    if kind == "0":
        return "f"
    if kind == "1":
        return "b"
    return "k" if row.get("bck") == "1" else "s"


def _trends(row: Row, history: Optional[StatsHistory]) -> str:
    if history is None:
        return ""
    series = history.series(row.get("pxname", ""), row.get("svname", ""))
    # Every object's series has the same length (samples kept so far,
    # unknown before it existed), so one width spans the same time in
    # every row: the whole history, up to its 15 minutes.
    return "".join(
        f"<td class='t'>{sparkline(series[name], 0, unit, colour)}</td>"
        for name, _, unit, colour in _TRENDS
    )


def _row(row: Row, history: Optional[StatsHistory]) -> str:
    kind = _kind(row)
    cells = [f"<td class='n'>{escape(row['svname'])}</td>"]
    for _, columns in _GROUPS:
        cells.extend(_cell(row, key, kind) for _, key in columns)
    return f"<tr class='{kind}'>" + "".join(cells) + _trends(row, history) + "</tr>"


def _head(history: Optional[StatsHistory]) -> str:
    first = ["<th class='n' rowspan='2'>Name</th>"]
    second: List[str] = []
    for title, columns in _GROUPS:
        first.append(f"<th colspan='{len(columns)}'>{title}</th>")
        second.extend(
            f"<th class='n'>{heading}</th>" if key == "check" else f"<th>{heading}</th>"
            for heading, key in columns
        )
    if history is not None:
        kept = min(history.samples, history.points)
        span = duration(str(int(kept * history.interval)))
        first.append(f"<th colspan='{len(_TRENDS)}'>Trends, last {span}</th>")
        second.extend(f"<th>{heading}</th>" for _, heading, _, _ in _TRENDS)
    return "<thead><tr>" + "".join(first) + "</tr><tr>" + "".join(second) + "</tr></thead>"


def _summary(summary: ProcessSummary) -> str:
    cells = "".join(
        f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>"
        for label, value in summary_items(summary)
    )
    return f"<table class='sum'><caption>Process</caption>{cells}</table>"


def stat_html(
    rows: Iterable[Row],
    summary: Optional[ProcessSummary] = None,
    history: Optional[StatsHistory] = None,
) -> str:
    """
    The page for C{rows} (L{l4lb.admin.stats.stat_rows} order).

    @param summary: The process summary shown at the top, if any.
    @param history: The trends drawn in each row, if kept.
    """
    proxies: Dict[str, List[Row]] = {}
    for row in rows:
        proxies.setdefault(row["pxname"], []).append(row)
    head = _head(history)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{REFRESH}'>",
        "<link rel='icon' href='data:,'>",
        f"<title>l4lb statistics</title><style>{_STYLE}</style></head><body>",
        "<h1>l4lb statistics</h1>",
    ]
    if summary is not None:
        parts.append(_summary(summary))
    for name, members in proxies.items():
        parts.append(f"<table><caption>{escape(name)}</caption>{head}<tbody>")
        parts.extend(_row(row, history) for row in members)
        parts.append("</tbody></table>")
    parts.append(_legend(history))
    parts.append("</body></html>\n")
    return "".join(parts)


def _legend(history: Optional[StatsHistory]) -> str:
    trends = ""
    if history is not None:
        trends = (
            f" Trends: one point every {history.interval:g}s, the highest per pixel;"
            " hover a line for its last and highest values."
        )
    return (
        "<p class='legend'>Backup servers are marked <i>backup</i> and their UP status is blue."
        f"{trends}</p><p>CSV: <a href='/;csv'>/;csv</a> &middot; JSON: <a href='/stats.json'>"
        "/stats.json</a> &middot; Prometheus: <a href='/metrics'>/metrics</a></p>"
    )
