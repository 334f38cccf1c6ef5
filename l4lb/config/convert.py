"""
Converting between HAProxy's C{haproxy.cfg} and C{lb.ini}, both ways.

    ini_text, problems = haproxy_to_ini(cfg_text, "haproxy.cfg")
    cfg_text = ini_to_haproxy(ini_text, "lb.ini")

Comments stay on the line or above the line they were on.  Converting a file
and converting the result back gives the same configuration (the same
objects once parsed), which C{tests/test_convert.py} checks over generated
files.  C{l4lb convert} runs these functions.
"""

from __future__ import annotations

import re
import shlex
from typing import Dict, List, Optional, Set, Tuple

from l4lb.config._ini import COMMENT_PREFIXES, RawEntry, RawSection, read_ini
from l4lb.config.errors import WARNING, ConfigError, InvalidValue, Problem
from l4lb.config.haproxycfg import MULTI_LINE, parse_haproxy_config_with_warnings, translate
from l4lb.config.keywords import BARE_VALUES, DEFAULTS, FRONTEND, GLOBAL, LISTEN, split_key
from l4lb.config.units import parse_bool

_CFG_PLAIN = re.compile(r"[^\s\"'\\#$]+")
_INDENT = "    "
#: What HAProxy's own processes need that l4lb decides by itself.
_HELLO = "tcp-request content accept if { req.ssl_hello_type 1 }"


def haproxy_to_ini(text: str, source: str = "<memory>") -> Tuple[str, List[Problem]]:
    """
    Convert a C{haproxy.cfg} to C{lb.ini} text.  Environment variables are
    replaced by their values, and C{.if} blocks by the lines they keep.

    @return: The C{lb.ini} text and every problem found in the file (the
        text is written even when there are errors, to be corrected).
    """
    translation = translate(text, source)
    try:
        _, problems = parse_haproxy_config_with_warnings(text, source)
    except ConfigError as error:
        problems = error.warnings + error.problems
    return translation.text, problems


def cfg_word(word: str) -> str:
    """
    Write a word for C{haproxy.cfg}: as it is, or in single quotes (where
    HAProxy takes everything literally), or with backslashes.
    """
    if word and _CFG_PLAIN.fullmatch(word):
        return word
    if "'" not in word:
        return f"'{word}'"
    return re.sub(r"([\s\"'\\#$])", r"\\\1", word)


def _rule_text(text: str) -> str:
    """
    A tcp-check rule, whose C{lb.ini} syntax is HAProxy's, with only what
    HAProxy would read differently escaped: C{$} and C{#} outside quotes.
    """
    out: List[str] = []
    quote: Optional[str] = None
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif char in "\"'" and quote in (None, char):
            quote = None if quote == char else char
        elif char == "$" and quote != "'":
            char = "\\$"
        elif char == "#" and quote is None:
            char = "\\#"
        out.append(char)
    return "".join(out)


def _words(keyword: str, text: str) -> str:
    if keyword == "tcp-check":
        return _rule_text(text)
    try:
        words = shlex.split(text) if keyword in ("server", "default-server") else text.split()
    except ValueError:
        words = text.split()
    return " ".join(cfg_word(w) for w in words)


def _sni_condition(names: List[str]) -> str:
    """
    HAProxy's condition for C{sni HOST ...}: exact names together, each
    wildcard as the end of the name.
    """
    terms: List[str] = []
    exact: List[str] = []
    for name in names:
        if name.startswith("*."):
            if exact:
                terms.append("{ req.ssl_sni -i " + " ".join(exact) + " }")
                exact = []
            terms.append("{ req.ssl_sni -m end ." + name[2:] + " }")
        else:
            exact.append(name)
    if exact:
        terms.append("{ req.ssl_sni -i " + " ".join(exact) + " }")
    return " || ".join(terms)


