"""
Tests for C{etc/l4lb.service}: the lines that let systemd follow the
process an upgrade starts, and keep C{systemctl reload} meaning a re-read
of the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

UNIT = Path(__file__).resolve().parent.parent / "etc" / "l4lb.service"


def unit_lines() -> List[Tuple[str, str, str]]:
    """
    Every C{Key=value} line of the unit, with its section, comments left
    out; keys that repeat (C{ExecReload}) keep each line.
    """
    section = ""
    lines = []
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        lines.append((section, key.strip(), value.strip()))
    return lines


def service() -> Dict[str, List[str]]:
    """
    The C{[Service]} section: each key's values in order.
    """
    keys: Dict[str, List[str]] = {}
    for section, key, value in unit_lines():
        if section == "Service":
            keys.setdefault(key, []).append(value)
    return keys


def test_systemd_follows_the_process_that_takes_over() -> None:
    """
    The unit waits for l4lb's READY=1 (C{Type=notify}) and accepts a
    notification from any process of the service (C{NotifyAccess=all}), so
    that the process an upgrade starts can move the main pid to itself with
    C{MAINPID=}; no pid file is used for that.
    """
    keys = service()
    assert keys["Type"] == ["notify"]
    assert keys["NotifyAccess"] == ["all"]
    assert "PIDFile" not in keys
    (start,) = keys["ExecStart"]
    assert "--nodaemon" in start.split() and "--pidfile=" in start.split()


def test_reload_still_rereads_the_file() -> None:
    """
    C{systemctl reload} validates the file, then sends SIGHUP to the main
    process (the newest one after an upgrade): a reload in place, not an
    upgrade.
    """
    keys = service()
    check, hup = keys["ExecReload"]
    assert check.split()[-2:] == ["check", "/etc/l4lb/lb.ini"]
    assert hup == "/bin/kill -HUP $MAINPID"
    assert keys["ExecStartPre"][0].split()[-2:] == ["check", "/etc/l4lb/lb.ini"]
