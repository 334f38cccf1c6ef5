"""
Tests for the Grafana dashboard in C{etc/grafana-l4lb.json}: it is what its
generator writes, it imports into Grafana 9 and 10, and every metric its
queries read is one that L{l4lb.admin.metrics} exports.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any, Dict, List, Set

import pytest
from prometheus_client.registry import CollectorRegistry

from l4lb.admin.fields import FIELDS
from l4lb.admin.metrics import StatsCollector, registry_for
from l4lb.config.model import Config
from l4lb.udp.counters import UdpCounters
from tests.grafanakit import DASHBOARD, GENERATOR, TARGET_LABELS, load, parse, queries
from tests.relaykit import Relay
from tests.runtimekit import stand_in


def generator() -> ModuleType:
    """
    The dashboard's generator, loaded from its file.
    """
    spec = importlib.util.spec_from_file_location("make_dashboard", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def full_rows() -> List[Dict[str, str]]:
    """
    A frontend, a server and a backend row with every column filled, the
    UDP ones included, so that every family of the collector has samples.
    """
    columns = list(FIELDS) + ["udp_" + name for name in UdpCounters().as_dict()]
    rows = []
    kinds = (("0", "FRONTEND", "OPEN"), ("2", "s1", "UP"), ("1", "BACKEND", "UP"))
    for type_, svname, status in kinds:
        row = {column: "1" for column in columns}
        row.update(pxname="be", svname=svname, type=type_, status=status, check_status="L4OK")
        rows.append(row)
    return rows


def exported() -> Dict[str, Set[str]]:
    """
    Every sample name l4lb's metrics code exports, with the labels of each:
    the families of the registry C{/metrics} serves, over a balancer held
    in memory, and their labels from the collector given rows with every
    column filled.  Nothing is listed by hand, so that a metric removed
    from the code is missing here too.
    """
    relay = Relay()
    service: Any = stand_in(
        config=Config(frontends=(relay.frontend.spec,), backends=(relay.backend.spec,)),
        frontends={"fe": relay.frontend},
        udp_frontends={},
        backends={"be": relay.backend},
        limiter=relay.limiter,
    )
    names: Dict[str, Set[str]] = {}
    for family in registry_for(service, relay.reactor).collect():
        # A counter family is named without its suffix; its samples carry it.
        name = family.name + "_total" if family.type == "counter" else family.name
        names[name] = set()
    full = CollectorRegistry(auto_describe=False)
    full.register(StatsCollector(full_rows, lambda: 0))  # type: ignore[arg-type]
    for family in full.collect():
        for sample in family.samples:
            if sample.name in names:
                names[sample.name] |= set(sample.labels)
    return names


def test_committed_json_is_the_generators() -> None:
    """
    The committed JSON is exactly what the generator writes, so that a
    change to one without the other is caught.
    """
    assert DASHBOARD.read_text() == generator().render(), (
        "etc/grafana-l4lb.json is stale: run python etc/grafana/make_dashboard.py"
    )


def test_dashboard_imports_into_grafana_9_and_10() -> None:
    """
    The dashboard has what Grafana 9 and 10 need to import it: a schema
    version they migrate from, a Prometheus datasource variable every panel
    and variable reads, the instance, frontend, backend and server
    variables, and unique panel ids on a grid 24 columns wide.
    """
    board = load()
    assert 36 <= board["schemaVersion"] <= 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"instance", "frontend", "backend", "server"} <= set(variables)
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
    for name in ("instance", "frontend", "backend", "server"):
        assert variables[name]["datasource"] == datasource


def test_every_queried_metric_is_exported() -> None:
    """
    Every metric named in every panel query and variable query is one that
    l4lb's metrics registry exports, and carries the l4lb labels the query
    matches, groups or shows (instance and job come from Prometheus).
    """
    names = exported()
    found = queries(load())
    assert len(found) >= 30
    missing = []
    for query in found:
        assert query.selectors, query.where
        for selector in query.selectors:
            if selector.metric not in names:
                missing.append(f"{query.where}: {selector.metric}")
                continue
            wanted = set(query.labels) - TARGET_LABELS
            lacking = sorted(wanted - names[selector.metric])
            if lacking:
                missing.append(f"{query.where}: {selector.metric} lacks {lacking}")
    assert not missing, "\n".join(missing)


def test_dashboard_covers_the_operators_metrics() -> None:
    """
    The dashboard shows the frontend session rate, sessions against the
    limit, bytes, backend and server errors, retries and redispatches,
    server and check status, weight, queue, the process's connections
    against maxconn, and the UDP counters.
    """
    used = {s.metric for q in queries(load()) for s in q.selectors}
    assert {
        "l4lb_frontend_connections_total",
        "l4lb_frontend_current_sessions",
        "l4lb_frontend_limit_sessions",
        "l4lb_frontend_bytes_in_total",
        "l4lb_frontend_bytes_out_total",
        "l4lb_backend_connection_errors_total",
        "l4lb_backend_retry_warnings_total",
        "l4lb_backend_redispatch_warnings_total",
        "l4lb_backend_current_queue",
        "l4lb_server_current_sessions",
        "l4lb_server_connection_errors_total",
        "l4lb_server_status",
        "l4lb_server_check_status",
        "l4lb_server_weight",
        "l4lb_process_current_connections",
        "l4lb_process_max_connections",
        "l4lb_frontend_udp_sessions_total",
        "l4lb_frontend_udp_datagrams_in_total",
    } <= used


@pytest.mark.parametrize(
    "expr, metrics, grouping",
    [
        ('rate(l4lb_a_total{proxy=~"$x"}[1m])', ["l4lb_a_total"], set()),
        (
            'max by (proxy, server) (l4lb_s{state="UP"} * 1 or l4lb_s{state="DOWN"} * 2)',
            ["l4lb_s", "l4lb_s"],
            {"proxy", "server"},
        ),
        ("sum(rate(l4lb_b[5m])) without (job) / l4lb_c == 1", ["l4lb_b", "l4lb_c"], {"job"}),
        ("rate(l4lb_a[1m]) + bogus_metric", ["l4lb_a", "bogus_metric"], set()),
    ],
)
def test_promql_reader(expr: str, metrics: list, grouping: set) -> None:
    """
    The reader used above finds every metric of an expression and the
    labels it groups by, and takes an unknown bare name for a metric (so
    that a bogus one fails the comparison).
    """
    selectors, groups = parse(expr)
    assert [s.metric for s in selectors] == metrics
    assert groups == grouping
