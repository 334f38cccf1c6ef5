"""
Make the screenshots of the HTML statistics page that docs/operations.md
shows: a real C{twistd l4lb} on loopback with servers in every state (UP,
DOWN, DRAIN, MAINT, one going down), a backup, and about a minute of
varying load so that the trends have something to draw.

Run it from the repository's root (it takes about 80 seconds):

    .venv/bin/python -m tests.e2e.stats_page_shots --out docs/images

It writes C{stats-page.png} and fails when Chromium's console reports
anything while loading the page.  Every loop is bounded in count and time;
all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import tempfile
import threading
import time
import urllib.request
from typing import Dict, List

from .backends import EchoServer
from .browser import screenshot
from .harness import (
    BackendSection,
    Balancer,
    FrontendSection,
    ServerLine,
    free_port,
    render_config,
    wait_until,
)

#: Seconds of varying load before the screenshots.
LOAD_SECONDS = 65.0
#: At most this many client connections in all.
MAX_CONNECTIONS = 6000


def admin(path: str, command: str) -> str:
    """
    Run one runtime API command on the UNIX socket C{path}.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        chunks: List[bytes] = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode()


def statuses(base: str) -> Dict[str, str]:
    """
    The C{status} of every row of the CSV page, by C{proxy/name}.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base + "/;csv", timeout=10) as response:
        lines = response.read().decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    where = header.index("status")
    result = {}
    for line in lines[1:]:
        if line:
            cells = line.split(",")
            result[f"{cells[0]}/{cells[1]}"] = cells[where]
    return result


def one_connection(port: int) -> None:
    """
    Open a connection through the balancer, read the server's greeting,
    close it; errors are the point of some of them and are ignored.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.recv(64)
    except OSError:
        pass


def drive(web: int, api: int, seconds: float, on_time: Dict[float, object]) -> int:
    """
    Open connections to the two frontends at a rate that swells and ebbs,
    keep a varying number of them open, and run the callables of
    C{on_time} once their second has come.  Returns the connections made.
    """
    start = time.monotonic()
    held: List[socket.socket] = []
    made = 0
    pending = sorted(on_time.items())
    while made < MAX_CONNECTIONS:
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        while pending and pending[0][0] <= elapsed:
            pending.pop(0)[1]()  # type: ignore[operator]
        # 5 to 45 new connections a second on web, a burst after 40 s.
        rate = 25 + 20 * math.sin(elapsed / 9.0) + (30 if 40 <= elapsed < 46 else 0)
        for _ in range(max(1, int(rate / 10))):
            one_connection(web)
            made += 1
        if int(elapsed * 10) % 3 == 0:
            one_connection(api)
            made += 1
        # Between 0 and 30 connections held open on web.
        target = int(15 + 15 * math.sin(elapsed / 7.0))
        while len(held) > target:
            held.pop(0).close()
        while len(held) < target:
            try:
                held.append(socket.create_connection(("127.0.0.1", web), timeout=2))
            except OSError:
                break
            made += 1
        time.sleep(max(0.0, 0.1 - (time.monotonic() - start - elapsed)))
    for sock in held:
        sock.close()
    return made


def main() -> None:
    """
    Start the servers and l4lb, drive the load, take the screenshots.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/images", help="where the PNGs go")
    parser.add_argument("--seconds", type=float, default=LOAD_SECONDS)
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    echo = {name: EchoServer(name).start() for name in ("s1", "s3", "s4", "s5", "bk", "a1", "a2")}
    work = tempfile.mkdtemp(prefix="l4lb-shots-")
    sock_path = os.path.join(work, "admin.sock")
    checked = "check inter 2s fall 3 rise 2"
    web = BackendSection(
        "web",
        [
            ServerLine("s1", "127.0.0.1", echo["s1"].port, checked),
            # Nothing listens there: DOWN after its first check.
            ServerLine("s2", "127.0.0.1", free_port(), checked),
            ServerLine("s3", "127.0.0.1", echo["s3"].port, checked),
            ServerLine("s4", "127.0.0.1", echo["s4"].port, checked),
            # Ten failures to go down: shown going down for 20 seconds.
            ServerLine("s5", "127.0.0.1", echo["s5"].port, "check inter 2s fall 10 rise 2"),
            ServerLine("bk", "127.0.0.1", echo["bk"].port, checked + " backup"),
        ],
        extra={"option redispatch": "true"},
    )
    api = BackendSection(
        "api",
        [
            ServerLine("a1", "127.0.0.1", echo["a1"].port),
            ServerLine("a2", "127.0.0.1", echo["a2"].port),
        ],
        balance="leastconn",
    )
    fe_web = FrontendSection("web", "127.0.0.1", free_port(), "web")
    fe_api = FrontendSection("api", "127.0.0.1", free_port(), "api")
    stats_port = free_port()
    config = os.path.join(work, "lb.ini")
    with open(config, "w") as f:
        f.write(
            render_config(
                [fe_web, fe_api],
                [web, api],
                global_={
                    "stats bind": f"127.0.0.1:{stats_port}",
                    "stats socket": sock_path,
                    "maxconn": "2000",
                    "log": "none",
                },
            )
        )
    lb = Balancer.l4lb(config, work, ["web", "api"]).start()
    try:
        lb.wait_ready()
        base = f"http://127.0.0.1:{stats_port}"
        made = drive(
            fe_web.port,
            fe_api.port,
            args.seconds,
            {
                5.0: lambda: admin(sock_path, "set server web/s4 state maint"),
                25.0: lambda: admin(sock_path, "set server web/s3 state drain"),
            },
        )
        print(f"{made} connections in {args.seconds:.0f} s")
        # s5 goes away: its next check fails and it is shown going down,
        # while a light load goes on (some of it tries s5: connection
        # errors, retries, redispatches).
        echo["s5"].stop(timeout=1.0)
        light = threading.Event()

        def trickle() -> None:
            for _ in range(300):
                if light.wait(0.1):
                    return
                one_connection(fe_web.port)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            going = wait_until(
                lambda: statuses(base).get("web/s5", "").startswith("UP "), timeout=10, interval=0.2
            )
            assert going, f"s5 is not shown going down: {statuses(base)}"
            time.sleep(2.0)
            path = os.path.join(out, "stats-page.png")
            console = screenshot(base + "/", path, 1720, 600)
            assert not console, "\n".join(console)
            print(f"{path}: {os.path.getsize(path)} bytes; s5 {statuses(base).get('web/s5')}")
        finally:
            light.set()
            thread.join(10)
    finally:
        lb.stop(expected=(0, 1))
        for server in echo.values():
            if not server.stopping:
                server.stop()


if __name__ == "__main__":
    main()
