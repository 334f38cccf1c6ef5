"""
Tests for L{l4lb.admin.protocol}: the runtime API's line protocol and its
UNIX socket, and the C{stats socket} configuration key.
"""

from __future__ import annotations

import os
import stat
import tempfile
from typing import Any, List

import pytest
from twisted.internet.testing import StringTransport

from l4lb.admin.commands import CommandError
from l4lb.admin.protocol import AdminFactory, listen_admin
from l4lb.config import ConfigError
from l4lb.config.model import StatsSocket
from l4lb.config.parser import parse_config


class FakeCommands:
    """
    Commands that echo their line, and fail on C{bad}.
    """

    def __init__(self) -> None:
        self.seen: List[str] = []

    def run(self, line: str) -> str:
        self.seen.append(line)
        if line == "bad":
            raise CommandError("Unknown command 'bad'.")
        return f"ran {line}\n"


def connect() -> "tuple[Any, StringTransport, FakeCommands]":
    """
    A protocol connected to a string transport, over L{FakeCommands}.
    """
    commands = FakeCommands()
    factory = AdminFactory(commands)  # type: ignore[arg-type]
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, commands


def test_one_line_then_close() -> None:
    """
    A line is answered, followed by an empty line, and the connection is
    closed as HAProxy's socket does without C{prompt}.
    """
    proto, transport, _ = connect()
    proto.dataReceived(b"show info\n")
    assert transport.value() == b"ran show info\n\n"
    assert transport.disconnecting


def test_semicolons_split_commands_and_errors_are_one_line() -> None:
    """
    Commands separated by C{;} each get their answer; an error is one line.
    """
    proto, transport, commands = connect()
    proto.dataReceived(b"a; bad ;b\n")
    assert commands.seen == ["a", "bad", "b"]
    assert transport.value() == b"ran a\n\nUnknown command 'bad'.\n\nran b\n\n"


def test_prompt_keeps_connection_open() -> None:
    """
    After C{prompt} each answer ends with C{> } and the connection stays
    open until C{quit}.
    """
    proto, transport, _ = connect()
    proto.dataReceived(b"prompt\n")
    proto.dataReceived(b"x\n")
    assert not transport.disconnecting
    assert transport.value() == b"> ran x\n\n> "
    proto.dataReceived(b"quit\n")
    assert transport.disconnecting


def test_listen_admin_mode_and_stale_socket() -> None:
    """
    The socket gets the configured mode, and a stale socket file from an
    earlier process does not prevent listening.
    """
    from twisted.internet import reactor

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "admin.sock")
        for _ in range(2):
            port = listen_admin(reactor, path, 0o640, FakeCommands())  # type: ignore[arg-type]
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
            # Close the socket without removing the file: a crashed process.
            reactor.removeReader(port)
            port.socket.close()


def test_config_stats_socket() -> None:
    """
    C{stats socket} takes a path and an optional octal mode (0600 by
    default) and HAProxy's C{level admin}; a relative path, a bad mode or
    a lower level is an error.
    """
    base = "[global]\nstats socket = {}\n"
    config = parse_config(base.format("/run/l4lb/admin.sock"), "lb.ini")
    assert config.global_settings.stats_socket == StatsSocket("/run/l4lb/admin.sock", 0o600)
    config = parse_config(base.format("/tmp/a.sock mode 660"), "lb.ini")
    assert config.global_settings.stats_socket == StatsSocket("/tmp/a.sock", 0o660)
    assert parse_config("[global]\n", "lb.ini").global_settings.stats_socket is None
    config = parse_config(base.format("/tmp/a.sock mode 660 level admin"), "lb.ini")
    assert config.global_settings.stats_socket == StatsSocket("/tmp/a.sock", 0o660)
    for bad in ("admin.sock", "/a.sock mode 99", "/a.sock level user"):
        with pytest.raises(ConfigError):
            parse_config(base.format(bad), "lb.ini")


def test_config_stats_bind_and_auth() -> None:
    """
    C{stats bind} takes IP:PORT, [IPV6]:PORT or a bare port (loopback);
    C{stats auth} USER:PASSWORD; anything else is an error.
    """
    from l4lb.config.model import StatsBind

    def settings(text: str) -> Any:
        return parse_config("[global]\n" + text, "lb.ini").global_settings

    assert settings("stats bind = 127.0.0.1:8404\n").stats_bind == StatsBind("127.0.0.1", 8404)
    assert settings("stats bind = [::1]:8404\n").stats_bind == StatsBind("::1", 8404)
    assert settings("stats bind = 8404\n").stats_bind == StatsBind("127.0.0.1", 8404)
    assert settings("stats auth = ops:a:b\n").stats_auth == ("ops", "a:b")
    for bad in ("stats bind = web:80", "stats bind = 1.2.3.4:0", "stats auth = ops"):
        with pytest.raises(ConfigError):
            settings(bad + "\n")
