"""
C{l4lb convert FILE [-o OUT]}: a C{haproxy.cfg} to C{lb.ini}, or an
C{lb.ini} to C{haproxy.cfg}, told apart by the file's content.

Problems go to standard error, one per line, as C{l4lb check} prints them;
the exit status is 0 when the file has no error, 1 when it has (the
converted text is written all the same, to be corrected), 2 when the file
cannot be read.  Converting to C{haproxy.cfg} also names, as notes, the keys
that are l4lb's own (HAProxy 2.6 does not read them).
"""

from __future__ import annotations

from typing import List, Optional, TextIO

from l4lb.config._ini import decode_text, read_ini
from l4lb.config.convert import haproxy_to_ini, ini_to_haproxy
from l4lb.config.errors import WARNING, ConfigError, Problem
from l4lb.config.haproxycfg import is_haproxy_format
from l4lb.config.haproxykeys import L4LB_ONLY
from l4lb.config.keywords import split_key
from l4lb.config.parser import parse_config_with_warnings


def _l4lb_only(text: str, path: str) -> List[str]:
    """
    A note for each key of C{text} that HAProxy does not read.
    """
    notes = []
    sections, _ = read_ini(text, path)
    for section in sections:
        for entry in section.entries:
            try:
                keyword = split_key(entry.key, entry.value is not None).keyword
            except Exception:
                continue
            value = (entry.value or "").strip().lower()
            if keyword == "log-format" and value == "tcplog":
                continue  # Written as HAProxy's 'option tcplog'.
            own = (keyword == "mode" and value == "udp") or (
                keyword == "balance" and value.startswith("maglev")
            )
            if keyword in L4LB_ONLY or own:
                shown = entry.key
                if keyword in ("mode", "balance"):
                    shown = f"{entry.key} {entry.value or ''}".strip()
                notes.append(
                    f"{path}:{entry.line}: note: '{shown}' is l4lb's own; HAProxy does not read it"
                )
    return notes


def convert(path: str, output: Optional[str], out: TextIO, err: TextIO) -> int:
    """
    Run C{l4lb convert}.

    @param output: The file to write, or C{None} for C{out}.
    @return: The exit status.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        err.write(f"{path}: cannot read the configuration: {error.strerror or error}\n")
        return 2
    text, undecodable = decode_text(data, path)
    if undecodable:
        for problem in undecodable:
            err.write(f"{problem}\n")
        return 2
    problems: List[Problem]
    if is_haproxy_format(text):
        converted, problems = haproxy_to_ini(text, path)
        notes: List[str] = []
    else:
        try:
            _, problems = parse_config_with_warnings(text, path)
        except ConfigError as error:
            problems = error.warnings + error.problems
        try:
            converted = ini_to_haproxy(text, path)
        except ConfigError as error:
            for problem in error.problems:
                err.write(f"{problem}\n")
            return 1
        notes = _l4lb_only(text, path)
    for problem in problems:
        err.write(f"{problem}\n")
    for note in notes:
        err.write(f"{note}\n")
    if output is None:
        out.write(converted)
    else:
        with open(output, "w") as f:
            f.write(converted)
    return 1 if any(p.severity != WARNING for p in problems) else 0
