"""
What a plain TCP balancer loads at start-up: none of the optional parts
(TLS, the stats page, AMP workers, DNS resolvers, etcd, test tools), and so
a bounded resident set.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    echo_once,
    free_port,
    render_config,
    subprocess_env,
)

MiB = 1 << 20

#: The most a plain TCP balancer may hold resident once started.  Measured
#: 38.5 MiB (CPython 3.11, Twisted 26.10, modules compiled from source as
#: under PYTHONDONTWRITEBYTECODE); it was 55 MiB when l4lb imported TLS,
#: twisted.web and twisted.names whatever the configuration.  twistd and
#: Twisted's reactor alone take about 32 MiB.
RSS_LIMIT = 42 * MiB

#: The same under PyPy, whose JIT and garbage collector start larger:
#: measured 95 MiB (PyPy 7.3 for Python 3.9).
PYPY_RSS_LIMIT = 112 * MiB

#: Modules (and their submodules) a plain TCP configuration must not load.
OPTIONAL = (
    "OpenSSL",
    "cryptography",
    "service_identity",
    "idna",
    "twisted.web",
    "twisted.protocols.amp",
    "twisted.protocols.haproxy",
    "twisted.names",
    "twisted.internet.endpoints",
    "twisted.internet._sslverify",
    "twisted.trial.unittest",
    "hypothesis",
    "l4lb.tcp.tls",
    "l4lb.config.tls",
    "l4lb._twistedcompat_tls",
    "l4lb.etcd._gateway",
    "l4lb.etcd._watch",
    "l4lb.dns.client",
    "l4lb.udp.dns",
    "l4lb.workers",
    "l4lb.admin.web",
    "l4lb.tcp.acceptproxy",
)

#: What twistd does, in a process that writes its modules to a file once
#: the balancer runs (after the line of l4lb.gcfreeze) and stops.
TWISTD = textwrap.dedent(
    """
    import sys
    from twisted.logger import globalLogPublisher

    config, out = sys.argv[1:3]

    def finish():
        from twisted.internet import reactor
        with open(out, "w") as f:
            f.write("\\n".join(sorted(sys.modules)))
        reactor.stop()

    def watch(event):
        if "Froze" in (event.get("log_format") or ""):
            from twisted.internet import reactor
            reactor.callLater(0, finish)

    globalLogPublisher.addObserver(watch)
    sys.argv = ["twistd", "-n", "--pidfile=", "l4lb", "--config", config]
    from twisted.scripts.twistd import run
    run()
    """
)


def plain_config(backend_port: int) -> str:
    """
    One TCP frontend, one backend of two servers, logs to stdout.
    """
    servers = [
        ServerLine("s1", "127.0.0.1", backend_port),
        ServerLine("s2", "127.0.0.1", backend_port),
    ]
    frontend = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    return render_config([frontend], [BackendSection("be", servers)])


def loaded_optional(modules: List[str]) -> List[str]:
    """
    The modules of L{OPTIONAL} (or under them) among C{modules}.
    """
    return [m for m in modules if any(m == o or m.startswith(o + ".") for o in OPTIONAL)]


def test_plain_tcp_loads_no_optional_module(tmp_path: Path, rundir: Path) -> None:
    """
    A balancer started by twistd on a plain TCP configuration has imported
    none of the optional parts once it runs: not TLS (pyOpenSSL,
    cryptography, service_identity), the stats page (twisted.web), AMP
    workers, DNS resolvers (twisted.names), etcd, nor test tools.
    """
    config = tmp_path / "lb.ini"
    config.write_text(plain_config(free_port()))
    out = tmp_path / "modules.txt"
    done = subprocess.run(
        [sys.executable, "-c", TWISTD, str(config), str(out)],
        cwd=str(rundir),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.exists(), f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    modules = out.read_text().split()
    assert "l4lb.service" in modules and "twisted.internet.reactor" in modules
    assert loaded_optional(modules) == []


def test_plain_tcp_start_up_memory(servers: StartServer, balancers: BalancerFactory) -> None:
    """
    The started twistd holds at most L{RSS_LIMIT} resident
    (L{PYPY_RSS_LIMIT} under PyPy), has none of the optional parts'
    compiled libraries mapped, and relays.
    """
    limit = PYPY_RSS_LIMIT if platform.python_implementation() == "PyPy" else RSS_LIMIT
    echo = servers(EchoServer("s1"))
    be = BackendSection(
        "be", [ServerLine("s1", "127.0.0.1", echo.port), ServerLine("s2", "127.0.0.1", echo.port)]
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    lb = balancers.start([fe], [be])
    rss = lb.rss()
    with open(f"/proc/{lb.pid}/maps") as f:
        maps = f.read()
    # cryptography's Rust core and pyOpenSSL's (older) cffi binding, under
    # either interpreter's naming (_rust.abi3.so, _rust.pypy39-pp73-....so).
    assert "/cryptography/hazmat/bindings/_rust." not in maps
    assert "/cryptography/hazmat/bindings/_openssl." not in maps
    assert rss <= limit, f"RSS {rss / MiB:.1f} MiB > {limit / MiB:.0f} MiB"
    result = echo_once(fe.port, b"ping")
    assert (result.server, result.echoed) == ("s1", b"ping")
