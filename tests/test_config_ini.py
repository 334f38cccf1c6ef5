"""
Tests for L{l4lb.config._ini}: the INI layer keeps line numbers, agrees with
configparser on values, and reports malformed lines instead of stopping.
"""

from __future__ import annotations

import configparser

from l4lb.config._ini import RawEntry, read_ini

TEXT = """\
# comment
; another comment
[global]
maxconn = 10   # inline comment
log=stdout

[backend  Web ]
server S1 = 10.0.0.1:80 check
    inter 2s
option allbackups
timeout connect = 5s ; trailing
bind = *:80,
  *:81
  # a comment ends the value
"""


def test_lines_and_values() -> None:
    """Every section and key gets its line; continuation lines are joined."""
    sections, problems = read_ini(TEXT, "f.ini")
    assert problems == []
    assert [(s.header, s.line) for s in sections] == [("global", 3), ("backend  Web", 7)]
    assert sections[0].entries == (
        RawEntry("maxconn", "10", 4, ((4, "10"),)),
        RawEntry("log", "stdout", 5, ((5, "stdout"),)),
    )
    backend = sections[1].entries
    assert backend[0] == RawEntry(
        "server S1", "10.0.0.1:80 check\ninter 2s", 8, ((8, "10.0.0.1:80 check"), (9, "inter 2s"))
    )
    assert backend[1] == RawEntry("option allbackups", None, 10, ())
    assert backend[2].value == "5s"
    assert backend[3].pieces == ((12, "*:80,"), (13, "*:81"))


def test_values_agree_with_configparser() -> None:
    """The scanner's pieces, joined, are exactly configparser's values."""
    sections, _ = read_ini(TEXT, "f.ini")
    parser = configparser.RawConfigParser(
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=("#", ";"),
        allow_no_value=True,
        empty_lines_in_values=False,
        interpolation=None,
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(TEXT)
    for section in sections:
        header = "backend  Web " if section.header.startswith("backend") else section.header
        for entry in section.entries:
            assert parser.get(header, entry.key) == entry.value
            if entry.value is not None:
                assert "\n".join(text for _, text in entry.pieces) == entry.value


def test_malformed_lines_are_reported_and_reading_goes_on() -> None:
    """Bad lines become problems at their line; later keys are still read."""
    text = "stray = 1\n[a]\n= value\noption x\n   continued\n[b] junk\n[c\nkey = 2\n"
    sections, problems = read_ini(text, "f.ini")
    assert [p.line for p in problems] == [1, 3, 5, 6, 7]
    assert "outside any section" in problems[0].message
    assert "cannot parse line '= value'" in problems[1].message
    assert "continues a key that has no '='" in problems[2].message
    assert "unexpected text 'junk'" in problems[3].message
    assert [s.header for s in sections] == ["a", "b"]
    assert sections[1].entries == (RawEntry("key", "2", 8, ((8, "2"),)),)


def test_repeated_keys_are_all_kept() -> None:
    """Repeated keys and sections are kept (the parser reports them)."""
    sections, problems = read_ini("[a]\nk = 1\nk = 2\n[a]\nk = 3\n", "f.ini")
    assert problems == []
    assert [e.value for s in sections for e in s.entries] == ["1", "2", "3"]
