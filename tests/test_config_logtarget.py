"""
The global C{log} target (files, streams, syslog sockets, syslog over UDP)
and C{log-format}, as lb.ini writes them, with the errors bad values get.
"""

from __future__ import annotations

from typing import List

import pytest

from l4lb.config import ConfigError, LogTarget, Problem, parse_config

PROXY = """\
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s
{defaults}
[frontend fe]
bind = 127.0.0.1:8080
default_backend = be
{frontend}
[backend be]
server s1 = 127.0.0.1:9000
"""


def errors_of(text: str) -> List[Problem]:
    """Parse C{text}, which must fail, and return its errors."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "lb.ini")
    return caught.value.problems


@pytest.mark.parametrize(
    "text, expected",
    [
        ("stdout", LogTarget("stdout")),
        ("/var/log/l4lb.log", LogTarget("file", "/var/log/l4lb.log")),
        ("syslog", LogTarget("syslog", "/dev/log")),
        ("syslog local3", LogTarget("syslog", "/dev/log", facility="local3")),
        ("/dev/log local0", LogTarget("syslog", "/dev/log")),
        ("unix@/run/log.sock daemon notice", LogTarget("syslog", "/run/log.sock", facility="daemon", level="notice")),
        ("udp@127.0.0.1:514 local0", LogTarget("udp", host="127.0.0.1", port=514)),
        ("udp@127.0.0.1", LogTarget("udp", host="127.0.0.1", port=514)),
        ("udp@[::1]:5514 local7", LogTarget("udp", host="::1", port=5514, facility="local7")),
        ("10.0.0.5:1514 local1 info", LogTarget("udp", host="10.0.0.5", port=1514, facility="local1", level="info")),
        ("10.0.0.5 user", LogTarget("udp", host="10.0.0.5", port=514, facility="user")),
    ],
)
def test_global_log_targets(text: str, expected: LogTarget) -> None:
    """Each written form of the global log maps to its target, facility local0 and every level unless given."""
    assert parse_config(f"[global]\nlog = {text}\n").global_settings.log == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("syslog local9", "'local9' is not a syslog facility; allowed: kern, user,"),
        ("syslog local0 chatty", "'chatty' is not a syslog level; allowed: emerg, alert,"),
        ("syslog local0 info extra", "unexpected 'extra'"),
        ("udp@logs.example.com:514 local0", "is not an IP address with an optional port"),
        ("udp@127.0.0.1:99999 local0", "'99999' is not a port; expected 1-65535"),
        ("tcp@127.0.0.1:514 local0", "'tcp@' is not supported; allowed: udp@, unix@"),
        ("127.0.0.1:514", "needs a facility after the address"),
        ("/dev/log localx", "'localx' is not a syslog facility"),
        ("unix@dev/log", "expected an absolute socket path"),
        ("sislog", "is not a log target; allowed: stdout, stderr, none, a file path"),
    ],
)
def test_global_log_errors(text: str, message: str) -> None:
    """A bad log target is one error at its line that says what is allowed."""
    (problem,) = errors_of(f"[global]\nlog = {text}\n")
    assert problem.line == 2 and problem.key == "log"
    assert message in problem.message


@pytest.mark.parametrize(
    "defaults, frontend, expected",
    [
        ("", "", "tcplog"),
        ("log-format = json", "", "json"),
        ("", "log-format = json", "json"),
        ("log-format = json", "log-format = tcplog", "tcplog"),
    ],
)
def test_log_format(defaults: str, frontend: str, expected: str) -> None:
    """log-format is tcplog by default, set in [defaults] or per frontend, the frontend winning."""
    config = parse_config(PROXY.format(defaults=defaults, frontend=frontend))
    assert config.frontends[0].log_format == expected


def test_log_format_errors() -> None:
    """A custom %-format or an unknown word is refused with the allowed values."""
    (problem,) = errors_of(PROXY.format(defaults="", frontend='log-format = "%ci:%cp %ft"'))
    assert "custom %-variable formats are not supported; allowed: tcplog, json" in problem.message
    (problem,) = errors_of(PROXY.format(defaults="", frontend="log-format = yaml"))
    assert "'yaml' is not a log format; allowed: tcplog, json" in problem.message


def test_log_format_not_in_a_backend() -> None:
    """log-format belongs to frontends; a backend section refuses it."""
    text = PROXY.format(defaults="", frontend="") + "log-format = json\n"
    (problem,) = errors_of(text)
    assert problem.key == "log-format"
