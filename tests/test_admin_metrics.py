"""
Tests for L{l4lb.admin.metrics}: the statistics columns an operator reads
on HAProxy's exporter (errors, retries, redispatches, queue, limits, rates,
check duration, backend status, the process's maxconn) under HAProxy's
names with the C{l4lb_} prefix and the right types.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from twisted.internet import error

from l4lb.admin.metrics import StatsCollector, registry_for
from l4lb.config.model import Config
from tests.relaykit import Relay
from tests.runtimekit import stand_in

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> "tuple[Samples, Dict[str, str]]":
    """
    The samples of an exposition by name and labels, and each family's
    type, read back with prometheus_client's parser.
    """
    text = generate_latest(registry).decode()
    samples: Samples = {}
    types: Dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def collector_over(rows: List[Dict[str, str]]) -> CollectorRegistry:
    """
    A registry holding a collector over fixed rows.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(lambda: rows, lambda: 3))  # type: ignore[arg-type]
    return registry


def test_columns_under_haproxy_exporter_names() -> None:
    """
    The error, retry, redispatch, queue, limit, rate and check columns of
    the rows are exported under HAProxy's exporter suffixes: counters with
    C{_total}, gauges without, the check duration in seconds.
    """
    rows = [
        {"pxname": "fe", "svname": "FRONTEND", "type": "0", "status": "OPEN", "smax": "7",
         "rate_lim": "50", "rate_max": "9", "ereq": "2", "stot": "11"},
        {"pxname": "be", "svname": "s1", "type": "2", "status": "UP", "eresp": "1",
         "wretr": "4", "wredis": "2", "slim": "30", "smax": "5", "act": "0", "bck": "1",
         "check_duration": "12", "throttle": "40", "uweight": "3", "lbtot": "8",
         "check_status": "L4OK"},
        {"pxname": "be", "svname": "BACKEND", "type": "1", "status": "DOWN", "qmax": "6",
         "eresp": "1", "wretr": "4", "wredis": "2", "lastchg": "15"},
    ]
    samples, types = scrape(collector_over(rows))
    fe, be, s1 = (("proxy", "fe"),), (("proxy", "be"),), (("proxy", "be"), ("server", "s1"))
    expected = {
        ("l4lb_frontend_max_sessions", fe): 7,
        ("l4lb_frontend_limit_session_rate", fe): 50,
        ("l4lb_frontend_max_session_rate", fe): 9,
        ("l4lb_frontend_request_errors_total", fe): 2,
        ("l4lb_frontend_sessions_total", fe): 11,
        ("l4lb_server_response_errors_total", s1): 1,
        ("l4lb_server_retry_warnings_total", s1): 4,
        ("l4lb_server_redispatch_warnings_total", s1): 2,
        ("l4lb_server_limit_sessions", s1): 30,
        ("l4lb_server_max_sessions", s1): 5,
        ("l4lb_server_active", s1): 0,
        ("l4lb_server_backup", s1): 1,
        ("l4lb_server_check_duration_seconds", s1): 0.012,
        ("l4lb_server_current_throttle", s1): 40,
        ("l4lb_server_uweight", s1): 3,
        ("l4lb_server_loadbalanced_total", s1): 8,
        ("l4lb_backend_max_queue", be): 6,
        ("l4lb_backend_response_errors_total", be): 1,
        ("l4lb_backend_retry_warnings_total", be): 4,
        ("l4lb_backend_redispatch_warnings_total", be): 2,
        ("l4lb_backend_check_last_change_seconds", be): 15,
        ("l4lb_backend_status", be + (("state", "DOWN"),)): 1,
        ("l4lb_backend_status", be + (("state", "UP"),)): 0,
    }
    assert {key: samples.get(key) for key in expected} == expected
    for counter in ("l4lb_backend_retry_warnings", "l4lb_server_redispatch_warnings",
                    "l4lb_frontend_request_errors", "l4lb_server_loadbalanced"):
        assert types[counter] == "counter", counter
    for gauge in ("l4lb_backend_max_queue", "l4lb_server_check_duration_seconds",
                  "l4lb_backend_status", "l4lb_process_max_connections"):
        assert types[gauge] == "gauge", gauge


def test_empty_columns_give_no_sample() -> None:
    """
    A column l4lb leaves empty in a row (no check, no slowstart) gives no
    sample for that proxy rather than a made-up zero.
    """
    rows = [{"pxname": "be", "svname": "s1", "type": "2", "status": "no check",
             "check_duration": "", "throttle": ""}]
    samples, _ = scrape(collector_over(rows))
    names = {name for name, _ in samples}
    assert "l4lb_server_check_duration_seconds" not in names
    assert "l4lb_server_current_throttle" not in names
    labels = (("proxy", "be"), ("server", "s1"), ("state", "no check"))
    assert samples[("l4lb_server_status", labels)] == 1


def test_retries_redispatches_and_process_limits_of_a_relay() -> None:
    """
    Over a relay, a connection refused twice and redispatched on its last
    retry counts one retry (the first, to the same server) and one
    redispatch (the last) on the backend and the refusing server, as
    HAProxy counts them; the process exports its maxconn.
    """
    relay = Relay(retries=2, redispatch=-1, global_maxconn=100)
    service: Any = stand_in(
        config=Config(frontends=(relay.frontend.spec,), backends=(relay.backend.spec,)),
        frontends={"fe": relay.frontend},
        udp_frontends={},
        backends={"be": relay.backend},
        limiter=relay.limiter,
    )
    relay.reactor.advance(1000.0)
    relay.accept()
    relay.fail(error.ConnectionRefusedError())
    relay.reactor.advance(1.0)
    relay.fail(error.ConnectionRefusedError())
    relay.complete()
    samples, _ = scrape(registry_for(service, relay.reactor))
    be, s1 = (("proxy", "be"),), (("proxy", "be"), ("server", "s1"))
    assert samples[("l4lb_backend_retry_warnings_total", be)] == 1
    assert samples[("l4lb_backend_redispatch_warnings_total", be)] == 1
    assert samples[("l4lb_server_retry_warnings_total", s1)] == 1
    assert samples[("l4lb_server_redispatch_warnings_total", s1)] == 1
    assert samples[("l4lb_process_max_connections", ())] == 100
    assert samples[("l4lb_process_current_connections", ())] == 1
