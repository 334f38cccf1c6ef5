"""
The benchmark's pieces that need no load: its command line, the
configurations it writes and the arithmetic of its report.  Nothing here
starts a proxy or measures time.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import configs, loads, report  # noqa: E402
from l4lb.config import parse_config  # noqa: E402

BACKENDS = configs.Backends(http=(4001, 4002), sink=(4003, 4004), udp=(4005, 4006))
FRONTENDS = configs.Frontends(http=5001, sink=5002, udp=5003)

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:5001/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  300.00us   9.10ms   90.00%
    Req/Sec    21.00k     1.00k   23.00k    70.00%
  Latency Distribution
     50%    1.46ms
     75%    1.60ms
     90%    1.80ms
     99%  850.00us
  104500 requests in 5.00s, 33.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:  20900.00
Transfer/sec:      6.60MB
"""


def test_help_runs() -> None:
    """C{python bench/run.py --help} prints its usage and exits 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout and "--dry-run" in result.stdout


def test_l4lb_config_is_valid_and_equivalent() -> None:
    """The generated lb.ini parses with l4lb's own parser: two round-robin
    servers per backend, connection logging off, the given maxconn."""
    config = parse_config(configs.l4lb_config(FRONTENDS, BACKENDS, 1234))
    assert config.global_settings.maxconn == 1234
    assert config.global_settings.log.kind == "none"
    assert [b.name for b in config.backends] == ["http_servers", "sink_servers", "udp_servers"]
    for backend in config.backends:
        assert backend.balance == "roundrobin"
        assert len(backend.servers) == 2
    udp = config.backends[2]
    assert udp.mode == "udp" and [s.port for s in udp.servers] == [4005, 4006]
    no_udp = configs.Frontends(http=5001, sink=5002)
    assert len(parse_config(configs.l4lb_config(no_udp, BACKENDS, 1234)).backends) == 2


def test_haproxy_config_is_one_thread_tcp_round_robin() -> None:
    """HAProxy gets one thread, mode tcp, and the same two servers per
    backend in round robin."""
    text = configs.haproxy_config(FRONTENDS, BACKENDS, 1234)
    assert "nbthread 1" in text and "mode tcp" in text
    assert text.count("balance roundrobin") == 2
    assert "server s2 127.0.0.1:4004" in text


def test_nginx_config_relays_udp_and_half_close() -> None:
    """nginx's stream configuration has a UDP listener when asked for and
    relays half-closes like the others."""
    text = configs.nginx_stream_config(FRONTENDS, BACKENDS, 100, "/tmp/x", None)
    assert "listen 127.0.0.1:5003 udp;" in text
    assert text.count("proxy_half_close on;") == 2
    no_udp = configs.Frontends(http=5001, sink=5002)
    assert " udp;" not in configs.nginx_stream_config(no_udp, BACKENDS, 100, "/tmp/x", None, False)


def test_parse_wrk() -> None:
    """wrk's report gives the rate, the percentiles in seconds and every
    error counted."""
    result = loads.parse_wrk(WRK_OUTPUT)
    assert result["requests"] == 104500 and result["seconds"] == 5.0
    assert result["rate"] == 20900.0
    assert result["p50"] == pytest.approx(1.46e-3)
    assert result["p99"] == pytest.approx(850e-6)
    assert result["errors"] == 6


def test_summary_ratios() -> None:
    """Rates are divided by the reference's, CPU per unit is inverted
    (work per CPU-second), UDP compares with nginx, and the median ignores
    rounds without a number."""
    rounds: report.Rounds = {
        "keepalive": {
            "haproxy": [{"rate": 100.0, "requests": 1000.0, "cpu": 0.01}] * 3,
            "l4lb": [
                {"rate": 40.0, "requests": 1000.0, "cpu": 0.04},
                {"rate": 50.0, "requests": 1000.0, "cpu": 0.04},
                {"rate": 60.0, "requests": 0.0, "cpu": 0.04},
            ],
        },
        "udp64": {"nginx": [{"rate": 10.0, "received": 10.0, "cpu": 1.0}]},
    }
    rows = {r["key"]: r for r in report.summarize(rounds, ["haproxy", "nginx", "l4lb"])}
    assert rows["keepalive_rate"]["values"]["l4lb"]["ratio"] == pytest.approx(0.5)
    assert rows["keepalive_cpu"]["values"]["l4lb"]["median"] == pytest.approx(40.0)
    assert rows["keepalive_cpu"]["values"]["l4lb"]["ratio"] == pytest.approx(0.25)
    assert rows["udp64_rate"]["reference"] == "nginx"
    assert rows["udp64_rate"]["values"]["nginx"]["ratio"] == 1.0
    assert math.isnan(report.median([float("nan")]))


def test_kernel_share_is_a_row_of_its_own_and_not_charted() -> None:
    """The system part of the proxy's CPU gets a row per load (per unit of
    work, compared as a cost), kept out of the chart; results measured
    before it was recorded show no number."""
    rounds: report.Rounds = {
        "newconn": {
            "haproxy": [{"rate": 100.0, "requests": 1000.0, "cpu": 0.1, "system_cpu": 0.06}],
            "l4lb": [{"rate": 50.0, "requests": 1000.0, "cpu": 0.25, "system_cpu": 0.12}],
            "old": [{"rate": 50.0, "requests": 1000.0, "cpu": 0.25}],
        },
    }
    rows = {r["key"]: r for r in report.summarize(rounds, ["haproxy", "l4lb", "old"])}
    system = rows["newconn_system"]
    assert system["values"]["l4lb"]["median"] == pytest.approx(120.0)
    assert system["values"]["l4lb"]["ratio"] == pytest.approx(2.0)
    assert math.isnan(system["values"]["old"]["median"])
    assert system["charted"] is False and rows["newconn_cpu"]["charted"] is True
