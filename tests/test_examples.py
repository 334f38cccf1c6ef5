"""
The examples in docs/ and examples/ run as documented.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_embedded_example_relays_and_logs() -> None:
    """examples/embedded.py relays a line through an embedded balancer and
    prints the connection's tcplog line."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "embedded.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "answer: hello through l4lb" in result.stdout
    log = re.search(r"^log: (.*)$", result.stdout, re.M)
    assert log is not None, result.stdout
    assert " app app_servers/local " in log.group(1)
    assert " -- " in log.group(1)


def test_demo_balances_and_stops_by_itself() -> None:
    """examples/demo.py (what script/demo runs) starts l4lb in front of two
    servers, spreads six connections over them by weight, and stops."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--seconds", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answers = re.findall(r"connection \d: hello from (\w+)", result.stdout)
    assert sorted(answers) == ["alpha"] * 2 + ["beta"] * 4, result.stdout
