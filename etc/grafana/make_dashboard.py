"""
Write C{etc/grafana-l4lb.json}, the Grafana dashboard of l4lb's Prometheus
metrics (the C{/metrics} page of the stats listener).

The dashboard is kept as this script, which is easier to review and change
than the JSON; the JSON is committed beside it so that operators can import
it as it is.  Run C{python etc/grafana/make_dashboard.py} after a change and
commit both; C{--check} exits 1 when the committed JSON is stale.

Every panel filters on the C{instance} label Prometheus gives each scrape
target and on the C{proxy} and C{server} labels l4lb puts on its metrics.
Only metrics that l4lb exports may appear here: the tests compare every
name in every query with what C{l4lb.admin.metrics} exports and with a live
C{/metrics}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: Where the dashboard is written.
OUTPUT = Path(__file__).resolve().parent.parent / "grafana-l4lb.json"

#: The datasource every panel and variable reads, chosen when importing.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

#: The label selectors of each kind of metric.
INSTANCE = 'instance=~"$instance"'
FRONTEND = f'{INSTANCE}, proxy=~"$frontend"'
BACKEND = f'{INSTANCE}, proxy=~"$backend"'
SERVER = f'{INSTANCE}, proxy=~"$backend", server=~"$server"'

#: The window of every rate: four scrapes at Prometheus's default 15 s.
WINDOW = "1m"

#: The codes the server status timeline draws, in the order of
#: C{l4lb.admin.metrics.SERVER_STATES}, with a colour each.
SERVER_STATES: Sequence[Tuple[str, str]] = (
    ("UP", "green"),
    ("DOWN", "red"),
    ("DRAIN", "blue"),
    ("MAINT", "orange"),
    ("NOLB", "yellow"),
    ("no check", "text"),
)


def rate(metric: str, selector: str) -> str:
    """
    The per-second rate of counter C{metric} over L{WINDOW}.
    """
    return f"rate({metric}{{{selector}}}[{WINDOW}])"


def target(expr: str, legend: str, instant: bool = False, table: bool = False) -> Dict[str, Any]:
    """
    One query of a panel.
    """
    query: Dict[str, Any] = {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
    }
    if table:
        query["format"] = "table"
    return query


class Layout:
    """
    Places panels left to right on Grafana's 24-column grid, in rows.

    @ivar panels: Every panel placed so far, rows included.
    """

    def __init__(self) -> None:
        self.panels: List[Dict[str, Any]] = []
        self._x = 0
        self._y = 0
        self._height = 0

    def _id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        """
        Start a new row titled C{title}.
        """
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
            }
        )
        self._y += 1

    def _newline(self) -> None:
        self._y += self._height
        self._x = 0
        self._height = 0

    def add(self, panel: Dict[str, Any], width: int = 12, height: int = 8) -> None:
        """
        Place C{panel}, on the next line when the current one is full.
        """
        if self._x + width > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": height, "w": width, "x": self._x, "y": self._y}
        self.panels.append(panel)
        self._x += width
        self._height = max(self._height, height)


def timeseries(
    title: str,
    description: str,
    targets: List[Dict[str, Any]],
    unit: str = "short",
    dashed: Optional[str] = None,
) -> Dict[str, Any]:
    """
    A time series panel.

    @param dashed: A regular expression of series names drawn dashed (the
        limits drawn beside what they limit).
    """
    overrides = []
    if dashed is not None:
        overrides.append(
            {
                "matcher": {"id": "byRegexp", "options": dashed},
                "properties": [
                    {
                        "id": "custom.lineStyle",
                        "value": {"fill": "dash", "dash": [10, 10]},
                    },
                    {"id": "custom.fillOpacity", "value": 0},
                ],
            }
        )
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _ref(targets),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10},
            },
            "overrides": overrides,
        },
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def _ref(targets: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    for index, query in enumerate(targets):
        query["refId"] = chr(ord("A") + index)
    return targets


def state_timeline(
    title: str,
    description: str,
    query: Dict[str, Any],
    mappings: Sequence[Tuple[int, str, str]],
) -> Dict[str, Any]:
    """
    A state timeline panel: one band per series, coloured by value.

    @param mappings: (value, text, colour) of each state.
    """
    return {
        "type": "state-timeline",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _ref([query]),
        "fieldConfig": {
            "defaults": {
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            str(value): {"text": text, "color": colour, "index": index}
                            for index, (value, text, colour) in enumerate(mappings)
                        },
                    }
                ],
                "color": {"mode": "thresholds"},
                "thresholds": {"mode": "absolute", "steps": [{"color": "text", "value": None}]},
            },
            "overrides": [],
        },
        "options": {
            "showValue": "never",
            "mergeValues": True,
            "rowHeight": 0.8,
            "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
        },
    }


def table(
    title: str, description: str, query: Dict[str, Any], columns: Dict[str, str]
) -> Dict[str, Any]:
    """
    A table of the labels of an instant query's series.

    @param columns: The labels shown, with their column titles.
    """
    hidden = {name: True for name in ("Time", "Value", "__name__", "job")}
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _ref([query]),
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": hidden,
                    "indexByName": {name: index for index, name in enumerate(columns)},
                    "renameByName": columns,
                },
            }
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True, "sortBy": [{"displayName": "State", "desc": False}]},
    }


def variable(name: str, label: str, query: str) -> Dict[str, Any]:
    """
    A template variable listing the values of a label, all selected at
    first.
    """
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "StandardVariableQuery"},
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
        "regex": "",
        "skipUrlSync": False,
    }


def process(layout: Layout) -> None:
    """
    The process: connections against C{maxconn}, the session rate.
    """
    layout.row("Process")
    layout.add(
        timeseries(
            "Connections and maxconn",
            "Connections open in the process and the global maxconn (0 when there is"
            " none). With nbproc the count includes the workers' while maxconn applies"
            " to each process: the count may reach nbproc times maxconn.",
            [
                target(f"l4lb_process_current_connections{{{INSTANCE}}}", "{{instance}} current"),
                target(f"l4lb_process_max_connections{{{INSTANCE}}}", "{{instance}} maxconn"),
            ],
            dashed="maxconn",
        )
    )
    layout.add(
        timeseries(
            "Process session rate",
            "New connections (TCP) and sessions (UDP) per second over every frontend of"
            " each instance, its nbproc workers included.",
            [
                target(
                    "sum by (instance) ("
                    + rate("l4lb_frontend_connections_total", INSTANCE)
                    + ")",
                    "{{instance}}",
                )
            ],
            unit="cps",
        )
    )


def frontends(layout: Layout) -> None:
    """
    The frontends: session rate, sessions against the limit, bytes.
    """
    layout.row("Frontends: $frontend")
    layout.add(
        timeseries(
            "Frontend session rate",
            "New connections (TCP) or sessions (UDP) accepted per second.",
            [target(rate("l4lb_frontend_connections_total", FRONTEND), "{{proxy}}")],
            unit="cps",
        )
    )
    layout.add(
        timeseries(
            "Frontend sessions and limit",
            "Connections (TCP) or sessions (UDP) open now, beside the frontend's limit"
            " (maxconn, or maxsessions for mode udp).",
            [
                target(f"l4lb_frontend_current_sessions{{{FRONTEND}}}", "{{proxy}}"),
                target(f"l4lb_frontend_limit_sessions{{{FRONTEND}}}", "{{proxy}} limit"),
            ],
            dashed="limit$",
        )
    )
    layout.add(
        timeseries(
            "Frontend bytes in and out",
            "Bytes per second received from clients (in) and sent to them (out).",
            [
                target(rate("l4lb_frontend_bytes_in_total", FRONTEND), "{{proxy}} in"),
                target(rate("l4lb_frontend_bytes_out_total", FRONTEND), "{{proxy}} out"),
            ],
            unit="Bps",
        )
    )
    layout.add(
        timeseries(
            "Frontend denials and request errors",
            "Connections refused per second by a tcp-request rule, a source rule or a"
            " rate limit; datagrams from clients dropped per second (mode udp).",
            [
                target(
                    rate("l4lb_frontend_denied_connections_total", FRONTEND), "{{proxy}} denied"
                ),
                target(rate("l4lb_frontend_request_errors_total", FRONTEND), "{{proxy}} errors"),
            ],
            unit="cps",
        )
    )


def backends(layout: Layout) -> None:
    """
    The backends: state, session rate, sessions and queue, errors, retries.
    """
    layout.row("Backends: $backend")
    layout.add(
        state_timeline(
            "Backend status",
            "UP while at least one server is usable, DOWN when none is.",
            target(f'l4lb_backend_status{{{BACKEND}, state="UP"}}', "{{proxy}}"),
            [(1, "UP", "green"), (0, "DOWN", "red")],
        ),
        width=24,
        height=5,
    )
    layout.add(
        timeseries(
            "Backend session rate",
            "Connections (TCP) or sessions (UDP) sent to the backend per second.",
            [target(rate("l4lb_backend_sessions_total", BACKEND), "{{proxy}}")],
            unit="cps",
        )
    )
    layout.add(
        timeseries(
            "Backend sessions and queue",
            "Connections open through the backend, and connections waiting in its queue"
            " for a server slot (servers with maxconn).",
            [
                target(f"l4lb_backend_current_sessions{{{BACKEND}}}", "{{proxy}} sessions"),
                target(f"l4lb_backend_current_queue{{{BACKEND}}}", "{{proxy}} queued"),
            ],
        )
    )
    layout.add(
        timeseries(
            "Backend errors",
            "Failed connection attempts to its servers per second (econ); connections a"
            " server closed abruptly, or datagrams from servers dropped (eresp).",
            [
                target(rate("l4lb_backend_connection_errors_total", BACKEND), "{{proxy}} connect"),
                target(rate("l4lb_backend_response_errors_total", BACKEND), "{{proxy}} response"),
            ],
            unit="cps",
        )
    )
    layout.add(
        timeseries(
            "Backend retries and redispatches",
            "Failed connection attempts retried per second (retries), and connections"
            " moved to another server after a failure (option redispatch).",
            [
                target(rate("l4lb_backend_retry_warnings_total", BACKEND), "{{proxy}} retries"),
                target(
                    rate("l4lb_backend_redispatch_warnings_total", BACKEND),
                    "{{proxy}} redispatches",
                ),
            ],
            unit="cps",
        )
    )
    layout.add(
        timeseries(
            "Usable servers",
            "Active and backup servers usable now (UP, not in maintenance or drained).",
            [
                target(f"l4lb_backend_active_servers{{{BACKEND}}}", "{{proxy}} active"),
                target(f"l4lb_backend_backup_servers{{{BACKEND}}}", "{{proxy}} backup"),
            ],
        )
    )
    layout.add(
        timeseries(
            "Backend weight",
            "Total effective weight of the usable servers.",
            [target(f"l4lb_backend_weight{{{BACKEND}}}", "{{proxy}}")],
        )
    )


def server_state_code() -> str:
    """
    One number per server for its state: the code of the state whose
    C{l4lb_server_status} series is 1 (the others are 0).
    """
    parts = [
        f'l4lb_server_status{{{SERVER}, state="{state}"}} * {code}'
        for code, (state, _) in enumerate(SERVER_STATES, start=1)
    ]
    return "max by (instance, proxy, server) (" + " or ".join(parts) + ")"


def servers(layout: Layout) -> None:
    """
    The servers: state, last check, sessions, rate, errors, weight, checks.
    """
    layout.row("Servers: $backend / $server")
    layout.add(
        state_timeline(
            "Server status",
            "The state of each server over time: UP, DOWN, DRAIN, MAINT, NOLB, or"
            " no check for a server without health checks.",
            target(server_state_code(), "{{proxy}}/{{server}}"),
            [
                (code, state, colour)
                for code, (state, colour) in enumerate(SERVER_STATES, start=1)
            ],
        ),
        width=24,
        height=8,
    )
    layout.add(
        table(
            "Last health check",
            "The status of each server's last health check (L4OK, L4TOUT, L4CON, ...).",
            target(
                f"l4lb_server_check_status{{{SERVER}}} == 1", "", instant=True, table=True
            ),
            {"instance": "Instance", "proxy": "Backend", "server": "Server", "state": "State"},
        ),
        height=8,
    )
    layout.add(
        timeseries(
            "Health check failures",
            "Failed health checks and UP to DOWN transitions over five minutes.",
            [
                target(
                    f"increase(l4lb_server_check_failures_total{{{SERVER}}}[5m])",
                    "{{proxy}}/{{server}} failed",
                ),
                target(
                    f"increase(l4lb_server_check_up_down_total{{{SERVER}}}[5m])",
                    "{{proxy}}/{{server}} went down",
                ),
            ],
        )
    )
    layout.add(
        timeseries(
            "Server sessions",
            "Connections (TCP) or sessions (UDP) open to each server now.",
            [target(f"l4lb_server_current_sessions{{{SERVER}}}", "{{proxy}}/{{server}}")],
        )
    )
    layout.add(
        timeseries(
            "Server session rate",
            "Connections (TCP) or sessions (UDP) sent to each server per second.",
            [target(rate("l4lb_server_sessions_total", SERVER), "{{proxy}}/{{server}}")],
            unit="cps",
        )
    )
    layout.add(
        timeseries(
            "Server errors",
            "Failed connection attempts per second (econ); connections the server"
            " closed abruptly, or its datagrams dropped (eresp).",
            [
                target(
                    rate("l4lb_server_connection_errors_total", SERVER),
                    "{{proxy}}/{{server}} connect",
                ),
                target(
                    rate("l4lb_server_response_errors_total", SERVER),
                    "{{proxy}}/{{server}} response",
                ),
            ],
            unit="cps",
        )
    )
    layout.add(
        timeseries(
            "Server retries and redispatches",
            "Failed attempts to the server retried per second, and connections moved"
            " away from it to another server.",
            [
                target(
                    rate("l4lb_server_retry_warnings_total", SERVER),
                    "{{proxy}}/{{server}} retries",
                ),
                target(
                    rate("l4lb_server_redispatch_warnings_total", SERVER),
                    "{{proxy}}/{{server}} redispatches",
                ),
            ],
            unit="cps",
        )
    )
    layout.add(
        timeseries(
            "Server weight",
            "Effective weight (0 while drained, in maintenance or down; lower while"
            " slowstart warms the server up).",
            [target(f"l4lb_server_weight{{{SERVER}}}", "{{proxy}}/{{server}}")],
        )
    )


def udp(layout: Layout) -> None:
    """
    The C{mode udp} frontends: sessions, datagrams, drops.
    """
    layout.row("UDP: $frontend")
    layout.add(
        timeseries(
            "UDP sessions started",
            "UDP sessions (one per client address and port) started per second; the"
            " sessions open now are in Frontend sessions and limit.",
            [target(rate("l4lb_frontend_udp_sessions_total", FRONTEND), "{{proxy}}")],
            unit="cps",
        ),
        width=8,
    )
    layout.add(
        timeseries(
            "UDP datagrams",
            "Datagrams per second from clients (in) and from servers (out).",
            [
                target(rate("l4lb_frontend_udp_datagrams_in_total", FRONTEND), "{{proxy}} in"),
                target(rate("l4lb_frontend_udp_datagrams_out_total", FRONTEND), "{{proxy}} out"),
            ],
            unit="pps",
        ),
        width=8,
    )
    layout.add(
        timeseries(
            "UDP drops",
            "Per second: datagrams a frontend dropped, sessions it evicted at"
            " maxsessions, and ICMP port unreachable answers from the servers of a"
            " backend (filtered by the backend variable).",
            [
                target(rate("l4lb_frontend_udp_dropped_total", FRONTEND), "{{proxy}} dropped"),
                target(rate("l4lb_frontend_udp_evicted_total", FRONTEND), "{{proxy}} evicted"),
                target(
                    "sum by (instance, proxy) ("
                    + rate("l4lb_server_udp_refused_total", BACKEND)
                    + ")",
                    "{{proxy}} refused",
                ),
            ],
            unit="pps",
        ),
        width=8,
    )


def dashboard() -> Dict[str, Any]:
    """
    The whole dashboard, as Grafana 9 and 10 import it.
    """
    layout = Layout()
    process(layout)
    frontends(layout)
    backends(layout)
    servers(layout)
    udp(layout)
    variables = [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "options": [],
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
        },
        variable(
            "instance", "Instance", "label_values(l4lb_process_current_connections, instance)"
        ),
        variable(
            "frontend",
            "Frontend",
            f"label_values(l4lb_frontend_connections_total{{{INSTANCE}}}, proxy)",
        ),
        variable(
            "backend", "Backend", f"label_values(l4lb_backend_sessions_total{{{INSTANCE}}}, proxy)"
        ),
        variable(
            "server",
            "Server",
            f'label_values(l4lb_server_sessions_total{{{INSTANCE}, proxy=~"$backend"}}, server)',
        ),
    ]
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "9.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
            {"type": "panel", "id": "state-timeline", "name": "State timeline", "version": ""},
            {"type": "panel", "id": "table", "name": "Table", "version": ""},
        ],
        "title": "l4lb",
        "uid": "l4lb-overview",
        "description": "l4lb's frontends, backends and servers from its Prometheus metrics.",
        "tags": ["l4lb", "load balancer"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 36,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": variables},
        "panels": layout.panels,
    }


def render() -> str:
    """
    The dashboard's JSON text, as committed.
    """
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Write the dashboard, or with C{--check} say whether the committed one
    is current.
    """
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the JSON is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
