"""
Tests for the HTML statistics page's content (L{l4lb.admin.html},
L{l4lb.admin.summary}) and for the statistics columns it needs that the
shared rows fill (L{l4lb.admin.stats}, L{l4lb.eventrate}): session rates,
maximum sessions, retries, redispatches and response errors.
"""

from __future__ import annotations

import base64
import hashlib
import re
from types import SimpleNamespace
from typing import Any, Dict, Tuple

from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from l4lb.admin.history import StatsHistory
from l4lb.admin.html import CONTENT_SECURITY_POLICY, check_text, stat_html, status_class
from l4lb.admin.stats import Row, stat_rows
from l4lb.admin.summary import read_summary, summary_items
from l4lb.admin.web import StatsRoot
from l4lb.config.model import Config, ServerSpec
from l4lb.eventrate import EventRate
from tests.relaykit import Relay
from tests.runtimekit import stand_in
from tests.test_admin_web import get


def spec(name: str, n: int, **options: Any) -> ServerSpec:
    """
    A server C{name} on 127.0.10.N:80 (never connected to).
    """
    return ServerSpec(name=name, host=f"127.0.10.{n}", port=80, address=f"127.0.10.{n}", **options)


def fleet() -> Tuple[Relay, Any]:
    """
    A relay whose backend has an active server, a backup and a server
    disabled in the configuration, and a service over it.
    """
    relay = Relay((spec("s1", 1), spec("bk", 2, backup=True), spec("off", 3, disabled=True)))
    service = stand_in(
        config=Config(frontends=(relay.frontend.spec,), backends=(relay.backend.spec,)),
        frontends={"fe": relay.frontend},
        udp_frontends={},
        backends={"be": relay.backend},
        limiter=relay.limiter,
    )
    return relay, service


def by_name(rows: Any) -> Dict[str, Row]:
    """
    The rows by C{svname}.
    """
    return {row["svname"]: row for row in rows}


def test_event_rate_over_the_last_second() -> None:
    """
    The rate counts the events of the last elapsed second, weighing the
    previous second by its part still inside it; the maximum is the most
    events within one second, and a quiet spell brings the rate to 0.
    """
    rate = EventRate()
    for t in (10.1, 10.2, 10.3, 10.9):
        rate.hit(t)
    assert rate.rate(10.95) == 4
    assert rate.rate(11.5) == 2
    rate.hit(11.6)
    assert rate.rate(11.6) == 1 + 2
    assert rate.max == 4
    assert rate.rate(13.0) == 0
    rate.clear()
    assert rate.max == 0


def test_rows_fill_rate_smax_and_warnings() -> None:
    """
    The shared rows (so C{show stat} too) fill C{rate}, C{rate_max} and
    C{smax} for the frontend, the backend and the server, C{wretr} and
    C{wredis} for retried and redispatched connections, and C{eresp} for a
    server that reset an established connection.
    """
    relay, service = fleet()
    relay = Relay(retries=1, redispatch=1)
    service.frontends = {"fe": relay.frontend}
    service.backends = {"be": relay.backend}
    service.limiter = relay.limiter
    relay.reactor.advance(100.2)
    client, _ = relay.accept()
    relay.fail(error.ConnectionRefusedError())
    server, _ = relay.complete()
    relay.accept()
    relay.complete()
    rows = by_name(stat_rows(service, relay.reactor.seconds()))
    assert (rows["FRONTEND"]["rate"], rows["FRONTEND"]["rate_max"]) == ("2", "2")
    assert rows["FRONTEND"]["smax"] == "2"
    assert (rows["BACKEND"]["rate"], rows["BACKEND"]["smax"]) == ("2", "2")
    # The first was refused by s1 and redispatched to s2; both are on s2.
    # As in HAProxy, a redispatched retry is no wretr, and a connection
    # that was connected in the end is no econ.
    assert (rows["s1"]["wretr"], rows["s1"]["wredis"], rows["s1"]["econ"]) == ("0", "1", "0")
    assert (rows["s2"]["wretr"], rows["s2"]["wredis"]) == ("0", "0")
    assert (rows["BACKEND"]["wretr"], rows["BACKEND"]["wredis"]) == ("0", "1")
    assert (rows["s1"]["rate"], rows["s1"]["smax"]) == ("1", "1")
    assert (rows["s2"]["rate"], rows["s2"]["smax"]) == ("2", "2")
    assert server is not None
    server.connectionLost(Failure(error.ConnectionLost()))
    client.connectionLost(Failure(error.ConnectionDone()))
    relay.reactor.advance(5)
    rows = by_name(stat_rows(service, relay.reactor.seconds()))
    assert rows["s2"]["eresp"] == "1" and rows["BACKEND"]["eresp"] == "1"
    assert rows["FRONTEND"]["rate"] == "0" and rows["FRONTEND"]["rate_max"] == "2"
    assert rows["s2"]["scur"] == "1" and rows["s2"]["smax"] == "2"


