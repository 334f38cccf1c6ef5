"""
HAProxy's own configuration file under C{twistd l4lb --config}: the Layer 4
guide's C{haproxy.cfg} (C{etc/haproxy.cfg}) runs as it is, its addresses
replaced by loopback ones, relays to real servers, and reloads on SIGHUP.
"""

from __future__ import annotations

import re
import signal
from collections import Counter
from pathlib import Path

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import echo_once, free_port, l4lb_path, run_command, wait_until

ROOT = Path(__file__).resolve().parents[2]


def guide_file(port: int, first: int, second: int) -> str:
    """
    C{etc/haproxy.cfg} with only its addresses changed: the frontend on
    loopback C{port}, the two servers on loopback ports.
    """
    text = (ROOT / "etc" / "haproxy.cfg").read_text()
    replaced = text.replace("bind *:80", f"bind 127.0.0.1:{port}")
    replaced = replaced.replace("192.168.1.101:80", f"127.0.0.1:{first}")
    replaced = replaced.replace("192.168.1.102:80", f"127.0.0.1:{second}")
    assert replaced.count("127.0.0.1:") == 3, "etc/haproxy.cfg no longer has the guide's addresses"
    return replaced


def test_the_guides_haproxy_cfg_relays_and_reloads(
    servers: StartServer, balancers: BalancerFactory
) -> None:
    """
    The guide's haproxy.cfg, as written but for its addresses, passes
    'l4lb check', starts under twistd l4lb, spreads connections by the
    servers' weights (1 and 10), warns about the log line it does not use,
    and a SIGHUP re-reads it as a haproxy.cfg.
    """
    one, two = servers(EchoServer("server1")), servers(EchoServer("server2"))
    port = free_port()
    path = balancers.write(guide_file(port, one.port, two.port), "haproxy.cfg")
    checked = run_command([l4lb_path(), "check", str(path)], str(balancers.rundir))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout
    lb = balancers.start_file(path, ["layer4_frontend"])
    assert any(
        re.search(r"haproxy\.cfg:9: warning: \[global\] key 'log': l4lb sends its logs to one target", line)
        for line in lb.lines() + lb.stderr_lines()
    ), lb.output()
    answers = Counter(echo_once(port, b"ping\n").server for _ in range(11))
    assert answers == {"server1": 1, "server2": 10}, lb.output()
    for answer in (echo_once(port, b"hello") for _ in range(3)):
        assert answer.echoed == b"hello"

    path.write_text(path.read_text().replace("fall 3 weight 10", "fall 3 weight 1"))
    lb.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    assert wait_until(lambda: any("Reload:" in line for line in lb.lines()), 15.0), lb.output()
    assert not any("Reload rejected" in line for line in lb.lines()), lb.output()
    answers = Counter(echo_once(port).server for _ in range(4))
    assert answers == {"server1": 2, "server2": 2}, lb.output()
