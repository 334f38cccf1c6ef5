"""
The runtime API through twistd, used as an operator does: C{socat} on the
C{stats socket}, and C{l4lb ctl}.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import select
import shutil
import socket
import stat
import subprocess
import time
from typing import Dict, List

import pytest

from l4lb.admin.fields import FIELDS

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    Balancer,
    FrontendSection,
    ServerLine,
    connect,
    free_port,
    l4lb_path,
    read_line,
    render_config,
    run_command,
    subprocess_env,
    wait_until,
)


def socat(path: str, command: str) -> str:
    """
    Send one command with C{socat stdio UNIX-CONNECT:PATH}, bounded in time.
    """
    done = subprocess.run(
        ["socat", "stdio", f"UNIX-CONNECT:{path}"],
        input=command + "\n",
        capture_output=True,
        text=True,
        timeout=15,
        env=subprocess_env(),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def stat_rows(text: str) -> Dict[str, Dict[str, str]]:
    """
    C{show stat} parsed with the csv module, rows by C{pxname/svname}.
    """
    lines = text.splitlines()
    header = lines[0][2:].split(",")
    rows = csv.DictReader(io.StringIO("\n".join(lines[1:])), fieldnames=header)
    return {f"{r['pxname']}/{r['svname']}": r for r in rows if r["pxname"]}


def test_drain_through_socket(
    servers: StartServer, balancers: BalancerFactory, tmp_path: "os.PathLike[str]"
) -> None:
    """
    Draining s1 through the socket: its open connection keeps relaying, new
    connections all go to s2, and C{show stat} (parsed with csv into the
    documented columns) says DRAIN; the socket has mode 0600.
    """
    assert shutil.which("socat"), "socat is needed: apt-get install socat"
    s1, s2 = servers(EchoServer("s1")), servers(EchoServer("s2"))
    sock_path = os.path.join(str(tmp_path), "admin.sock")
    be = BackendSection(
        "be", [ServerLine("s1", "127.0.0.1", s1.port), ServerLine("s2", "127.0.0.1", s2.port)]
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    balancers.start([fe], [be], global_={"stats socket": sock_path})
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600

    held = connect(fe.port)
    assert read_line(held)[0] == b"s1"
    assert socat(sock_path, "set server be/s1 state drain") == "\n"

    names: List[bytes] = []
    for _ in range(6):
        sock = connect(fe.port)
        names.append(read_line(sock)[0])
        sock.close()
    assert set(names) == {b"s2"}
    held.sendall(b"still here\n")
    assert read_line(held)[0] == b"still here"

    text = socat(sock_path, "show stat")
    assert text.splitlines()[0] == "# " + ",".join(FIELDS) + ","
    rows = stat_rows(text)
    assert rows["be/s1"]["status"] == "DRAIN"
    assert rows["be/s1"]["scur"] == "1"
    assert rows["be/s2"]["status"] == "no check"
    assert int(rows["be/s2"]["stot"]) == 6
    held.close()

    bad = socat(sock_path, "set server be/s9 state drain")
    assert bad.strip().count("\n") == 0 and "No such server" in bad


def test_l4lb_ctl(
    servers: StartServer, balancers: BalancerFactory, tmp_path: "os.PathLike[str]"
) -> None:
    """
    C{l4lb ctl --socket PATH COMMAND} prints the answer; an unreachable
    socket exits 1 with a one-line message.
    """
    s1 = servers(EchoServer("s1"))
    sock_path = os.path.join(str(tmp_path), "ctl.sock")
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    balancers.start([fe], [be], global_={"stats socket": f"{sock_path} mode 660"})
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660

    cwd = str(tmp_path)
    done = run_command([l4lb_path(), "ctl", "--socket", sock_path, "set", "server", "be/s1", "weight", "7"], cwd)
    assert done.returncode == 0, done.stderr
    done = run_command([l4lb_path(), "ctl", "--socket", sock_path, "show", "stat"], cwd)
    assert stat_rows(done.stdout)["be/s1"]["weight"] == "7"
    done = run_command([l4lb_path(), "ctl", "--socket", sock_path + ".nope", "show", "info"], cwd)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1


def fetch(url: str, auth: str = "") -> "tuple[int, bytes]":
    """
    GET C{url} with an optional USER:PASSWORD; return status and body.
    """
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        # Loopback only: no proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=15) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def chromium() -> str:
    """
    The path of a headless-capable Chromium, or an empty string.
    """
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return ""


def test_stats_pages(
    servers: StartServer, balancers: BalancerFactory, tmp_path: "os.PathLike[str]"
) -> None:
    """
    The statistics pages through twistd: the CSV parses with csv into the
    documented columns, /metrics with prometheus_client's parser, the JSON
    with json, credentials are required, and a headless browser renders the
    HTML page with every backend and server (screenshot kept beside the
    test's files).
    """
    import json

    from prometheus_client.parser import text_string_to_metric_families

    s1, s2 = servers(EchoServer("s1")), servers(EchoServer("s2"))
    be = BackendSection(
        "web", [ServerLine("s1", "127.0.0.1", s1.port), ServerLine("s2", "127.0.0.1", s2.port)]
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "web")
    stats_port = free_port()
    balancers.start(
        [fe], [be], global_={"stats bind": f"127.0.0.1:{stats_port}", "stats auth": "ops:secret"}
    )
    held = connect(fe.port)
    assert read_line(held)[0] == b"s1"
    base = f"http://127.0.0.1:{stats_port}"

    assert fetch(base + "/;csv")[0] == 401
    code, body = fetch(base + "/;csv", "ops:secret")
    assert code == 200
    rows = stat_rows(body.decode())
    assert rows["web/s1"]["scur"] == "1"
    assert rows["web/BACKEND"]["status"] == "UP"
    assert fetch(base + "/stats.csv", "ops:secret")[1].splitlines()[0] == body.splitlines()[0]

    data = json.loads(fetch(base + "/stats.json", "ops:secret")[1])
    assert {(r["pxname"], r["svname"]) for r in data["stats"]} == set(
        tuple(k.split("/")) for k in rows
    )

    text = fetch(base + "/metrics", "ops:secret")[1].decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sessions = {
        s.labels["server"]: s.value for s in families["l4lb_server_current_sessions"].samples
    }
    assert sessions == {"s1": 1.0, "s2": 0.0}

    browser = chromium()
    assert browser, "a headless browser is needed: apt-get install chromium"
    shot = os.path.join(str(tmp_path), "stats.png")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         f"http://ops:secret@127.0.0.1:{stats_port}/"],
        capture_output=True, text=True, timeout=60,
    )
    assert ">s1<" in dom.stdout and ">s2<" in dom.stdout and ">web<" in dom.stdout
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,500",
         f"--screenshot={shot}", f"http://ops:secret@127.0.0.1:{stats_port}/"],
        capture_output=True, timeout=60,
    )
    assert os.path.getsize(shot) > 1000
    held.close()


def raise_own_nofile(count: int) -> None:
    """
    Let this test process hold C{count} more descriptors than it has open,
    raising its soft limit (within the hard limit) when needed.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(os.listdir("/proc/self/fd")) + count + 64
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.fail(f"this test needs {wanted} descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def idle_clients(
    family: int, address: object, count: int, batch: int = 20
) -> "List[socket.socket]":
    """
    Open C{count} connections that never send anything, C{batch} at a time,
    each batch given a moment to be established (queued or accepted) before
    the next, so that a listener without a cap has taken all it can by the
    end; the kernel keeps retrying those it cannot queue yet.
    """
    held: "List[socket.socket]" = []
    while len(held) < count:
        wave = []
        for _ in range(min(batch, count - len(held))):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            if sock.connect_ex(address) in (0, errno.EINPROGRESS):  # type: ignore[arg-type]
                wave.append(sock)
            else:
                sock.close()
        held.extend(wave)
        if not wave:
            break
        deadline = time.monotonic() + 2.0
        pending = list(wave)
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], pending, [], 0.1)
            pending = [sock for sock in pending if sock not in writable]
    return held


