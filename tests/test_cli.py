"""
Tests for L{l4lb.cli}: C{l4lb check FILE} prints what HAProxy's C{-c} would
and exits 0 for a valid file, 1 for an invalid one, 2 for one that would not
start (no listener).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Type

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IResolutionReceiver,
)
from zope.interface import implementer

from l4lb.cli import main
from l4lb.config import check_config_file

ROOT = Path(__file__).resolve().parent.parent

VALID = """\
[global]
maxconn = 4096
log = stdout

[defaults]
mode = tcp
timeout connect = 5000ms
timeout client = 50s
timeout server = 50s
retries = 3
option redispatch = true

[frontend layer4_frontend]
bind = *:80
default_backend = layer4_backend

[backend layer4_backend]
balance = roundrobin
server server1 = 127.168.1.101:80 check
server server2 = 127.168.1.102:80 check inter 2000 rise 2 fall 3 weight 10
"""

INVALID = """\
[defaults]
timeout connect = 2s
timeout client = 30 parsecs
timeout server = 30s
frobnicate = yes

[frontend fe]
bind = 127.0.0.1:8080
default_backend = nowhere

[backend be]
server s1 = 127.0.0.1:9000
"""


@implementer(IHostResolution)
class _Resolution:
    name = "fake"

    def cancel(self) -> None:
        """Never called."""


@implementer(IHostnameResolver)
class TableResolver:
    """
    Resolves from a table once the fake reactor runs.
    """

    def __init__(self, table: Dict[str, str]) -> None:
        self.table = table
        self.pending: List[tuple[IResolutionReceiver, str]] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Optional[Sequence[Type[IAddress]]] = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        self.pending.append((resolutionReceiver, hostName))
        return _Resolution()

    def finish(self) -> None:
        for receiver, name in self.pending:
            if name in self.table:
                receiver.addressResolved(IPv4Address("TCP", self.table[name], 0))
            receiver.resolutionComplete()


class FakeReactor:
    """
    Just enough reactor for C{l4lb check}: a name resolver, run and stop.
    """

    def __init__(self, table: Dict[str, str]) -> None:
        self.nameResolver = TableResolver(table)
        self.ran = False
        self.stopped = False

    def run(self) -> None:
        self.ran = True
        self.nameResolver.finish()

    def stop(self) -> None:
        self.stopped = True


def write(tmp_path: Path, text: str, name: str = "lb.ini") -> str:
    """
    Write C{text} to a file and return its path.
    """
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_check_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file prints 'Configuration file is valid' and exits 0."""
    assert main(["check", write(tmp_path, VALID)]) == 0
    out, err = capsys.readouterr()
    assert out == "Configuration file is valid\n"
    assert err == ""


def test_check_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid file prints every error as FILE:LINE on stderr and exits 1."""
    path = write(tmp_path, INVALID)
    assert main(["check", path]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert [line.split(": ", 1)[0] for line in lines[:3]] == [f"{path}:3", f"{path}:5", f"{path}:9"]
    assert "key 'frobnicate': unknown key" in lines[1]
    assert lines[-1] == "Configuration file is invalid: 3 errors"


def test_check_prints_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Warnings go to stderr and do not make the file invalid."""
    path = write(tmp_path, VALID.replace("timeout client = 50s\n", ""))
    assert main(["check", path]) == 0
    out, err = capsys.readouterr()
    assert out == "Configuration file is valid\n"
    assert err.startswith(f"{path}:12: warning: [frontend layer4_frontend] missing timeouts")


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that cannot be read is an error, exit 1."""
    assert main(["check", str(tmp_path / "nope.ini")]) == 1
    assert "cannot read the configuration" in capsys.readouterr().err


def test_check_resolves_names_with_the_reactor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Host names are resolved by running the reactor's resolver; a failure is an error."""
    text = VALID.replace("127.168.1.101", "app.internal").replace("127.168.1.102", "gone.internal")
    path = write(tmp_path, text)
    reactor = FakeReactor({"app.internal": "127.0.12.1"})
    assert main(["check", path], reactor=reactor) == 1
    assert reactor.ran and reactor.stopped
    err = capsys.readouterr().err
    assert f"{path}:20: [backend layer4_backend] key 'server server2': cannot resolve host 'gone.internal'" in err


def test_check_config_file_reports() -> None:
    """check_config_file fires with a report that report_check prints."""
    reactor = FakeReactor({})
    reports: List[object] = []
    check_config_file(str(ROOT / "nonexistent.ini"), reactor).addCallback(reports.append)  # type: ignore[arg-type]
    (report,) = reports
    assert not report.valid  # type: ignore[attr-defined]


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """No command, or a missing FILE, is a usage error with status 2."""
    assert main([]) == 2
    assert main(["check"]) == 2
    assert "usage: l4lb" in capsys.readouterr().err


def test_check_as_a_subprocess(tmp_path: Path) -> None:
    """'python -m l4lb.cli check FILE' works as a program: 0 valid, 1 invalid."""
    for text, status in ((VALID, 0), (INVALID, 1)):
        path = write(tmp_path, text, f"lb{status}.ini")
        result = subprocess.run(
            [sys.executable, "-m", "l4lb.cli", "check", path],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == status, result.stdout + result.stderr
        if status == 0:
            assert result.stdout == "Configuration file is valid\n"
        else:
            assert f"{path}:5:" in result.stderr


def test_check_without_listener_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty file has no error but no listener: HAProxy's message, exit 2."""
    assert main(["check", write(tmp_path, "")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Configuration file has no error but will not start (no listener)" in err


def test_start_without_listener_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    twistd's makeService refuses a file without a listener before anything
    is bound: HAProxy's message on standard error, exit status 1.
    """
    from twisted.internet.testing import MemoryReactor

    from l4lb.tap import Options, makeService

    options = Options()
    options.parseOptions(["--config", write(tmp_path, VALID.split("[frontend")[0])])
    reactor = MemoryReactor()
    with pytest.raises(SystemExit) as caught:
        makeService(options, reactor)
    assert caught.value.code == 1
    assert "Configuration file has no error but will not start (no listener)" in capsys.readouterr().err
    assert reactor.tcpServers == [] and reactor.whenRunningHooks == []
