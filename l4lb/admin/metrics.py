"""
The statistics as Prometheus metrics, named as HAProxy's exporter names
them with the C{l4lb_} prefix (C{l4lb_server_current_sessions}, ...).

L{StatsCollector} is a C{prometheus_client} collector: each scrape reads
fresh rows from the service, so nothing is kept up to date in between.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from l4lb.admin.stats import Row
from l4lb.interfaces import IBalancerRuntime

#: The values of C{l4lb_server_status}'s C{state} label.
SERVER_STATES = ("UP", "DOWN", "DRAIN", "MAINT", "NOLB", "no check")

#: The values of C{l4lb_backend_status}'s C{state} label.
BACKEND_STATES = ("UP", "DOWN")

#: The process-wide gauges besides C{l4lb_process_current_connections},
#: by suffix, with their help text.
PROCESS = {
    "max_connections": "Connection limit of the process (maxconn); 0 for none.",
}

_FRONTEND = [
    ("current_sessions", "scur", "gauge", "Connections open now."),
    ("connections", "stot", "counter", "Connections accepted."),
    ("bytes_in", "bin", "counter", "Bytes received from clients."),
    ("bytes_out", "bout", "counter", "Bytes sent to clients."),
    ("limit_sessions", "slim", "gauge", "Connection limit."),
    ("denied_connections", "dcon", "counter", "Connections refused by a source rule or limit."),
    ("max_sessions", "smax", "gauge", "Most connections open at once."),
    ("sessions", "stot", "counter", "Sessions started."),
    ("request_errors", "ereq", "counter", "Datagrams from clients dropped (mode udp)."),
    ("limit_session_rate", "rate_lim", "gauge", "New connections allowed per second."),
    ("max_session_rate", "rate_max", "gauge", "Most new connections within one second."),
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
    ("max_queue", "qmax", "gauge", "Most connections waiting at once."),
    ("max_sessions", "smax", "gauge", "Most connections open at once."),
    (
        "response_errors",
        "eresp",
        "counter",
        "Connections closed abruptly by a server, or datagrams from servers dropped.",
    ),
    ("retry_warnings", "wretr", "counter", "Failed connection attempts retried."),
    (
        "redispatch_warnings",
        "wredis",
        "counter",
        "Connections sent to another server after a failure.",
    ),
    ("loadbalanced", "lbtot", "counter", "Times a server was picked."),
    ("max_session_rate", "rate_max", "gauge", "Most new connections within one second."),
    ("check_last_change_seconds", "lastchg", "gauge", "Seconds since a server last changed state."),
    ("downtime_seconds", "downtime", "counter", "Seconds with no usable server."),
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
    ("max_sessions", "smax", "gauge", "Most connections open at once."),
    ("limit_sessions", "slim", "gauge", "Connection limit (maxconn)."),
    (
        "response_errors",
        "eresp",
        "counter",
        "Connections it closed abruptly, or its datagrams dropped.",
    ),
    ("retry_warnings", "wretr", "counter", "Failed connection attempts to it retried."),
    ("redispatch_warnings", "wredis", "counter", "Connections sent elsewhere after failing on it."),
    ("loadbalanced", "lbtot", "counter", "Times it was picked."),
    ("max_session_rate", "rate_max", "gauge", "Most new connections within one second."),
    ("active", "act", "gauge", "1 for an active server."),
    ("backup", "bck", "gauge", "1 for a backup server."),
    ("current_throttle", "throttle", "gauge", "Percent of its weight while it warms up."),
    ("uweight", "uweight", "gauge", "Weight set by the configuration or the runtime API."),
    ("check_duration_seconds", "check_duration", "gauge", "Duration of the last health check."),
]

#: Columns kept in another unit than the metric's: a factor to apply.
_SCALE = {"check_duration": 0.001}


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
    @ivar process: Returns the other process-wide gauges by suffix (the
        keys of L{PROCESS}).
    """

    def __init__(
        self,
        rows: Callable[[], List[Row]],
        current_connections: Callable[[], int],
        process: Optional[Callable[[], Dict[str, float]]] = None,
    ):
        self.rows = rows
        self.current_connections = current_connections
        self.process = process

    def collect(self) -> Iterator[Metric]:
        """
        Yield every metric family.
        """
        process = GaugeMetricFamily(
            "l4lb_process_current_connections", "Connections open in the process."
        )
        process.add_metric([], self.current_connections())
        yield process
        values = self.process() if self.process is not None else {}
        for suffix, doc in PROCESS.items():
            gauge = GaugeMetricFamily(f"l4lb_process_{suffix}", doc)
            if suffix in values:
                gauge.add_metric([], float(values[suffix]))
            yield gauge
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
                        family.add_metric(
                            _labels(row, kind), float(value) * _SCALE.get(column, 1.0)
                        )
                yield family
        backend_status = GaugeMetricFamily(
            "l4lb_backend_status",
            "Backend state: 1 for the current one of UP (a server usable) and DOWN.",
            labels=["proxy", "state"],
        )
        for row in rows:
            if row.get("type") == "1":
                for state in BACKEND_STATES:
                    backend_status.add_metric(
                        [row["pxname"], state], 1.0 if row["status"] == state else 0.0
                    )
        yield backend_status
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


def registry_for(service: IBalancerRuntime, clock: Any) -> CollectorRegistry:
    """
    A registry holding only l4lb's metrics for C{service}.
    """
    from l4lb.admin.stats import stat_rows

    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        StatsCollector(  # type: ignore[arg-type]
            lambda: stat_rows(service, clock.seconds()),
            lambda: _current(service),
            lambda: _process(service),
        )
    )
    return registry


def _process(service: IBalancerRuntime) -> Dict[str, float]:
    """
    The process-wide limit, as C{show info}'s C{Maxconn}.  (No session
    rate here: with C{nbproc} the workers accept the connections, and
    C{rate()} of the frontends' C{l4lb_frontend_connections_total}, which
    count the workers' too, gives it.)
    """
    # A stand-in service in a test may carry only part of a limiter.
    limiter = service.limiter
    values: Dict[str, float] = {}
    if hasattr(limiter, "maxconn"):
        values["max_connections"] = float(limiter.maxconn)
    return values


def _current(service: IBalancerRuntime) -> int:
    """
    The connections open in the process, and in its workers (C{nbproc}).
    """
    current = int(service.limiter.current)
    workers = service.workers
    if workers is not None:
        current += int(workers.reading().get("current", 0))
    return current


__all__: List[str] = [
    "StatsCollector",
    "registry_for",
    "SERVER_STATES",
    "BACKEND_STATES",
    "PROCESS",
]