def closed_by_peer(sock: socket.socket) -> bool:
    """
    Whether the peer has closed C{sock} (EOF or reset), without blocking.
    """
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_stats_connections_cannot_starve_the_traffic(
    servers: StartServer, balancers: BalancerFactory, tmp_path: "os.PathLike[str]"
) -> None:
    """
    With a 128-descriptor limit, 160 idle connections to the stats pages
    and 40 to the runtime API take at most their caps (10 each) of l4lb's
    descriptors: a traffic client is served at once, the runtime API and
    the pages answer once the idle ones hit the short C{stats timeout}, and
    those are closed by l4lb.
    """
    assert shutil.which("prlimit"), "prlimit (util-linux) is needed for this test"
    limit, idle_web, idle_admin = 128, 160, 40
    raise_own_nofile(idle_web + idle_admin + 16)
    s1 = servers(EchoServer("s1"))
    sock_path = os.path.join(str(tmp_path), "admin.sock")
    stats_port = free_port()
    be = BackendSection("be", [ServerLine("s1", "127.0.0.1", s1.port)])
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    text = render_config(
        [fe],
        [be],
        global_={
            "maxconn": "20",
            "stats socket": sock_path,
            "stats bind": f"127.0.0.1:{stats_port}",
            "stats timeout": "500ms",
        },
    )
    lb = Balancer.l4lb(str(balancers.write(text)), str(balancers.rundir), ["fe"])
    lb.argv = ["prlimit", f"--nofile={limit}:{limit}", *lb.argv]
    balancers.started.append(lb)
    lb.start().wait_ready()
    baseline = lb.fd_count()

    web = idle_clients(socket.AF_INET, ("127.0.0.1", stats_port), idle_web)
    admin = idle_clients(socket.AF_UNIX, sock_path, idle_admin)
    try:
        assert len(web) == idle_web and web, "could not open the idle connections"
        started = time.monotonic()
        served = connect(fe.port, timeout=5.0)
        try:
            assert read_line(served)[0] == b"s1", "the traffic client was not served"
        except (OSError, EOFError) as e:
            pytest.fail(f"the traffic client was not served: {e!r}\n{lb.output(20)}")
        finally:
            served.close()
        print(f"traffic client served {time.monotonic() - started:.3f}s after the flood")
        held = lb.fd_count() - baseline
        assert held <= 10 + 10 + 2, f"l4lb holds {held} descriptors more than at start"

        def admin_answers() -> bool:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(2.0)
                    sock.connect(sock_path)
                    sock.sendall(b"show info\n")
                    return b"Name: l4lb" in sock.recv(4096)
            except OSError:
                return False

        def page_answers() -> bool:
            try:
                return fetch(f"http://127.0.0.1:{stats_port}/;csv")[0] == 200
            except OSError:
                return False

        assert wait_until(admin_answers, timeout=30.0, interval=0.2), "runtime API silent"
        print(f"runtime API answered after {time.monotonic() - started:.3f}s")
        assert wait_until(page_answers, timeout=60.0, interval=0.2), "stats page silent"
        print(f"stats page answered after {time.monotonic() - started:.3f}s")
        closed = sum(closed_by_peer(sock) for sock in web + admin)
        assert closed >= 20, f"only {closed} idle connections were timed out"
        assert lb.fd_count() - baseline <= 10 + 10 + 2
    finally:
        for sock in web + admin:
            sock.close()
