"""
Connection log lines: HAProxy's tcplog layout, and where they are written.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from l4lb.config.model import LogTarget
from l4lb.logs import MOST_PENDING_LINES, ConnectionRecord, LogSink, format_date, format_tcplog


def record(**changes: object) -> ConnectionRecord:
    values: dict = dict(
        client_host="127.0.1.2",
        client_port=33313,
        accepted=0.0,
        frontend="fnt",
        backend="bck",
        server="srv1",
        queue_time=0.0,
        connect_time=0.0,
        total_time=5.007,
        bytes_out=212,
        termination="--",
        actconn=0,
        feconn=0,
        beconn=0,
        srvconn=0,
        retries=3,
    )
    values.update(changes)
    return ConnectionRecord(**values)


def test_reference_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layout matches HAProxy's documented tcplog example field for field."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        accepted = 1233922371.443  # 06/Feb/2009:12:12:51.443 UTC
        line = format_tcplog(record(accepted=accepted))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert line == (
        "127.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 --"
        " 0/0/0/0/3 0/0"
    )


def test_unreached_phases_and_nosrv() -> None:
    """A connection that never reached a server logs <NOSRV> and -1 timers."""
    line = format_tcplog(
        record(server=None, queue_time=None, connect_time=None, termination="SC")
    )
    assert " bck/<NOSRV> -1/-1/5007 212 SC " in line


def test_redispatched_retries_have_a_plus() -> None:
    """Retries that went to another server are written +N."""
    assert " 0/0/0/0/+2 " in format_tcplog(record(retries=2, redispatched=True))


def test_date_has_milliseconds() -> None:
    """Accept dates carry milliseconds, zero-padded."""
    assert format_date(time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1)) + 0.009).endswith(
        "04/Mar/2026:05:06:07.009"
    )


def test_file_sink_appends_and_reopens(tmp_path: Path) -> None:
    """A file target gets one line per write, and reopen() starts writing to
    a new file after the old one was moved away (log rotation)."""
    path = tmp_path / "l4lb.log"
    sink = LogSink(LogTarget(kind="file", path=str(path)))
    sink.write("one")
    path.rename(tmp_path / "l4lb.log.1")
    sink.write("two")
    sink.reopen()
    sink.write("three")
    sink.close()
    assert (tmp_path / "l4lb.log.1").read_text() == "one\ntwo\n"
    assert path.read_text() == "three\n"


def test_failed_reopen_keeps_the_open_file(tmp_path: Path) -> None:
    """When the new file cannot be opened, reopen() raises and the sink goes on writing to the file it had."""
    path = tmp_path / "l4lb.log"
    sink = LogSink(LogTarget(kind="file", path=str(path)))
    sink.write("one")
    path.rename(tmp_path / "l4lb.log.1")
    path.mkdir()
    with pytest.raises(IsADirectoryError):
        sink.reopen()
    sink.write("two")
    sink.close()
    assert (tmp_path / "l4lb.log.1").read_text() == "one\ntwo\n"


def test_none_sink_writes_nothing(tmp_path: Path) -> None:
    """`log = none` writes nothing and does not fail."""
    sink = LogSink(LogTarget(kind="none"))
    sink.write("ignored")
    sink.close()


def test_lines_of_one_turn_are_written_together(tmp_path: Path) -> None:
    """
    With a reactor, the lines written during one turn reach the file
    together when the reactor next runs its due calls, in order; close()
    writes what is still waiting.
    """
    path = tmp_path / "l4lb.log"
    clock = Clock()
    sink = LogSink(LogTarget(kind="file", path=str(path)), clock)
    sink.write("one")
    sink.write("two")
    assert path.read_text() == ""
    clock.advance(0)
    assert path.read_text() == "one\ntwo\n"
    assert not clock.getDelayedCalls()
    sink.write("three")
    sink.close()
    assert path.read_text() == "one\ntwo\nthree\n"
    assert not clock.getDelayedCalls()


def test_a_full_turn_is_written_at_once(tmp_path: Path) -> None:
    """A burst of MOST_PENDING_LINES lines is written without waiting for the turn to end."""
    path = tmp_path / "l4lb.log"
    clock = Clock()
    sink = LogSink(LogTarget(kind="file", path=str(path)), clock)
    for i in range(MOST_PENDING_LINES + 1):
        sink.write(f"line {i}")
    assert path.read_text().count("\n") == MOST_PENDING_LINES
    clock.advance(0)
    assert path.read_text().splitlines() == [f"line {i}" for i in range(MOST_PENDING_LINES + 1)]
    sink.close()


def test_lines_waiting_at_rotation_go_to_the_old_file(tmp_path: Path) -> None:
    """reopen() writes the lines of the current turn to the file they were written for."""
    path = tmp_path / "l4lb.log"
    clock = Clock()
    sink = LogSink(LogTarget(kind="file", path=str(path)), clock)
    sink.write("before")
    path.rename(tmp_path / "l4lb.log.1")
    sink.reopen()
    sink.write("after")
    clock.advance(0)
    sink.close()
    assert (tmp_path / "l4lb.log.1").read_text() == "before\n"
    assert path.read_text() == "after\n"
