"""
Reading the sections and keys of C{lb.ini} into checked values.

L{SectionReader} understands each section header and each key, parses each
value and records every problem with its file and line.  Combining the
sections into a L{l4lb.config.model.Config} (inheritance from C{[defaults]},
references between sections) is left to L{l4lb.config.parser}.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Set, Tuple

import attr

from l4lb.config._ini import RawEntry, RawSection, read_ini
from l4lb.config.binds import parse_binds
from l4lb.config.errors import WARNING, InvalidValue, Problem
from l4lb.config.keywords import (
    BACKEND,
    BACKEND_TIMEOUTS,
    BARE_VALUES,
    FRONTEND,
    FRONTEND_TIMEOUTS,
    GLOBAL,
    KEYS,
    LISTEN,
    SECTION_KINDS,
    SIMPLE_VALUES,
    Key,
    parse_global_log,
    parse_proxy_log,
    split_key,
    unknown_key_message,
)
from l4lb.config.model import BindSpec, SniRoute
from l4lb.config.protect import parse_rules as parse_source_rules
from l4lb.config.servers import Option, check_name, parse_options, split_words
from l4lb.config.sni import parse_sni_names
from l4lb.config.tcpcheck import parse_rules
from l4lb.config.units import not_allowed

#: What a value looks like, for "missing value" messages.
SYNTAX = {
    "backlog": "an integer >= 1",
    "balance": "an algorithm such as roundrobin",
    "bind": "ADDRESS:PORT such as *:80, or a Twisted endpoint such as tcp:80",
    "default-server": "server options such as: check inter 2s",
    "default_backend": "the name of a backend",
    "hash-balance-factor": "0 or an integer >= 100",
    "hash-type": "map-based or consistent",
    "log-format": "tcplog or json",
    "maxconn": "an integer >= 1",
    "maxpipes": "an integer >= 0",
    "mode": "tcp or udp",
    "maxsessions": "an integer >= 1",
    "udp-responses": "an integer >= 0 (0: no limit)",
    "udp-requests": "an integer >= 0 (0: no limit)",
    "udp-check send": "TEXT to send",
    "udp-check send-binary": "HEX bytes to send",
    "udp-check expect": "any, string TEXT or binary HEX",
    "udp-check dns": "NAME [TYPE]",
    "retries": "an integer >= 0",
    "server": "ADDRESS:PORT [options]",
    "server-template": "COUNT|LOW-HIGH FQDN[:PORT] [options]",
    "nameserver": "IP:PORT or tcp@IP:PORT",
    "servers-from": "etcd URL[,URL...] PREFIX",
    "spread-checks": "an integer from 0 to 50",
    "tune.relay": "lean or classic",
    "tcp-check": "rules, one per line, such as: connect, send PING\\r\\n, expect string +PONG",
    "tcp-request connection": "rules, one per line, such as: reject if src -f deny.lst",
    "stick-table": "type ip size 100k expire 30s store conn_cur,conn_rate(10s)",
    "rate-limit sessions": "an integer >= 0 (new connections per second; 0: no limit)",
    "use_backend": "sni HOST [HOST ...]",
    "sni-fallback": "default or reject",
    "sni-max-hello": "an integer from 512 to 65536 (bytes)",
    "tcp-request inspect-delay": "a time such as 5000 (ms), 5000ms or 5s",
}

@attr.s(frozen=True, slots=True, auto_attribs=True)
class Setting:
    """
    A checked value and the line it is on.
    """

    value: object
    line: int


@attr.s(slots=True, auto_attribs=True)
class Section:
    """
    A section while it is being read.

    @ivar settings: Valid values by keyword.
    @ivar present: Every keyword written in the section, valid or not, so
        that a bad value is not also reported as a missing key.
    @ivar valid: False for a duplicate section, which is read for its errors
        but not used.
    """

    kind: str
    name: str
    header: str
    line: int
    settings: Dict[str, Setting] = attr.Factory(dict)
    binds: List[BindSpec] = attr.Factory(list)
    servers: List[Tuple[str, RawEntry]] = attr.Factory(list)
    templates: List[Tuple[str, RawEntry]] = attr.Factory(list)
    nameservers: List[Tuple[str, RawEntry]] = attr.Factory(list)
    default_server: List[Option] = attr.Factory(list)
    sni_routes: List[SniRoute] = attr.Factory(list)
    valid: bool = True
    present: Set[str] = attr.Factory(set)


class SectionReader:
    """
    Reads the sections of one file, collecting every error and warning.

    @ivar source: The file name used in problems.
    @ivar errors: The errors found so far.
    @ivar warnings: The warnings found so far.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: List[Problem] = []
        self.warnings: List[Problem] = []

    def error(self, line: int, section: str, key: str, message: str) -> None:
        """
        Record an error.
        """
        self.errors.append(Problem(self.source, line, section, key, message))

    def warn(self, line: int, section: str, key: str, message: str) -> None:
        """
        Record a warning.
        """
        self.warnings.append(
            Problem(self.source, line, section, key, message, WARNING)
        )

    # Sections

    def read_sections(self, text: str) -> List[Section]:
        """
        Read every section of C{text}.

        @return: The sections that are not duplicates or malformed, in file
            order, their values checked.
        """
        raw_sections, problems = read_ini(text, self.source)
        self.errors.extend(problems)
        sections: List[Section] = []
        seen: Dict[Tuple[str, str], Section] = {}
        for raw in raw_sections:
            section = self._header(raw, seen)
            if section is None:
                continue
            self._entries(raw, section)
            sections.append(section)
        return [s for s in sections if s.valid]

    def _header(
        self, raw: RawSection, seen: Dict[Tuple[str, str], Section]
    ) -> Optional[Section]:
        words = raw.header.split()
        kind = words[0].lower() if words else ""
        kinds = sorted(SECTION_KINDS)
        if kind not in SECTION_KINDS:
            self.error(
                raw.line,
                raw.header,
                "",
                not_allowed(f"unknown section kind {kind!r}", kind, kinds),
            )
            return None
        named = SECTION_KINDS[kind]
        if named and len(words) == 1:
            self.error(
                raw.line, raw.header, "", f"a {kind} section needs a name: [{kind} NAME]"
            )
            return None
        if len(words) > (2 if named else 1):
            self.error(
                raw.line,
                raw.header,
                "",
                f"a section header is [{kind} NAME], with no spaces in NAME"
                if named
                else f"[{kind}] takes no name",
            )
            return None
        name = words[1] if named else ""
        if named:
            try:
                check_name(name, kind)
            except InvalidValue as error:
                self.error(raw.line, raw.header, "", error.message)
                return None
        section = Section(kind, name, raw.header, raw.line)
        # A listen section is both a frontend and a backend of its name.
        roles = [FRONTEND, BACKEND] if kind == LISTEN else [kind]
        for role in roles:
            previous = seen.get((role, name))
            if previous is not None:
                section.valid = False
                self.error(
                    raw.line,
                    raw.header,
                    "",
                    f"duplicate section: [{previous.header}] at line"
                    f" {previous.line} already defines"
                    + (f" the {role} {name!r}" if named else " it"),
                )
                break
        if section.valid:
            for role in roles:
                seen[(role, name)] = section
        return section

    # Keys

    def _entries(self, raw: RawSection, section: Section) -> None:
        seen: Dict[Tuple[str, Optional[str]], int] = {}
        for entry in raw.entries:
            try:
                key = split_key(entry.key, entry.value is not None)
            except InvalidValue as error:
                self.error(entry.line, raw.header, entry.key, error.message)
                continue
            first = seen.get(key.ident)
            if first is not None:
                if key.keyword == "server":
                    message = (
                        f"duplicate server name {key.name!r}; the first is at"
                        f" line {first} (server names are unique in a backend)"
                    )
                elif key.keyword == "use_backend":
                    message = (
                        f"repeated 'use_backend {key.name}'; it is first set at"
                        f" line {first} (list every host name of a backend on"
                        " one line)"
                    )
                else:
                    message = (
                        f"repeated key {key.keyword!r}; it is first set at line"
                        f" {first} (each key may appear once per section)"
                    )
                self.error(entry.line, raw.header, entry.key, message)
                continue
            seen[key.ident] = entry.line
            section.present.add(key.keyword)
            if key.keyword in KEYS[section.kind]:
                self._value(section, key, entry)
            elif section.kind == FRONTEND and key.keyword in BACKEND_TIMEOUTS:
                self.warn(
                    entry.line,
                    raw.header,
                    entry.key,
                    "will be ignored because a frontend has no backend"
                    " capability; set it in the backend or in [defaults]",
                )
            elif section.kind == BACKEND and key.keyword in FRONTEND_TIMEOUTS:
                self.warn(
                    entry.line,
                    raw.header,
                    entry.key,
                    "will be ignored because a backend has no frontend"
                    " capability; set it in the frontend or in [defaults]",
                )
            else:
                self.error(
                    entry.line, raw.header, entry.key, unknown_key_message(key, section.kind)
                )

    def _value(self, section: Section, key: Key, entry: RawEntry) -> None:
        keyword = key.keyword

        def problem(line: int, message: str) -> None:
            self.error(line, section.header, entry.key, message)

        if keyword in BARE_VALUES:
            try:
                value = BARE_VALUES[keyword](entry.value)
            except InvalidValue as error:
                problem(entry.line, error.message)
                return
            section.settings[keyword] = Setting(value, entry.line)
            return
        if entry.value is None or not entry.value.strip():
            syntax = SYNTAX.get(keyword)
            if keyword.startswith("timeout "):
                syntax = "a time such as 5000 (ms), 5000ms or 5s"
            elif keyword == "log":
                syntax = (
                    "stdout, stderr, none, an absolute file path, syslog,"
                    " or udp@IP:PORT FACILITY"
                    if section.kind == GLOBAL
                    else "global or none"
                )
            problem(entry.line, f"missing value; expected '{entry.key} = {syntax}'")
            return
        if keyword == "server":
            assert key.name is not None
            section.servers.append((key.name, entry))
        elif keyword == "server-template":
            assert key.name is not None
            section.templates.append((key.name, entry))
        elif keyword == "nameserver":
            assert key.name is not None
            section.nameservers.append((key.name, entry))
        elif keyword == "use_backend":
            assert key.name is not None
            try:
                names = parse_sni_names(entry.value)
            except InvalidValue as error:
                problem(entry.line, error.message)
                return
            section.sni_routes.append(SniRoute(key.name, names, entry.line))
        elif keyword == "bind":
            binds, located = parse_binds(entry.pieces)
            for line, message in located:
                problem(line, message)
            section.binds = binds
            section.settings[keyword] = Setting(tuple(binds), entry.line)
        elif keyword == "default-server":
            try:
                options, errors = parse_options(split_words(entry.value))
            except InvalidValue as error:
                options, errors = [], [error.message]
            for message in errors:
                problem(entry.line, message)
            section.default_server = options
        elif keyword == "tcp-request connection":
            source_rules, located, listed = parse_source_rules(entry.pieces, self._base_dir())
            for line, message in located:
                problem(line, message)
            for path, line, message, rule_line in listed:
                self.errors.append(
                    Problem(
                        path,
                        line,
                        section.header,
                        entry.key,
                        f"{message} (in the '-f' file of the rule at {self.source}:{rule_line})",
                    )
                )
            section.settings[keyword] = Setting(tuple(source_rules), entry.line)
        elif keyword == "tcp-check":
            rules, located = parse_rules(entry.pieces)
            for line, message in located:
                problem(line, message)
            section.settings[keyword] = Setting(tuple(rules), entry.line)
        else:
            try:
                value = self._simple(section.kind, keyword, entry.value)
            except InvalidValue as error:
                problem(entry.line, error.message)
                return
            section.settings[keyword] = Setting(value, entry.line)

    def _base_dir(self) -> str:
        """
        The directory relative C{-f} paths are in: the configuration
        file's.
        """
        return os.path.dirname(self.source) if os.path.isfile(self.source) else "."

    @staticmethod
    def _simple(kind: str, keyword: str, text: str) -> object:
        if keyword == "log":
            return parse_global_log(text) if kind == GLOBAL else parse_proxy_log(text)
        if keyword == "default_backend":
            check_name(text.strip(), "backend")
            return text.strip()
        return SIMPLE_VALUES[keyword](text)
