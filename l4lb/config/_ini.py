"""
Reading the INI layer of C{lb.ini}: sections, keys, values and line numbers.

L{configparser} reads the values, but it forgets line numbers and refuses
repeated sections and keys with exceptions that stop at the first one.  A
small scanner that follows configparser's rules (the same comment prefixes,
C{=} as the only delimiter, indented continuation lines, a blank or comment
line ending a value) therefore walks the text first: it records where every
section, key and value line starts and reports malformed lines, which it
blanks out so that configparser never stops half-way.

L{decode_text} turns the file's bytes into that text: UTF-8, with a byte
order mark at the start ignored (editors on Windows write one), and bytes
that are not UTF-8 reported at their line and column like any other error.
"""

from __future__ import annotations

import configparser
import io
import re
import sys
from typing import Dict, List, Optional, Tuple

import attr

from l4lb.config.errors import Problem

COMMENT_PREFIXES = ("#", ";")

#: U+FEFF, the byte order mark, as it reads once the file is decoded.
BOM = "\ufeff"

_SECTION = re.compile(r"\[(?P<header>.+)\](?P<rest>.*)$")
_OPTION = re.compile(r"(?P<option>.*?)\s*(?:(?P<vi>=)\s*(?P<value>.*))?$")
_NONSPACE = re.compile(r"\S")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class RawEntry:
    """
    One C{key = value} of a section, before interpretation.

    @ivar key: The key as written, surrounding spaces removed.
    @ivar value: The value with continuation lines joined by newlines, or
        C{None} for a key written without C{=}.
    @ivar line: The line the key is on.
    @ivar pieces: Each line of the value as C{(line, text)}.
    """

    key: str
    value: Optional[str]
    line: int
    pieces: Tuple[Tuple[int, str], ...] = ()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class RawSection:
    """
    One C{[header]} and its entries, before interpretation.

    @ivar header: The text between the brackets, surrounding spaces removed.
    @ivar line: The line of the header.
    @ivar entries: Its keys in file order, repeated ones included.
    """

    header: str
    line: int
    entries: Tuple[RawEntry, ...]


class _Parser(configparser.RawConfigParser):
    """
    configparser set up for C{lb.ini}.
    """

    def optionxform(self, optionstr: str) -> str:
        """
        Keep keys as written: server names are case-sensitive.
        """
        return optionstr


def _make_parser() -> _Parser:
    return _Parser(
        delimiters=("=",),
        comment_prefixes=COMMENT_PREFIXES,
        inline_comment_prefixes=COMMENT_PREFIXES,
        strict=False,
        allow_no_value=True,
        empty_lines_in_values=False,
        interpolation=None,
        # No section has configparser's special DEFAULT meaning; [defaults]
        # is handled by l4lb itself with HAProxy's rules.
        default_section="\x00",
    )


def _strip_comment(line: str) -> str:
    """
    Remove a comment the way configparser does: a whole-line comment, or an
    inline one whose prefix follows whitespace.
    """
    if line.strip().startswith(COMMENT_PREFIXES):
        return ""
    cut = len(line)
    for prefix in COMMENT_PREFIXES:
        index = line.find(prefix)
        while index != -1:
            if index == 0 or line[index - 1].isspace():
                cut = min(cut, index)
                break
            index = line.find(prefix, index + 1)
    return line[:cut].strip()


@attr.s(slots=True, auto_attribs=True)
class _Entry:
    """
    An entry while the scanner still adds continuation lines to it.
    """

    key: str
    first: Optional[str]
    line: int
    pieces: List[Tuple[int, str]]


