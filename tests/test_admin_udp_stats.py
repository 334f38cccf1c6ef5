"""
C{mode udp} proxies in the statistics: a frontend row, backend and server
rows with sessions, datagrams, bytes and drops, in the CSV, the JSON and
the Prometheus metrics.
"""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace
from typing import Any, Dict, List

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.exposition import generate_latest

from l4lb.admin.fields import FIELDS
from l4lb.admin.metrics import registry_for
from l4lb.admin.render import stat_csv, stat_json
from l4lb.admin.stats import stat_rows
from l4lb.config.model import Config
from tests.runtimekit import stand_in
from tests.udpkit import UdpRig


def service_of(rig: UdpRig) -> Any:
    """A service holding only the rig's UDP frontend and backend."""
    return stand_in(
        config=Config(frontends=(rig.frontend.spec,), backends=(rig.backend.spec,)),
        frontends={},
        udp_frontends={"fe": rig.frontend},
        backends={"be": rig.backend},
        limiter=SimpleNamespace(current=0),
    )


def traffic() -> UdpRig:
    """Two clients: one session ended by idleness, one still running, one reply, one drop."""
    rig = UdpRig(timeout=5.0)
    rig.send(b"q1", ("192.0.2.1", 5000))
    rig.server_port("s1").protocol.datagramReceived(b"answer", None)
    rig.reactor.advance(6.0)
    rig.send(b"query2", ("192.0.2.2", 5000))
    port = rig.server_port("s2")
    port.error = OSError(105, "No buffer space available")
    rig.send(b"lost", ("192.0.2.2", 5000))
    return rig


def by_name(rows: List[Dict[str, str]]) -> Dict[str, Dict[str, str]]:
    """Rows keyed by pxname/svname."""
    return {f"{r['pxname']}/{r['svname']}": r for r in rows}


def test_udp_rows_and_counters() -> None:
    """A UDP frontend has its own FRONTEND row; sessions, datagrams (req_tot), bytes and drops are counted, running sessions included."""
    rig = traffic()
    rows = by_name(stat_rows(service_of(rig), rig.reactor.seconds(), pid=1))
    assert list(rows) == ["fe/FRONTEND", "be/s1", "be/s2", "be/BACKEND"]
    fe, s1, s2, be = rows["fe/FRONTEND"], rows["be/s1"], rows["be/s2"], rows["be/BACKEND"]
    assert (fe["type"], fe["mode"], fe["status"]) == ("0", "udp", "OPEN")
    assert (fe["scur"], fe["stot"], fe["slim"]) == ("1", "2", "1000")
    assert (fe["req_tot"], fe["bin"], fe["bout"], fe["ereq"]) == ("3", "12", "6", "1")
    assert (s1["scur"], s1["stot"], s1["bin"], s1["bout"], s1["req_tot"]) == ("0", "1", "2", "6", "1")
    assert (s2["scur"], s2["stot"], s2["req_tot"], s2["eresp"]) == ("1", "1", "2", "1")
    assert (be["mode"], be["scur"], be["stot"], be["bin"], be["bout"]) == ("udp", "1", "2", "12", "6")
    assert (be["req_tot"], be["eresp"], be["udp_datagrams_out"]) == ("3", "1", "1")


def test_udp_rows_in_csv_and_json() -> None:
    """The CSV keeps HAProxy's columns only; the JSON adds the udp_* counters."""
    rig = traffic()
    rows = stat_rows(service_of(rig), rig.reactor.seconds(), pid=1)
    lines = stat_csv(rows).splitlines()
    header = lines[0][2:].rstrip(",").split(",")
    assert header == list(FIELDS)
    parsed = [dict(zip(header, r)) for r in csv.reader(io.StringIO("\n".join(lines[1:-1])))]
    assert [(r["pxname"], r["svname"], r["mode"]) for r in parsed][0] == ("fe", "FRONTEND", "udp")
    data = json.loads(stat_json(rows))["stats"]
    assert data[0]["svname"] == "FRONTEND" and data[0]["udp_datagrams_in"] == 3
    assert data[0]["udp_dropped"] == 1 and data[0]["stot"] == 2


def test_udp_rows_in_prometheus() -> None:
    """The metrics carry UDP frontends and servers with HAProxy's names and the udp_* counters."""
    rig = traffic()
    registry = registry_for(service_of(rig), rig.reactor)
    text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("l4lb_frontend_current_sessions", (("proxy", "fe"),))] == 1
    assert samples[("l4lb_frontend_udp_datagrams_in_total", (("proxy", "fe"),))] == 3
    assert samples[("l4lb_server_udp_dropped_total", (("proxy", "be"), ("server", "s2")))] == 1
    assert samples[("l4lb_backend_bytes_out_total", (("proxy", "be"),))] == 6
