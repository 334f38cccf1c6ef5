"""
The Grafana dashboard against a live C{/metrics}: a real C{twistd l4lb}
with a TCP and a UDP frontend, a backend of several servers (one refusing
connections, so that errors, retries and redispatches move), after some
traffic, exports every metric the dashboard queries with the labels the
dashboard filters, groups and names its series by.
"""

from __future__ import annotations

import socket
import threading
from typing import Dict, List, Set

from prometheus_client.parser import text_string_to_metric_families

from tests.grafanakit import TARGET_LABELS, load, queries

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import BackendSection, FrontendSection, ServerLine, echo_once, free_port, wait_until
from .test_admin import fetch

CHECK = "check inter 200 rise 1 fall 1"


class UdpEcho:
    """
    A UDP server on 127.0.0.1 answering each datagram with its name and the
    datagram, in a thread, until closed.
    """

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            self.sock.sendto(self.name + b":" + data, peer)

    def close(self) -> None:
        """
        Stop answering and close the socket.
        """
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def closed_port() -> int:
    """
    A TCP port of 127.0.0.1 nothing listens on (connections are refused).
    """
    return free_port()


def exposition(stats_port: int) -> Dict[str, List[Dict[str, str]]]:
    """
    The labels of every sample of the live C{/metrics}, by sample name,
    read with prometheus_client's parser.
    """
    code, body = fetch(f"http://127.0.0.1:{stats_port}/metrics")
    assert code == 200
    samples: Dict[str, List[Dict[str, str]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


def value(stats_port: int, name: str, **labels: str) -> float:
    """
    One sample's value in the live C{/metrics}, 0 when absent.
    """
    body = fetch(f"http://127.0.0.1:{stats_port}/metrics")[1].decode()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_dashboard_metrics_in_live_exposition(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    Every metric every dashboard query reads is in a live /metrics after
    TCP and UDP traffic, with each l4lb label the query matches, groups by
    or shows in its legend, and with the label values it matches
    literally; the frontend, backend and server variables list the
    proxies and servers of the configuration.
    """
    s1, s2 = servers(EchoServer("s1")), servers(EchoServer("s2"))
    ns1, ns2 = UdpEcho(b"ns1"), UdpEcho(b"ns2")
    try:
        web = BackendSection(
            "web",
            [
                ServerLine("s1", "127.0.0.1", s1.port, CHECK),
                ServerLine("s2", "127.0.0.1", s2.port, CHECK),
                # Refuses every connection and is not checked, so that it
                # keeps being picked: connection errors, retries, redispatches.
                ServerLine("s3", "127.0.0.1", closed_port()),
            ],
            # Two retries: the first to the same server (a retry), the
            # last to another one (a redispatch), as HAProxy counts them.
            extra={"retries": "2", "option redispatch": "true"},
        )
        dns = BackendSection(
            "dns",
            [ServerLine("ns1", "127.0.0.1", ns1.port), ServerLine("ns2", "127.0.0.1", ns2.port)],
            extra={"mode": "udp", "udp-responses": "1"},
        )
        # Only a refusing server and no retry: a connection that fails for
        # good, which is what a server's connection errors count.
        gone = BackendSection(
            "gone", [ServerLine("s9", "127.0.0.1", closed_port())], extra={"retries": "0"}
        )
        fe = FrontendSection("fe", "127.0.0.1", free_port(), "web")
        fe_gone = FrontendSection("fe_gone", "127.0.0.1", free_port(), "gone")
        udp_fe = FrontendSection("dns", "127.0.0.1", free_port(), "dns", {"mode": "udp"})
        stats_port = free_port()
        balancers.start(
            [fe, fe_gone, udp_fe], [web, gone, dns], global_={"stats bind": f"127.0.0.1:{stats_port}"}
        )
        with socket.create_connection(("127.0.0.1", fe_gone.port), timeout=10) as refused:
            assert refused.recv(100) == b""

        for _ in range(6):
            result = echo_once(fe.port, b"hello")
            assert result.echoed == b"hello"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            for index in range(4):
                client.sendto(b"q%d" % index, ("127.0.0.1", udp_fe.port))
                assert client.recv(65535).endswith(b"q%d" % index)
        checked = {"proxy": "web", "server": "s2", "state": "L4OK"}
        wait_until(lambda: value(stats_port, "l4lb_server_check_status", **checked) == 1, timeout=10)

        # The traffic moved what the error and UDP panels draw.
        assert value(stats_port, "l4lb_backend_retry_warnings_total", proxy="web") >= 1
        assert value(stats_port, "l4lb_backend_redispatch_warnings_total", proxy="web") >= 1
        assert value(stats_port, "l4lb_server_connection_errors_total", server="s9") >= 1
        assert value(stats_port, "l4lb_frontend_udp_datagrams_in_total", proxy="dns") == 4

        samples = exposition(stats_port)
        problems: List[str] = []
        for query in queries(load()):
            wanted = set(query.labels) - TARGET_LABELS
            for selector in query.selectors:
                present = samples.get(selector.metric)
                if not present:
                    problems.append(f"{query.where}: {selector.metric} is not exported")
                    continue
                carrying = [labels for labels in present if wanted <= set(labels)]
                if not carrying:
                    problems.append(
                        f"{query.where}: {selector.metric} has no sample with {sorted(wanted)}"
                    )
                for label, op, literal in selector.matchers:
                    if op == "=" and "$" not in literal and label not in TARGET_LABELS:
                        if not any(labels.get(label) == literal for labels in present):
                            problems.append(
                                f"{query.where}: {selector.metric} has no {label}={literal!r}"
                            )
        assert not problems, "\n".join(problems)

        def values_of(metric: str, label: str) -> Set[str]:
            return {labels[label] for labels in samples[metric]}

        variables = {
            v["name"]: v["definition"] for v in load()["templating"]["list"] if v["type"] == "query"
        }
        assert "l4lb_frontend_connections_total" in variables["frontend"]
        assert values_of("l4lb_frontend_connections_total", "proxy") == {"fe", "fe_gone", "dns"}
        assert "l4lb_backend_sessions_total" in variables["backend"]
        assert values_of("l4lb_backend_sessions_total", "proxy") == {"web", "gone", "dns"}
        assert "l4lb_server_sessions_total" in variables["server"]
        assert values_of("l4lb_server_sessions_total", "server") == {"s1", "s2", "s3", "s9", "ns1", "ns2"}
    finally:
        ns1.close()
        ns2.close()