def test_summary_of_the_process() -> None:
    """
    The summary gives the version, the pid, the uptime, the connections
    against maxconn and the session rate now and at its highest.
    """
    relay, service = fleet()
    relay.limiter.maxconn = 500
    relay.reactor.advance(3725.5)
    relay.accept()
    relay.accept()
    rows = stat_rows(service, relay.reactor.seconds())
    summary = read_summary(service, relay.reactor.seconds(), 0.0, rows)
    items = dict(summary_items(summary))
    import l4lb
    import os

    assert items["Version"] == l4lb.__version__
    assert items["Pid"] == str(os.getpid())
    assert items["Uptime"] == "0d 1h02m05s"
    assert items["Connections"] == "2 / maxconn 500"
    assert items["Session rate"] == "2/s (max 2/s)"
    assert "UDP sessions" not in items
    html = stat_html(rows, summary)
    assert "<th>Uptime</th><td>0d 1h02m05s</td>" in html


def test_summary_with_workers_and_udp() -> None:
    """
    With C{nbproc} the summary lists the workers' pids and adds their
    connections; UDP sessions are shown against the frontends' capacity.
    """
    relay, service = fleet()
    service.workers = SimpleNamespace(
        live=lambda: [SimpleNamespace(pid=4001), SimpleNamespace(pid=4002)],
        reading=lambda: {"current": 7},
    )
    service.udp_frontends = {
        "dns": SimpleNamespace(current=3, table=SimpleNamespace(capacity=1000))
    }
    rows = [{"type": "0", "mode": "tcp", "rate": "5", "rate_max": "9"}]
    items = dict(summary_items(read_summary(service, 10.0, 0.0, rows)))
    assert items["Pid"].endswith("(workers 4001, 4002)")
    assert items["Connections"].startswith("7 / ")
    assert items["Session rate"] == "5/s (max 9/s)"
    assert items["UDP sessions"] == "3 / 1000"


def test_backup_is_marked() -> None:
    """
    A backup server's row is marked (class C{k}, its name followed by
    I{backup} by the style sheet, its UP status blue) and its C{Bck}
    column says so; an active server's is not.
    """
    relay, service = fleet()
    html = stat_html(stat_rows(service, 0.0))
    backup = re.search(r"<tr class='k'><td class='n'>bk</td>.*?</tr>", html)
    assert backup is not None
    assert "<td class='nocheck k'>no check</td>" in backup.group(0)
    assert "<tr class='s'><td class='n'>s1</td>" in html
    assert "tr.k td.n::after" in html and "td.k.up{" in html


def test_maintenance_shows_why() -> None:
    """
    A server in maintenance shows why in its check column, instead of a
    check status (its checks do not run): disabled in the configuration,
    set at run time, set by the agent check, or no address.
    """
    relay, service = fleet()
    rows = by_name(stat_rows(service, 0.0))
    assert check_text(rows["off"]) == "MAINT: disabled in the configuration"
    s1 = relay.backend.server("s1")
    s1.check_status = "INI"
    s1.set_admin("maint")
    assert check_text(by_name(stat_rows(service, 0.0))["s1"]) == "MAINT: set at run time"
    s1.set_admin("maint", "agent")
    assert check_text(by_name(stat_rows(service, 0.0))["s1"]) == "MAINT: set by the agent check"
    s1.set_admin("ready")
    s1.address = None
    row = by_name(stat_rows(service, 0.0))["s1"]
    assert check_text(row) == "no address (host name not resolved)"
    s1.set_admin("maint", "")
    assert check_text(by_name(stat_rows(service, 0.0))["s1"]) == "MAINT: no address"
    html = stat_html(stat_rows(service, 0.0))
    assert ">INI<" not in html and "MAINT: disabled in the configuration" in html


def test_check_column_of_a_checked_server() -> None:
    """
    A checked server's check column gives the status, the duration and,
    for a failure, what the check reported.
    """
    row = {"type": "2", "addr": "127.0.10.1:80", "status": "DOWN", "check_status": "L4CON",
           "check_duration": "1", "check_desc": "Connection refused"}
    assert check_text(row) == "L4CON in 1ms: Connection refused"
    row.update(status="UP", check_status="L4OK", check_desc="")
    assert check_text(row) == "L4OK in 1ms"