class _Scan:
    """
    The scanner's state while it walks the lines.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: List[Problem] = []
        self.blanked: List[int] = []
        self.sections: List[Tuple[str, int, List[_Entry]]] = []
        self.entry: Optional[_Entry] = None

    def problem(self, line: int, section: str, message: str) -> None:
        self.problems.append(Problem(self.source, line, section, "", message))

    def section_name(self) -> str:
        return self.sections[-1][0].strip() if self.sections else ""


def _scan(text: str, source: str) -> _Scan:
    scan = _Scan(source)
    indent_level = sys.maxsize
    for number, line in enumerate(io.StringIO(text), start=1):
        value = _strip_comment(line)
        if not value:
            indent_level = sys.maxsize
            continue
        match = _NONSPACE.search(line)
        indent = match.start() if match else 0
        if scan.entry is not None and indent > indent_level:
            if scan.entry.first is None:
                scan.problem(
                    number,
                    scan.section_name(),
                    "indented line continues a key that has no '=';"
                    " write 'key = value' before continuing the value",
                )
                scan.blanked.append(number)
                indent_level = sys.maxsize
                continue
            scan.entry.pieces.append((number, value))
            continue
        indent_level = indent
        section = _SECTION.match(value)
        if section is not None:
            if section.group("rest").strip():
                scan.problem(
                    number,
                    section.group("header").strip(),
                    f"unexpected text {section.group('rest').strip()!r}"
                    " after the section header",
                )
            scan.sections.append((section.group("header"), number, []))
            scan.entry = None
            continue
        if not scan.sections:
            scan.problem(
                number,
                "",
                f"{value!r} is outside any section; the file must start with"
                " a section header such as [global]",
            )
            scan.blanked.append(number)
            indent_level = sys.maxsize
            continue
        option = _OPTION.match(value)
        assert option is not None  # the pattern matches any text
        key = option.group("option").rstrip()
        if not key or key.startswith("["):
            scan.problem(
                number,
                scan.section_name(),
                f"cannot parse line {value!r}; expected 'key = value'"
                " or a section header '[kind name]'",
            )
            scan.blanked.append(number)
            scan.entry = None
            indent_level = sys.maxsize
            continue
        first = option.group("value")
        pieces = [] if first is None else [(number, first.strip())]
        scan.entry = _Entry(key, first, number, pieces)
        scan.sections[-1][2].append(scan.entry)
    return scan


def decode_text(data: bytes, source: str) -> Tuple[str, List[Problem]]:
    """
    Decode the bytes of a configuration file as UTF-8.

    @param source: The file name used in problems.
    @return: The text (a leading byte order mark is kept; L{read_ini}
        ignores it), and one problem for each line that is not UTF-8, with
        the column (in characters) and the bytes where decoding failed.
    """
    problems: List[Problem] = []
    lines = data.splitlines(keepends=True)
    for number, raw in enumerate(lines, start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            column = len(raw[: error.start].decode("utf-8")) + 1
            bad = raw[error.start : error.end]
            shown = " ".join(f"0x{byte:02x}" for byte in bad)
            noun = "byte" if len(bad) == 1 else "bytes"
            verb = "is" if len(bad) == 1 else "are"
            problems.append(
                Problem(
                    source,
                    number,
                    "",
                    "",
                    f"column {column}: {noun} {shown} {verb} not UTF-8 text ({error.reason});"
                    " save the file as UTF-8",
                )
            )
    if problems:
        return "", problems
    # Universal newlines, as a file opened in text mode reads: the lines
    # are the ones counted above.
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read(), problems


def read_ini(text: str, source: str) -> Tuple[List[RawSection], List[Problem]]:
    """
    Split C{text} into sections and entries with their line numbers.

    A byte order mark (U+FEFF) at the start of C{text} is ignored.

    @param source: The file name used in problems.
    @return: The sections in file order (repeated ones included), and the
        syntax problems found.
    """
    if text.startswith(BOM):
        text = text[len(BOM) :]
    scan = _scan(text, source)
    lines = io.StringIO(text).readlines()
    for number in scan.blanked:
        lines[number - 1] = "\n"
    parser = _make_parser()
    try:
        parser.read_string("".join(lines), source)
    except configparser.ParsingError:
        # The scanner reported those lines already.
        pass
    except configparser.Error as error:  # pragma: no cover - scanner agrees
        scan.problem(getattr(error, "lineno", 0), "", str(error).splitlines()[0])
    counts: Dict[Tuple[str, str], int] = {}
    for header, _, entries in scan.sections:
        for entry in entries:
            ident = (header, entry.key)
            counts[ident] = counts.get(ident, 0) + 1
    sections = []
    for header, number, entries in scan.sections:
        raw_entries = []
        for entry in entries:
            value: Optional[str]
            if entry.first is None:
                value = None
            elif counts[(header, entry.key)] == 1:
                # configparser's value; a repeated key is an error reported
                # by the caller, and only then do the scanner's pieces count.
                value = parser.get(header, entry.key)
            else:
                value = "\n".join(text for _, text in entry.pieces)
            raw_entries.append(
                RawEntry(entry.key, value, entry.line, tuple(entry.pieces))
            )
        sections.append(RawSection(header.strip(), number, tuple(raw_entries)))
    return sections, scan.problems
