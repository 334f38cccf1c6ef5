"""
Tests for L{l4lb.config.listeners}: a configuration without errors that
has nothing to listen on is refused, in HAProxy's words, by the one rule
that C{l4lb check}, start-up and reload share.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import List

import pytest

from l4lb.config import (
    CheckReport,
    ConfigError,
    NoListenerError,
    check_config_file,
    has_listener,
    parse_config,
    report_check,
    require_listener,
)
from l4lb.config.listeners import NO_LISTENER

from tests.test_cli import FakeReactor

HEAD = """\
[global]
maxconn = 100
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s
"""

BACKEND = """\
[backend be]
server s1 = 127.0.10.1:80
"""

FRONTEND = """\
[frontend fe]
bind = 127.0.0.1:8001
default_backend = be
"""

#: Files without errors that listen nowhere: empty, comments only, cut
#: short after the globals, a backend alone, a listen section without bind.
NOTHING_LISTENS = [
    "",
    "# nothing yet\n\n",
    "[global]\n",
    HEAD,
    HEAD + BACKEND,
    HEAD + "[listen web]\nserver s1 = 127.0.10.1:80\n",
]


def test_haproxy_words() -> None:
    """
    The message is HAProxy's, word for word, so that an operator's
    searches and scripts find it.
    """
    assert NO_LISTENER == "Configuration file has no error but will not start (no listener)"


@pytest.mark.parametrize("text", NOTHING_LISTENS)
def test_no_listener_is_refused(text: str) -> None:
    """
    A file without errors but without a frontend that binds raises
    L{NoListenerError}, a L{ConfigError} naming the file, with HAProxy's
    message and what to add.
    """
    config = parse_config(text, "lb.ini")
    assert not has_listener(config)
    with pytest.raises(NoListenerError) as caught:
        require_listener(config)
    assert isinstance(caught.value, ConfigError)
    (problem,) = caught.value.problems
    assert str(problem).startswith(f"lb.ini: {NO_LISTENER}:")
    assert "bind" in problem.message


@pytest.mark.parametrize(
    "frontend",
    [
        FRONTEND,
        "[listen web]\nbind = 127.0.0.1:8001\nserver s1 = 127.0.10.1:80\n",
    ],
)
def test_a_tcp_frontend_listens(frontend: str) -> None:
    """
    A frontend or a listen section with a bind is a listener.
    """
    config = parse_config(HEAD + BACKEND + frontend, "lb.ini")
    assert has_listener(config)
    require_listener(config)


def test_a_udp_frontend_listens() -> None:
    """
    A UDP frontend is a listener too.
    """
    text = (
        HEAD
        + "[backend dns]\nmode = udp\nserver s1 = 127.0.10.1:53\n"
        + "[frontend dns]\nmode = udp\nbind = 127.0.0.1:5353\ndefault_backend = dns\n"
    )
    config = parse_config(text, "lb.ini")
    assert config.frontends[0].mode == "udp"
    assert has_listener(config)


def test_warnings_travel_with_the_refusal() -> None:
    """
    The warnings given to L{require_listener} are carried by the error, so
    that start-up can print them with it.
    """
    config = parse_config(HEAD, "lb.ini")
    with pytest.raises(NoListenerError) as caught:
        require_listener(config, ["w"])  # type: ignore[list-item]
    assert caught.value.warnings == ["w"]


def check(tmp_path: Path, text: str) -> "tuple[CheckReport, int, str, str]":
    """
    Run L{check_config_file} and L{report_check} on C{text} written to a
    file; return the report, the exit status and what went to the two
    streams.
    """
    path = tmp_path / "lb.ini"
    path.write_text(text)
    reports: List[CheckReport] = []
    check_config_file(str(path), FakeReactor({})).addCallback(reports.append)  # type: ignore[arg-type]
    (report,) = reports
    out, err = io.StringIO(), io.StringIO()
    status = report_check(report, out, err)
    return report, status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("text", NOTHING_LISTENS)
def test_check_exits_2_like_haproxy(tmp_path: Path, text: str) -> None:
    """
    C{l4lb check} on a file that listens nowhere prints HAProxy's message
    with the file on standard error, nothing on standard output, and exits
    2 as C{haproxy -c} does.
    """
    report, status, out, err = check(tmp_path, text)
    assert status == 2
    assert report.no_listener and not report.valid and report.config is None
    assert out == ""
    assert f"{tmp_path / 'lb.ini'}: {NO_LISTENER}:" in err
    assert "Configuration file is valid" not in out + err


def test_check_errors_come_first(tmp_path: Path) -> None:
    """
    A file with errors and no listener keeps the exit status of errors, 1,
    and reports its errors, not the missing listener.
    """
    report, status, out, err = check(tmp_path, HEAD + "frobnicate = yes\n")
    assert status == 1
    assert not report.no_listener
    assert "frobnicate" in err and NO_LISTENER not in err


def test_check_still_accepts_a_listener(tmp_path: Path) -> None:
    """
    A file with a frontend that binds is still valid, exit 0.
    """
    report, status, out, err = check(tmp_path, HEAD + BACKEND + FRONTEND)
    assert (status, out, report.no_listener) == (0, "Configuration file is valid\n", False)
