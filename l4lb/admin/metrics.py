"""
The statistics as Prometheus metrics, named as HAProxy's exporter names
them with the C{l4lb_} prefix (C{l4lb_server_current_sessions}, ...).

L{StatsCollector} is a C{prometheus_client} collector: each scrape reads
fresh rows from the service, so nothing is kept up to date in between.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from l4lb.admin.stats import Row

#: The values of C{l4lb_server_status}'s C{state} label.
SERVER_STATES = ("UP", "DOWN", "DRAIN", "MAINT", "NOLB", "no check")

_FRONTEND = [
    ("current_sessions", "scur", "gauge", "Connections open now."),
    ("connections", "stot", "counter", "Connections accepted."),
    ("bytes_in", "bin", "counter", "Bytes received from clients."),
    ("bytes_out", "bout", "counter", "Bytes sent to clients."),
    ("limit_sessions", "slim", "gauge", "Connection limit."),
    ("denied_connections", "dcon", "counter", "Connections refused by a source rule or limit."),
]
_BACKEND = [
    ("current_sessions", "scur", "gauge", "Connections open now."),
    ("current_queue", "qcur", "gauge", "Connections waiting for a server."),
    ("sessions", "stot", "counter", "Connections handled."),
    ("bytes_in", "bin", "counter", "Bytes received from clients."),
    ("bytes_out", "bout", "counter", "Bytes sent to clients."),
    ("connection_errors", "econ", "counter", "Failed connection attempts to its servers."),
    ("active_servers", "act", "gauge", "Active servers usable now."),
    ("backup_servers", "bck", "gauge", "Backup servers usable now."),
    ("weight", "weight", "gauge", "Total weight of the usable servers."),
]
_SERVER = [
    ("current_sessions", "scur", "gauge", "Connections open now."),
    ("current_queue", "qcur", "gauge", "Connections waiting for this server."),
    ("sessions", "stot", "counter", "Connections handled."),
    ("bytes_in", "bin", "counter", "Bytes relayed to the server."),
    ("bytes_out", "bout", "counter", "Bytes relayed from the server."),
    ("connection_errors", "econ", "counter", "Failed connection attempts."),
    ("weight", "weight", "gauge", "Effective weight."),
    ("check_failures", "chkfail", "counter", "Failed health checks."),
    ("check_up_down", "chkdown", "counter", "UP to DOWN transitions."),
    ("check_last_change_seconds", "lastchg", "gauge", "Seconds since the last state change."),
    ("downtime_seconds", "downtime", "counter", "Seconds spent DOWN."),
]


#: The UDP counters of C{mode udp} frontends, backends and servers.
_UDP = [
    ("udp_sessions", "udp_sessions", "counter", "UDP sessions started."),
    ("udp_datagrams_in", "udp_datagrams_in", "counter", "Datagrams from clients."),
    ("udp_datagrams_out", "udp_datagrams_out", "counter", "Datagrams from servers."),
    ("udp_dropped", "udp_dropped", "counter", "Datagrams dropped."),
    ("udp_refused", "udp_refused", "counter", "ICMP port unreachable answers from servers."),
    ("udp_evicted", "udp_evicted", "counter", "Sessions evicted at maxsessions."),
]


class StatsCollector:
    """
    Collects the metrics from fresh statistics rows at each scrape.

    @ivar rows: Returns the current rows (L{l4lb.admin.stats.stat_rows}).
    @ivar current_connections: Returns the process's open connections.
    """

    def __init__(self, rows: Callable[[], List[Row]], current_connections: Callable[[], int]):
        self.rows = rows
        self.current_connections = current_connections

    def collect(self) -> Iterator[Metric]:
        """
        Yield every metric family.
        """
        process = GaugeMetricFamily(
            "l4lb_process_current_connections", "Connections open in the process."
        )
        process.add_metric([], self.current_connections())
        yield process
        rows = self.rows()
        kinds = {
            "0": ("frontend", _FRONTEND + _UDP),
            "1": ("backend", _BACKEND + _UDP),
            "2": ("server", _SERVER + _UDP),
        }
        for type_, (kind, columns) in kinds.items():
            chosen = [r for r in rows if r.get("type") == type_]
            labels = ["proxy", "server"] if kind == "server" else ["proxy"]
            for suffix, column, metric_type, doc in columns:
                name = f"l4lb_{kind}_{suffix}"
                family: Any = (
                    CounterMetricFamily(name, doc, labels=labels)
                    if metric_type == "counter"
                    else GaugeMetricFamily(name, doc, labels=labels)
                )
                for row in chosen:
                    value = row.get(column, "")
                    if value != "":
                        family.add_metric(_labels(row, kind), float(value))
                yield family
        servers = [r for r in rows if r.get("type") == "2"]
        status = GaugeMetricFamily(
            "l4lb_server_status",
            "Server state: 1 for the current one of UP, DOWN, DRAIN, MAINT, NOLB, no check.",
            labels=["proxy", "server", "state"],
        )
        check = GaugeMetricFamily(
            "l4lb_server_check_status",
            "Status code of the last health check: 1 for the current one.",
            labels=["proxy", "server", "state"],
        )
        for row in servers:
            current = row["status"].split(" ")[0] if row["status"] != "no check" else "no check"
            for state in SERVER_STATES:
                status.add_metric(_labels(row, "server") + [state], 1.0 if state == current else 0.0)
            if row.get("check_status"):
                check.add_metric(_labels(row, "server") + [row["check_status"]], 1.0)
        yield status
        yield check


def _labels(row: Row, kind: str) -> List[str]:
    return [row["pxname"], row["svname"]] if kind == "server" else [row["pxname"]]


def registry_for(service: Any, clock: Any) -> CollectorRegistry:
    """
    A registry holding only l4lb's metrics for C{service}.
    """
    from l4lb.admin.stats import stat_rows

    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        StatsCollector(  # type: ignore[arg-type]
            lambda: stat_rows(service, clock.seconds()), lambda: _current(service)
        )
    )
    return registry


def _current(service: Any) -> int:
    """
    The connections open in the process, and in its workers (C{nbproc}).
    """
    current = int(service.limiter.current)
    workers = getattr(service, "workers", None)
    if workers is not None:
        current += int(workers.reading().get("current", 0))
    return current


__all__: List[str] = ["StatsCollector", "registry_for", "SERVER_STATES"]