def test_status_colours() -> None:
    """
    Each state has its colour class, a server going down or up its own.
    """
    assert [status_class(s) for s in ("UP", "UP 1/3", "DOWN", "DOWN 1/2", "DRAIN", "MAINT",
                                       "no check", "OPEN", "NOLB")] == [
        "up", "goingdown", "down", "goingup", "drain", "maint", "nocheck", "open", "nolb"]


def test_columns_and_sparklines() -> None:
    """
    The page has HAProxy's column groups and, with a history, three
    sparklines per row in the trend columns.
    """
    relay, service = fleet()
    clock = Clock()
    history = StatsHistory(clock, lambda: stat_rows(service, clock.seconds()))
    history.startService()
    first = stat_html(stat_rows(service, 0.0), None, history)
    # One sample: the current sessions are known, not yet the rates and
    # errors, which take two.
    assert first.count("<polyline ") == 5
    clock.advance(5)
    html = stat_html(stat_rows(service, 0.0), None, history)
    for group in ("Queue", "Session rate", "Sessions", "Bytes", "Denied", "Errors", "Warnings",
                  "Server", "Trends, last 10s"):
        assert f">{group}</th>" in html
    for heading in ("Retr", "Redis", "Dwntme", "Chk", "Dwn", "Bck"):
        assert f"<th>{heading}</th>" in html
    # Frontend, three servers and the backend: three sparklines each.
    assert html.count("<svg ") == 5 * 3
    assert html.count("<polyline ") == 5 * 3


def test_page_carries_its_content_security_policy() -> None:
    """
    C{/} is sent with a Content-Security-Policy that allows nothing to
    load and no script, and whose style hash is that of the page's only
    C{<style>} element; the page has no style attribute and no script.
    """
    relay, service = fleet()
    root = StatsRoot(service, relay.reactor)
    request_code, body = get(root, b"/")
    text = body.decode()
    assert request_code == 200
    style = re.search(r"<style>(.*?)</style>", text, re.S)
    assert style is not None and text.count("<style>") == 1
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    assert CONTENT_SECURITY_POLICY.startswith("default-src 'none';")
    assert "style=" not in text and "<script" not in text

    from twisted.web.test.requesthelper import DummyRequest
    from twisted.web.resource import getChildForRequest

    request = DummyRequest([b""])
    getChildForRequest(root, request).render(request)
    assert request.responseHeaders.getRawHeaders(b"content-security-policy") == [
        CONTENT_SECURITY_POLICY.encode()
    ]
    csv_request = DummyRequest([b";csv"])
    getChildForRequest(root, csv_request).render(csv_request)
    assert csv_request.responseHeaders.getRawHeaders(b"content-security-policy") is None


def test_page_size_with_a_thousand_busy_servers() -> None:
    """
    With 1,000 servers and 15 minutes of trends that move at every sample
    (the longest sparklines), the page stays under 2,000,000 bytes: about
    1.8 KB per server.
    """
    import random

    chance = random.Random(7)
    servers = [f"srv{i:04d}" for i in range(1000)]

    def rows(n: int) -> Any:
        listed = [{"pxname": "web", "svname": "FRONTEND", "type": "0", "stot": str(900 * n),
                   "scur": str(n % 50), "status": "OPEN"}]
        for name in servers:
            listed.append({
                "pxname": "web", "svname": name, "type": "2", "status": "UP",
                "stot": str(n * chance.randint(0, 20)), "scur": str(chance.randint(0, 30)),
                "econ": str(n // chance.randint(1, 9)), "eresp": "0", "qcur": "0",
                "rate": "13", "rate_max": "120", "smax": "31", "bin": "1234567890",
                "bout": "9876543210", "check_status": "L4OK", "check_duration": "1",
                "weight": "1", "act": "1", "bck": "0", "chkfail": "3", "chkdown": "1",
                "lastchg": "3600", "downtime": "12", "wretr": "4", "wredis": "1",
                "addr": "127.0.0.1:8080",
            })
        listed.append({"pxname": "web", "svname": "BACKEND", "type": "1", "stot": str(900 * n),
                       "scur": "50", "status": "UP"})
        return listed

    clock = Clock()
    sample = {"n": 0}

    def read() -> Any:
        sample["n"] += 1
        return rows(sample["n"])

    history = StatsHistory(clock, read)
    history.startService()
    for _ in range(200):
        clock.advance(5)
    page = stat_html(rows(1000), None, history)
    assert page.count("<polyline ") == 3 * 1002
    size = len(page.encode("utf-8"))
    print(f"page with 1,000 busy servers: {size} bytes")
    assert size < 2_000_000, size
