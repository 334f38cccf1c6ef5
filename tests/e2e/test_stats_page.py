"""
The HTML statistics page of a real C{twistd l4lb} with 1,000 servers:
its size stays bounded, it carries its Content-Security-Policy, and
headless Chromium renders it, sparklines included, with nothing in its
console.
"""

from __future__ import annotations

import urllib.request
from typing import Dict, Tuple

from .backends import EchoServer
from .browser import load
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    connect,
    free_port,
    read_line,
    wait_until,
)

#: Servers in the backend.
SERVERS = 1000
#: The page with that many servers stays under this many bytes (measured:
#: about 1.0 MB once every row has a few samples; a full 15 minutes of
#: busy trends stays under it too, see tests/test_admin_page.py).
PAGE_BOUND = 2_000_000


def get(url: str) -> Tuple[int, Dict[str, str], bytes]:
    """
    GET C{url} on loopback: status, headers (lower-case names), body.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()


def test_page_with_a_thousand_servers(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    With 1,000 servers and some traffic, the page is under L{PAGE_BOUND}
    bytes, is sent with its Content-Security-Policy, and renders in
    headless Chromium with every server, three sparklines per row once
    two samples were taken, and no console message (no blocked style, no
    failed load, no error).
    """
    echo = servers(EchoServer("echo"))
    be = BackendSection(
        "web", [ServerLine(f"srv{i:04d}", "127.0.0.1", echo.port) for i in range(SERVERS)]
    )
    fe = FrontendSection("web", "127.0.0.1", free_port(), "web")
    stats_port = free_port()
    balancers.start([fe], [be], global_={"stats bind": f"127.0.0.1:{stats_port}"})
    for _ in range(50):
        sock = connect(fe.port)
        assert read_line(sock)[0] == b"echo"
        sock.close()
    base = f"http://127.0.0.1:{stats_port}/"

    # The first sample is taken at start, the second 5 s later: then the
    # rates and errors have a value too.
    def sampled_twice() -> bool:
        return get(base)[2].count(b"<polyline ") >= 3 * (SERVERS + 2)

    assert wait_until(sampled_twice, timeout=20, interval=0.5), "no second sample in 20 s"

    status, headers, body = get(base)
    assert status == 200
    policy = headers.get("content-security-policy", "")
    assert policy.startswith("default-src 'none'; style-src 'sha256-"), policy
    assert "'unsafe-inline'" not in policy and "script-src" not in policy
    assert len(body) < PAGE_BOUND, len(body)
    print(f"page with {SERVERS} servers: {len(body)} bytes")

    dom, console = load(base)
    assert not console, "Chromium's console:\n" + "\n".join(console)
    assert ">srv0000<" in dom and f">srv{SERVERS - 1:04d}<" in dom
    assert dom.count("<svg") == 3 * (SERVERS + 2)
