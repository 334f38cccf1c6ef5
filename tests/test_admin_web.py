"""
Tests for L{l4lb.admin.web}, L{l4lb.admin.metrics}, L{l4lb.admin.html} and
the JSON rendering: the statistics pages over a balancer held in memory.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from typing import Any, Optional, Tuple

from prometheus_client.parser import text_string_to_metric_families
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from l4lb.admin.fields import FIELDS
from l4lb.admin.html import duration
from l4lb.admin.web import StatsRoot
from l4lb.config.model import Config
from tests.relaykit import Relay
from tests.runtimekit import stand_in


def make(auth: Optional[Tuple[str, str]] = None) -> "tuple[Relay, StatsRoot]":
    """
    A relay with one open connection to s1, and the pages over it.
    """
    relay = Relay()
    service: Any = stand_in(
        config=Config(frontends=(relay.frontend.spec,), backends=(relay.backend.spec,)),
        frontends={"fe": relay.frontend},
        udp_frontends={},
        backends={"be": relay.backend},
        limiter=relay.limiter,
    )
    relay.accept()
    relay.complete()
    return relay, StatsRoot(service, relay.reactor, auth)


def get(root: StatsRoot, path: bytes, method: bytes = b"GET", user: str = "") -> "tuple[int, bytes]":
    """
    Fetch C{path} and return the status code and body.
    """
    request = DummyRequest([p for p in path.lstrip(b"/").split(b"/")])
    request.method = method
    if user:
        request.requestHeaders.setRawHeaders(
            b"authorization", [b"Basic " + base64.b64encode(user.encode())]
        )
    resource = getChildForRequest(root, request)
    try:
        body = resource.render(request)
    except UnsupportedMethod:
        return 405, b""
    if isinstance(body, bytes):
        request.write(body)
    return (request.responseCode or 200), b"".join(request.written)


def test_csv_pages_parse_into_columns() -> None:
    """
    C{/;csv} and C{/stats.csv} give the same CSV, which the csv module reads
    into HAProxy's columns.
    """
    _, root = make()
    code, body = get(root, b"/;csv")
    assert code == 200
    assert get(root, b"/stats.csv")[1] == body
    lines = body.decode().splitlines()
    header = lines[0][2:].split(",")
    assert header[: len(FIELDS)] == list(FIELDS)
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[1:])), fieldnames=header))
    s1 = [r for r in rows if r["svname"] == "s1"][0]
    assert s1["scur"] == "1"


def test_json_has_the_same_rows() -> None:
    """
    C{/stats.json} has one object per CSV row, numbers as numbers.
    """
    _, root = make()
    data = json.loads(get(root, b"/stats.json")[1])
    assert [(r["pxname"], r["svname"]) for r in data["stats"]] == [
        ("fe", "FRONTEND"),
        ("be", "s1"),
        ("be", "s2"),
        ("be", "BACKEND"),
    ]
    assert data["stats"][1]["scur"] == 1


def test_metrics_parse_with_prometheus_parser() -> None:
    """
    C{/metrics} parses with prometheus_client's parser and uses HAProxy's
    exporter names with the l4lb_ prefix.
    """
    relay, root = make()
    relay.backend.server("s2").set_admin("drain")
    families = {
        f.name: f for f in text_string_to_metric_families(get(root, b"/metrics")[1].decode())
    }
    for name in (
        "l4lb_server_current_sessions",
        "l4lb_server_status",
        "l4lb_server_weight",
        "l4lb_server_connection_errors",
        "l4lb_server_bytes_in",
        "l4lb_server_bytes_out",
        "l4lb_server_current_queue",
        "l4lb_frontend_current_sessions",
        "l4lb_frontend_connections",
        "l4lb_process_current_connections",
    ):
        assert name in families, name
    current = {
        s.labels["server"]: s.value for s in families["l4lb_server_current_sessions"].samples
    }
    assert current == {"s1": 1.0, "s2": 0.0}
    drained = [
        s.labels["state"]
        for s in families["l4lb_server_status"].samples
        if s.labels["server"] == "s2" and s.value == 1.0
    ]
    assert drained == ["DRAIN"]


def test_html_page_lists_servers_and_refreshes() -> None:
    """
    C{/} is an HTML page that refreshes itself and lists every server with
    its status.
    """
    _, root = make()
    code, body = get(root, b"/")
    text = body.decode()
    assert code == 200
    assert "http-equiv='refresh'" in text
    assert ">s1<" in text and ">s2<" in text and ">BACKEND<" in text


def test_only_reading_methods() -> None:
    """
    No page changes anything: methods other than GET and HEAD are refused.
    """
    _, root = make()
    for path in (b"/", b"/;csv", b"/stats.json"):
        assert get(root, path, b"POST")[0] == 405


def test_basic_auth() -> None:
    """
    With C{stats auth}, a request without the right credentials gets 401
    and no data; the right ones get the page.
    """
    _, root = make(("ops", "pa:ss"))
    for user in ("", "ops:wrong", "other:pa:ss"):
        code, body = get(root, b"/;csv", user=user)
        assert code == 401 and b"pxname" not in body
        assert get(root, b"/", user=user)[0] == 401
    assert get(root, b"/;csv", user="ops:pa:ss")[0] == 200


def test_duration() -> None:
    """
    The time since a change reads as s, m, h or d.
    """
    assert [duration(s) for s in ("5", "65", "3700", "90000", "")] == [
        "5s",
        "1m05s",
        "1h01m",
        "1d01h",
        "",
    ]