def _entry_lines(kind: str, entry: RawEntry, section: List[str]) -> List[str]:
    """
    The C{haproxy.cfg} lines of one C{lb.ini} entry.
    """
    try:
        key = split_key(entry.key, entry.value is not None)
    except InvalidValue:
        # Not a key l4lb reads: written as it is, for HAProxy to judge.
        return [" ".join([entry.key] + [text for _, text in entry.pieces])]
    keyword = key.keyword
    value = entry.value
    pieces = [text for _, text in entry.pieces] or ([value] if value else [])
    if keyword in BARE_VALUES:
        word = (value or "").strip()
        try:
            on = parse_bool(word) if word else True
        except Exception:
            return [f"{entry.key} {word}"]
        if on:
            return [entry.key]
        # HAProxy negates options only; another flag is off when absent.
        return [f"no {entry.key}"] if keyword.startswith("option ") else []
    if keyword == "log" and kind != GLOBAL:
        return ["no log"] if (value or "").strip().lower() == "none" else ["log global"]
    if keyword == "log":
        target = (value or "").strip()
        if target.lower() == "none":
            return []
        if target.lower() in ("stdout", "stderr"):
            return [f"log {target.lower()} format raw local0"]
        return [f"log {target}"]
    if keyword == "log-format" and (value or "").strip().lower() == "tcplog":
        # HAProxy's log-format takes a format string: tcplog is an option.
        return [] if "option tcplog" in section else ["option tcplog"]
    if keyword == "use_backend":
        names = (value or "").split()[1:]
        lines = [] if _HELLO in section else [_HELLO]
        return lines + [f"use_backend {key.name} if {_sni_condition(names)}"]
    if keyword in MULTI_LINE:
        return [f"{entry.key} {_words(keyword, piece)}" for piece in pieces]
    joined = " ".join(pieces)
    if value is None:
        return [entry.key]
    return [f"{entry.key} {_words(keyword, joined)}"]


def _inline_comment(line: str) -> str:
    """
    The comment at the end of an C{lb.ini} line, with its C{#}, or C{""}.
    """
    for prefix in COMMENT_PREFIXES:
        at = line.find(" " + prefix)
        if at != -1:
            return "  #" + line[at + 2 :].rstrip()
    return ""


def ini_to_haproxy(text: str, source: str = "<memory>") -> str:
    """
    Convert C{lb.ini} text to a C{haproxy.cfg}.

    Where l4lb's defaults differ from HAProxy's, the value is written
    out: the global C{log} target (C{stdout} unless set) and C{log global}
    in each frontend (HAProxy logs only proxies that say so).

    @raise ConfigError: When the file cannot be read as C{lb.ini}.
    """
    raw_sections, problems = read_ini(text.lstrip("\ufeff"), source)
    if problems:
        raise ConfigError(problems)
    lines = text.lstrip("\ufeff").splitlines()
    headers: Dict[int, RawSection] = {s.line: s for s in raw_sections}
    entries: Dict[int, Tuple[RawSection, RawEntry]] = {}
    continued: Set[int] = set()
    for section in raw_sections:
        for entry in section.entries:
            entries[entry.line] = (section, entry)
            continued.update(line for line, _ in entry.pieces[1:])
    logs = {s.line: any(e.key.split()[0].lower() == "log" for e in s.entries) for s in raw_sections}
    defaults_log = any(logs[s.line] for s in raw_sections if s.header.lower() == DEFAULTS)
    out: List[str] = []
    if not any(s.header.lower() == GLOBAL for s in raw_sections):
        out += ["global", _INDENT + "log stdout format raw local0", ""]
    current: List[str] = []
    in_section = False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if number in continued:
            continue
        if not stripped:
            out.append("")
        elif stripped.startswith(COMMENT_PREFIXES):
            out.append((_INDENT if in_section else "") + "#" + stripped[1:])
        elif number in headers:
            section = headers[number]
            kind = section.header.split()[0].lower()
            out.append(section.header + _inline_comment(line))
            current = []
            in_section = True
            if not logs[number] and kind == GLOBAL:
                out.append(_INDENT + "log stdout format raw local0")
            if not logs[number] and kind in (FRONTEND, LISTEN) and not defaults_log:
                out.append(_INDENT + "log global")
        elif number in entries:
            section, entry = entries[number]
            kind = section.header.split()[0].lower()
            converted = _entry_lines(kind, entry, current)
            current += converted
            tail = _inline_comment(line)
            for at, cfg in enumerate(converted):
                out.append(_INDENT + cfg + (tail if at == 0 else ""))
    return "\n".join(out).rstrip("\n") + "\n"


def convert_problems(problems: List[Problem]) -> Tuple[List[Problem], List[Problem]]:
    """
    Split problems into errors and warnings.
    """
    errors = [p for p in problems if p.severity != WARNING]
    return errors, [p for p in problems if p.severity == WARNING]
