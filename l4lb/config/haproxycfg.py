"""
Reading HAProxy's own C{haproxy.cfg}.

    config, warnings = parse_haproxy_config_with_warnings(text, "haproxy.cfg")

The file is translated into C{lb.ini} text, line by line, with a map from
each line of that text to the line of the C{haproxy.cfg} it came from; the
text is then parsed by l4lb's one parser and every problem (and every line
kept in the configuration objects) is moved back to C{haproxy.cfg:LINE}.  So
nothing is checked twice, and a file means the same in both formats.

What the translation does with HAProxy's syntax: see L{l4lb.config._cfgwords}
for words, quotes, variables and C{.if} blocks, and C{docs/haproxy.md} for
the keywords.  Every C{haproxy.cfg} keyword l4lb does not implement is an
error naming it (L{l4lb.config.haproxykeys}); none is dropped silently.

L{is_haproxy_format} tells the two formats apart by their content: an
C{lb.ini} starts with a C{[section]} header, a C{haproxy.cfg} with a
section keyword (C{global}, C{defaults}, C{frontend} ...) or a C{.if}.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any, Dict, List, Mapping, Optional, Tuple

import attr

from l4lb.config._cfgfold import OutItem, OutSection, fold_defaults
from l4lb.config._cfgwords import read_lines
from l4lb.config.errors import WARNING, ConfigError, Problem, sort_problems
from l4lb.config.haproxykeys import (
    HTTP_ONLY,
    NOTED,
    OTHER_SECTIONS,
    http_message,
    not_implemented_message,
)
from l4lb.config.keywords import (
    _NAMED,
    _TWO_WORD,
    ALL_KEYS,
    DEFAULTS,
    FRONTEND,
    GLOBAL,
    LISTEN,
    SECTION_KINDS,
)
from l4lb.config.model import Config
from l4lb.config.parser import parse_config_with_warnings

#: HAProxy's proxy section keywords, which take a C{defaults} section.
PROXY_KINDS = ("frontend", "backend", "listen")
#: Every section keyword of HAProxy, for telling the formats apart.
SECTION_WORDS = frozenset(SECTION_KINDS) | frozenset(OTHER_SECTIONS)
#: Keywords whose HAProxy lines become the lines of one C{lb.ini} value.
MULTI_LINE = ("bind", "tcp-check", "tcp-request connection")

_PLAIN = re.compile(r"[^\s\"'\\#;]+")
_HELLO = re.compile(r"^accept if \{ req[._]ssl_hello_type 1 \}$")
_SNI_TERM = re.compile(
    r"^\{\s*req[._]ssl_sni\s+(?:-i\s+)?(?:-m\s+(?P<match>str|end|dom)\s+)?"
    r"(?:-i\s+)?(?P<hosts>[^{}]+?)\s*\}$"
)


_NO_GLOBAL_LOG = " no 'log' line in global: HAProxy logs nothing"
_NO_PROXY_LOG = " no 'log' line here nor in defaults: HAProxy logs nothing for this proxy"


def _unused(line: int, words: List[str]) -> OutItem:
    """
    A line l4lb does not need, kept as a comment.
    """
    return OutItem(line, "", (), comment=" " + " ".join(words) + "  (not used by l4lb)")


def is_haproxy_format(text: str) -> bool:
    """
    Whether C{text} is a C{haproxy.cfg} rather than an C{lb.ini}: its first
    line that is neither blank nor a comment is a HAProxy section keyword
    or a conditional directive, not a C{[section]} header.
    """
    for line in text.lstrip("\ufeff").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        word = stripped.split()[0].lower()
        return word in SECTION_WORDS or word.startswith(".")
    return False


def ini_word(word: str, keyword: str) -> str:
    """
    Write one HAProxy word as C{lb.ini} text, quoted as the key's value
    syntax quotes: tcp-check rules take HAProxy's quotes and escapes,
    server options shell-style quotes, other values plain words.
    """
    if keyword in ("server", "default-server", "server-template"):
        return shlex.quote(word)
    if keyword != "tcp-check" or (word and _PLAIN.fullmatch(word)):
        return word
    out = []
    for char in word:
        if char in '\\"':
            out.append("\\" + char)
        elif char in "\r\n\t":
            out.append({"\r": "\\r", "\n": "\\n", "\t": "\\t"}[char])
        elif char in "#;" or ord(char) < 32:
            # '#' and ';' after a space would start an lb.ini comment.
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Translation:
    """
    A C{haproxy.cfg} as C{lb.ini} text.

    @ivar text: The C{lb.ini} text, comments kept.
    @ivar lines: For each line of C{text}, the C{haproxy.cfg} line it came
        from (C{0}: none).
    @ivar problems: What the translation itself found, errors and warnings,
        at their C{haproxy.cfg} lines.
    """

    text: str
    lines: Tuple[int, ...]
    problems: Tuple[Problem, ...]


class _Translator:
    """
    Translates one file; the state of one pass over its lines.
    """

    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self.problems: List[Problem] = []
        self.sections: List[OutSection] = []
        self.preamble: List[OutItem] = []
        self.named_defaults: Dict[str, OutSection] = {}
        self.last_defaults: Optional[OutSection] = None
        self.global_log: Optional[int] = None

    def error(self, line: int, section: str, key: str, message: str, warning: bool = False) -> None:
        severity = WARNING if warning else "error"
        self.problems.append(Problem(self.source, line, section, key, message, severity))

    def run(self, text: str) -> Translation:
        lines, errors, warnings = read_lines(text, self.env)
        for line, message in errors:
            self.error(line, "", "", message)
        for line, message in warnings:
            self.error(line, "", "", message, warning=True)
        current: Optional[OutSection] = None
        for cfg in lines:
            if not cfg.words:
                item = OutItem(cfg.line, "", (), comment=cfg.comment)
                (current.items if current is not None else self.preamble).append(item)
                continue
            first = cfg.words[0].lower()
            if not first or first.split() != [first]:
                message = f"{cfg.words[0]!r} is not a keyword: a line starts with one word"
                self.error(cfg.line, "", "", message)
                continue
            if first in SECTION_WORDS:
                current = self._header(cfg.line, list(cfg.words), cfg.comment)
                continue
            if current is None:
                self.error(
                    cfg.line,
                    "",
                    cfg.words[0],
                    f"{cfg.words[0]!r} is outside any section; the file must start"
                    " with a section keyword such as 'global' or 'frontend NAME'",
                )
                continue
            if current.kind == "":
                continue  # A section l4lb does not read: reported at its header.
            self._line(current, cfg.line, list(cfg.words), cfg.comment)
        body = fold_defaults(self.sections, self.error)
        self._implied_logs(body)
        return self._write(body)

    # Sections

    def _header(self, line: int, words: List[str], comment: Optional[str]) -> OutSection:
        kind = words[0].lower()
        if kind not in SECTION_KINDS:
            message = f"'{kind}' sections are not read by l4lb: {OTHER_SECTIONS[kind]}"
            self.error(line, " ".join(words), "", message)
            section = OutSection("", "", line, None)
            return section
        named = kind != GLOBAL
        name = words[1] if named and len(words) > 1 else ""
        rest = words[2:] if named else words[1:]
        header = f"{kind} {name}".strip()
        section = OutSection(kind, name, line, comment)
        if kind in PROXY_KINDS:
            section.defaults = self.last_defaults
        if len(rest) >= 2 and rest[0].lower() == "from" and kind != GLOBAL:
            found = self.named_defaults.get(rest[1])
            if found is None:
                message = f"no defaults section named {rest[1]!r} before this line"
                self.error(line, header, "from", message)
            elif kind == DEFAULTS:
                message = (
                    "a defaults section taking another's values is not supported;"
                    " copy its lines"
                )
                self.error(line, header, "from", message)
            else:
                section.defaults = found
            rest = rest[2:]
        if kind == LISTEN and rest:
            # HAProxy's old form: the listen section's address in its header.
            section.items.append(OutItem(line, "bind", (" ".join(rest),)))
            rest = []
        if kind != DEFAULTS and named and not name:
            self.error(line, kind, "", f"a {kind} section needs a name: '{kind} NAME'")
        elif rest:
            self.error(line, header, "", f"unexpected {' '.join(rest)!r} after the section name")
        if kind == DEFAULTS:
            if name:
                self.named_defaults[name] = section
            self.last_defaults = section
        self.sections.append(section)
        return section

    # Lines

    def _line(
        self, section: OutSection, line: int, words: List[str], comment: Optional[str]
    ) -> None:
        header = section.header

        def fail(key: str, message: str) -> None:
            self.error(line, header, key, message)

        lowered = [w.lower() for w in words]
        negated = lowered[0] == "no"
        if negated:
            words, lowered = words[1:], lowered[1:]
            if not words:
                fail("no", "'no' needs a keyword after it, e.g. 'no option redispatch'")
                return
        first = lowered[0]
        two = " ".join(lowered[:2])
        keyword = two if first in _TWO_WORD and len(words) > 1 else first
        if keyword in HTTP_ONLY or first in HTTP_ONLY:
            fail(keyword, http_message(keyword if keyword in HTTP_ONLY else first))
            return
        if first == "mode" and lowered[1:2] == ["http"]:
            fail("mode", http_message("mode http"))
            return
        if first == "balance" and len(words) > 1 and re.match(r"(uri|url_param|hdr\()", lowered[1]):
            fail("balance", http_message(f"balance {words[1]}"))
            return
        if first in NOTED and section.kind == GLOBAL:
            message = f"'{first}' is not needed: {NOTED[first]}"
            self.error(line, header, first, message, warning=True)
            section.items.append(_unused(line, words))
            return
        if keyword == "tcp-request content" and _HELLO.match(" ".join(lowered[2:])):
            # What an SNI frontend of l4lb does by itself: wait for the hello.
            implied = " " + " ".join(words) + "  (implied by use_backend)"
            section.items.append(OutItem(line, "", (), comment=implied))
            return
        refusal = not_implemented_message(keyword) or not_implemented_message(first)
        if refusal is not None and keyword not in ALL_KEYS and first not in ALL_KEYS:
            fail(keyword, refusal)
            return
        value = words[2:] if keyword == two and first in _TWO_WORD else words[1:]
        key = " ".join(words[:2]) if keyword == two and first in _TWO_WORD else words[0]
        if negated:
            if first == "log":
                section.add(OutItem(line, "log", ("none",), comment))
            elif first == "option":
                section.add(OutItem(line, key, ("false",), comment))
            else:
                fail(first, f"'no {first}' is not allowed; only 'no option NAME' and 'no log'")
            return
        if first == "log":
            self._log(section, line, words, comment)
            return
        if first in _NAMED and len(words) > 1:
            key, value = f"{first} {words[1]}", words[2:]
            if first == "use_backend":
                names = self._sni(line, header, words)
                if names is None:
                    return
                section.add(OutItem(line, key, ("sni " + " ".join(names),), comment))
                return
        text = " ".join(ini_word(w, keyword) for w in value)
        if keyword in MULTI_LINE:
            section.merge(OutItem(line, key, (text,), comment))
            return
        earlier = section.add(OutItem(line, key, (text,) if value else (), comment))
        if earlier is not None:
            self.error(
                line,
                header,
                key,
                f"overrides line {earlier.line}: the last value counts, as in HAProxy",
                warning=True,
            )

    def _log(
        self, section: OutSection, line: int, words: List[str], comment: Optional[str]
    ) -> None:
        header = section.header
        args = words[1:]
        if section.kind != GLOBAL:
            if [a.lower() for a in args] != ["global"]:
                self.error(
                    line,
                    header,
                    "log",
                    "l4lb sends every proxy's connection logs to the global 'log'"
                    " target; write 'log global' here and the target in 'global'",
                )
                return
            section.add(OutItem(line, "log", ("global",), comment))
            return
        if self.global_log is not None:
            self.error(
                line,
                header,
                "log",
                f"l4lb sends its logs to one target, the first 'log' line's (line"
                f" {self.global_log}); this one is not used",
                warning=True,
            )
            section.items.append(_unused(line, words))
            return
        self.global_log = line
        lowered = [a.lower() for a in args]
        if "format" in lowered:
            at = lowered.index("format")
            shape = lowered[at + 1] if at + 1 < len(lowered) else ""
            wanted = "raw" if lowered[:1] in (["stdout"], ["stderr"]) else "rfc3164"
            if shape != wanted:
                message = (
                    f"'format {shape}' is not written by l4lb; this target gets"
                    f" 'format {wanted}'"
                )
                self.error(line, header, "log", message)
                return
            args = args[:at] + args[at + 2 :]
            if lowered[:1] in (["stdout"], ["stderr"]):
                args = args[:1]  # The facility of a raw stream means nothing.
        section.add(OutItem(line, "log", (" ".join(args),), comment))

    def _sni(self, line: int, header: str, words: List[str]) -> Optional[List[str]]:
        """
        The host names of C{use_backend NAME if { req.ssl_sni ... } || ...},
        the only condition l4lb routes on.
        """
        condition = " ".join(words[3:])
        terms = [t.strip() for t in condition.split("||")] if len(words) > 3 else []
        names: List[str] = []
        for term in terms:
            match = _SNI_TERM.match(term)
            if match is None or words[2].lower() != "if":
                names = []
                break
            for host in match.group("hosts").split():
                if match.group("match") in ("end", "dom"):
                    host = "*." + host.lstrip(".")
                names.append(host)
        if not names:
            self.error(
                line,
                header,
                f"use_backend {words[1]}",
                "l4lb routes on the TLS server name only: write 'use_backend NAME"
                " if { req.ssl_sni -i HOST ... }', with '|| { req.ssl_sni -m end"
                " .DOMAIN }' for every name under a domain",
            )
            return None
        return names

    def _implied_logs(self, body: List[OutSection]) -> None:
        """
        HAProxy logs a proxy only with a C{log} line and logs nothing
        without a global target; l4lb's defaults are the opposite, so say
        it explicitly.
        """
        defaults = next((s for s in body if s.kind == DEFAULTS), None)
        for section in body:
            if section.kind == GLOBAL and not section.has("log"):
                section.items.insert(0, OutItem(section.line, "log", ("none",), _NO_GLOBAL_LOG))
            if section.kind in (FRONTEND, LISTEN) and not section.has("log"):
                if defaults is None or not defaults.has("log"):
                    section.items.insert(0, OutItem(section.line, "log", ("none",), _NO_PROXY_LOG))
        if not any(s.kind == GLOBAL for s in body):
            implied = [OutItem(0, "log", ("none",), _NO_GLOBAL_LOG), OutItem(0, "", ())]
            body.insert(0, OutSection(GLOBAL, "", 0, None, items=implied))

    # Output

    def _write(self, body: List[OutSection]) -> Translation:
        out: List[str] = []
        lines: List[int] = []

        def emit(text: str, line: int) -> None:
            out.append(text)
            lines.append(line)

        for item in self.preamble:
            item.write(emit)
        for section in body:
            tail = f"  #{section.comment}" if section.comment else ""
            emit(f"[{section.header}]{tail}", section.line)
            for item in section.items:
                item.write(emit)
        return Translation("\n".join(out) + "\n", tuple(lines), tuple(self.problems))


def translate(
    text: str, source: str = "<memory>", env: Optional[Mapping[str, str]] = None
) -> Translation:
    """
    Translate the text of a C{haproxy.cfg} into C{lb.ini} text.

    @param env: The environment variables for C{$NAME}; C{os.environ} by
        default.
    """
    return _Translator(source, os.environ if env is None else env).run(text)


def _moved(problem: Problem, source: str, lines: Tuple[int, ...]) -> Problem:
    if problem.file != source or not 0 < problem.line <= len(lines):
        return problem
    return attr.evolve(problem, line=lines[problem.line - 1])


def _relined(value: Any, lines: Tuple[int, ...]) -> Any:
    """
    C{value} with every C{line} of the configuration objects in it moved
    from the C{lb.ini} text to the C{haproxy.cfg}.
    """
    if isinstance(value, tuple):
        return tuple(_relined(v, lines) for v in value)
    if not attr.has(type(value)):
        return value
    changes = {}
    for field in attr.fields(type(value)):
        old = getattr(value, field.name)
        if field.name == "line" and isinstance(old, int):
            new: Any = lines[old - 1] if 0 < old <= len(lines) else old
        else:
            new = _relined(old, lines)
        if new is not old:
            changes[field.name] = new
    return attr.evolve(value, **changes) if changes else value


def parse_haproxy_config_with_warnings(
    text: str, source: str = "<memory>", env: Optional[Mapping[str, str]] = None
) -> Tuple[Config, List[Problem]]:
    """
    Parse the text of a C{haproxy.cfg}.

    @param source: The file name used in problems.
    @param env: The environment variables; C{os.environ} by default.
    @return: The configuration and the warnings, at C{haproxy.cfg} lines.
    @raise ConfigError: With every error (and warning), at their lines.
    """
    translation = translate(text, source, env)
    errors = [p for p in translation.problems if p.severity != WARNING]
    warnings = [p for p in translation.problems if p.severity == WARNING]
    config: Optional[Config] = None
    try:
        config, found = parse_config_with_warnings(translation.text, source)
    except ConfigError as error:
        errors += [_moved(p, source, translation.lines) for p in error.problems]
        warnings += [_moved(p, source, translation.lines) for p in error.warnings]
    else:
        warnings += [_moved(p, source, translation.lines) for p in found]
    warnings = sort_problems(_unique(warnings))
    if errors or config is None:
        raise ConfigError(sort_problems(_unique(errors)), warnings)
    return _relined(config, translation.lines), warnings


def _unique(problems: List[Problem]) -> List[Problem]:
    # A folded defaults line is checked in each proxy that takes it.
    return list(dict.fromkeys(problems))
