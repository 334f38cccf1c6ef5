"""
Reading the lines of HAProxy's C{haproxy.cfg}: words, quotes, escapes,
environment variables, comments and C{.if} blocks.

Each line is split into words as HAProxy splits it: spaces and tabs separate
words; C{#} outside quotes starts a comment; double quotes group words and
honour escapes and environment variables; single quotes group words and take
everything literally; a backslash outside single quotes escapes the next
character (C{\\ }, C{\\#}, C{\\\\}, C{\\"}, C{\\'}, C{\\$}) or writes one
(C{\\r}, C{\\n}, C{\\t}, C{\\xHH}); any other pair stays as written, so
that regular expressions such as C{\\d} work.  C{$NAME}, C{${NAME}} and
C{${NAME-default}} are replaced by the environment variable (empty when it
is not set, or the default).

C{.if}, C{.elif}, C{.else} and C{.endif} keep or drop the lines between
them; the conditions are HAProxy's simple ones (L{evaluate}).  C{.notice},
C{.warning} and C{.diag} report their text as a warning and C{.alert} as an
error, as HAProxy does.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import attr

from l4lb.config.errors import InvalidValue
from l4lb.config.units import allowed_list

#: The HAProxy version whose configuration language l4lb reads, for
#: C{version_atleast()} and C{version_before()}.
HAPROXY_VERSION = "2.6"

#: What C{feature()} answers yes to: the build options of HAProxy whose
#: work l4lb does.
FEATURES = frozenset({"LINUX_SPLICE", "OPENSSL", "PROMEX"})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"r": "\r", "n": "\n", "t": "\t"}


@attr.s(frozen=True, slots=True, auto_attribs=True)
class CfgLine:
    """
    One line of a C{haproxy.cfg} that is kept after C{.if} blocks.

    @ivar line: Its 1-based line number.
    @ivar words: Its words, quotes removed and escapes applied; empty for
        a blank or comment-only line.
    @ivar comment: The text after C{#}, without it and without trailing
        spaces, or C{None}.
    @ivar indented: Whether the line starts with a space or a tab.
    """

    line: int
    words: Tuple[str, ...]
    comment: Optional[str]
    indented: bool


def _variable(text: str, index: int, env: Mapping[str, str]) -> Tuple[str, int]:
    """
    Expand the variable whose C{$} is at C{index}.

    @return: The value and the index after the variable.
    """
    if text.startswith("${", index):
        end = text.find("}", index)
        if end == -1:
            raise InvalidValue("unclosed '${': write ${NAME}")
        inner = text[index + 2 : end]
        name, dash, default = inner.partition("-")
        if not _NAME.fullmatch(name):
            raise InvalidValue(f"'${{{inner}}}' is not a variable name")
        value = env.get(name)
        return (default if value is None and dash else value or ""), end + 1
    match = _NAME.match(text, index + 1)
    if match is None:
        return "$", index + 1
    return env.get(match.group(0), ""), match.end()


def split_line(text: str, env: Mapping[str, str]) -> Tuple[List[str], Optional[str]]:
    """
    Split one line into words as HAProxy does.

    @param env: The environment variables.
    @return: The words and the comment (C{None} without one).
    @raise InvalidValue: For an unclosed quote or a malformed escape.
    """
    words: List[str] = []
    current: List[str] = []
    started = False
    quote: Optional[str] = None
    index = 0
    while index < len(text):
        char = text[index]
        if quote == "'":
            if char == "'":
                quote = None
            else:
                current.append(char)
            index += 1
            continue
        if char == "\\":
            if index + 1 >= len(text):
                raise InvalidValue("a backslash ends the line; write \\\\ for a backslash")
            nxt = text[index + 1]
            if nxt == "x":
                digits = text[index + 2 : index + 4]
                if not re.fullmatch(r"[0-9A-Fa-f]{2}", digits):
                    raise InvalidValue(f"'\\x{digits}' needs two hexadecimal digits")
                current.append(chr(int(digits, 16)))
                index += 4
            elif nxt in _ESCAPES or nxt in " \\\"'#$":
                current.append(_ESCAPES.get(nxt, nxt))
                index += 2
            else:
                # As HAProxy does: other pairs stay as written (\d, \1).
                current.append("\\" + nxt)
                index += 2
            started = True
            continue
        if char == "$":
            value, index = _variable(text, index, env)
            current.append(value)
            started = True
            continue
        if char == '"':
            quote = None if quote == '"' else '"'
            started = True
            index += 1
            continue
        if quote is None and char == "'":
            quote = "'"
            started = True
            index += 1
            continue
        if quote is None and char == "#":
            if started:
                words.append("".join(current))
            return words, text[index + 1 :].rstrip()
        if quote is None and char in " \t\r\n":
            if started:
                words.append("".join(current))
            current, started = [], False
            index += 1
            continue
        current.append(char)
        started = True
        index += 1
    if quote is not None:
        raise InvalidValue(f"unclosed quote {quote}")
    if started:
        words.append("".join(current))
    return words, None


def _version(text: str) -> Tuple[int, ...]:
    parts = re.findall(r"\d+", text)
    if not parts:
        raise InvalidValue(f"{text!r} is not a version such as 2.6")
    return tuple(int(p) for p in parts)


def _predicates(env: Mapping[str, str]) -> Dict[str, Callable[[List[str]], bool]]:
    def one(args: List[str]) -> str:
        if len(args) != 1:
            raise InvalidValue("takes one argument")
        return args[0]

    def two(args: List[str]) -> Tuple[str, str]:
        if len(args) != 2:
            raise InvalidValue("takes two arguments")
        return args[0], args[1]

    return {
        "defined": lambda a: one(a) in env,
        "feature": lambda a: one(a).upper() in FEATURES,
        "streq": lambda a: two(a)[0] == two(a)[1],
        "strneq": lambda a: two(a)[0] != two(a)[1],
        "version_atleast": lambda a: _version(HAPROXY_VERSION) >= _version(one(a)),
        "version_before": lambda a: _version(HAPROXY_VERSION) < _version(one(a)),
    }


_TOKEN = re.compile(r"\s*(?:(&&|\|\||!|\(|\))|([A-Za-z_]+)\(([^()]*)\)|([^\s()!&|]+))")


def evaluate(text: str, env: Mapping[str, str]) -> bool:
    """
    Evaluate a C{.if} condition as HAProxy does: C{defined(NAME)},
    C{feature(NAME)}, C{streq(A,B)}, C{strneq(A,B)}, C{version_atleast(V)},
    C{version_before(V)}, or a word (true unless empty or C{0}), combined
    with C{!}, C{&&}, C{||} and parentheses.

    @raise InvalidValue: For a condition that cannot be read, with the
        allowed predicates.
    """
    predicates = _predicates(env)
    tokens: List[Tuple[str, ...]] = []
    index = 0
    text = text.strip()
    while index < len(text):
        match = _TOKEN.match(text, index)
        if match is None or match.end() == index:
            raise InvalidValue(f"cannot read the condition at {text[index:]!r}")
        op, name, args, word = match.groups()
        if op:
            tokens.append(("op", op))
        elif name:
            tokens.append(("call", name, args))
        elif word:
            tokens.append(("word", word))
        index = match.end()
        while index < len(text) and text[index].isspace():
            index += 1
    if not tokens:
        raise InvalidValue("a condition is needed after '.if'")
    position = [0]

    def peek() -> Optional[Tuple[str, ...]]:
        return tokens[position[0]] if position[0] < len(tokens) else None

    def take() -> Tuple[str, ...]:
        token = peek()
        if token is None:
            raise InvalidValue("the condition ends too early")
        position[0] += 1
        return token

    def term() -> bool:
        token = take()
        if token == ("op", "!"):
            return not term()
        if token == ("op", "("):
            value = either()
            if take() != ("op", ")"):
                raise InvalidValue("a ')' is missing in the condition")
            return value
        if token[0] == "call":
            predicate = predicates.get(token[1])
            if predicate is None:
                raise InvalidValue(
                    f"unknown predicate {token[1]!r}; allowed: {allowed_list(sorted(predicates))}"
                )
            args = [a.strip() for a in token[2].split(",")] if token[2].strip() else []
            try:
                return predicate(args)
            except InvalidValue as error:
                raise InvalidValue(f"{token[1]}(): {error.message}")
        if token[0] == "word":
            return token[1] not in ("", "0")
        raise InvalidValue(f"unexpected {token[1]!r} in the condition")

    def both() -> bool:
        value = term()
        while peek() == ("op", "&&"):
            take()
            value = term() and value
        return value

    def either() -> bool:
        value = both()
        while peek() == ("op", "||"):
            take()
            value = both() or value
        return value

    result = either()
    if peek() is not None:
        raise InvalidValue(f"unexpected {peek()[1]!r} in the condition")  # type: ignore[index]
    return result


@attr.s(slots=True, auto_attribs=True)
class _Block:
    """
    One C{.if} block being read: whether its lines are kept now, whether
    a branch was taken, and whether its C{.else} was seen.
    """

    line: int
    keeping: bool
    taken: bool
    outer: bool
    seen_else: bool = False


def read_lines(
    text: str, env: Mapping[str, str]
) -> Tuple[List[CfgLine], List[Tuple[int, str]], List[Tuple[int, str]]]:
    """
    Read every line of a C{haproxy.cfg}, applying C{.if} blocks.

    @return: The kept lines (blank and comment lines included), the errors
        and the warnings, each as C{(line, message)}.
    """
    lines: List[CfgLine] = []
    errors: List[Tuple[int, str]] = []
    warnings: List[Tuple[int, str]] = []
    blocks: List[_Block] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        keeping = not blocks or blocks[-1].keeping
        try:
            words, comment = split_line(raw, env)
        except InvalidValue as error:
            if keeping:
                errors.append((number, error.message))
            continue
        directive = words[0] if words and words[0].startswith(".") else ""
        rest = " ".join(words[1:])
        try:
            if directive == ".if":
                value = keeping and evaluate(rest, env)
                blocks.append(_Block(number, value, value, keeping))
                continue
            if directive in (".elif", ".else", ".endif") and not blocks:
                errors.append((number, f"'{directive}' without an '.if' before it"))
                continue
            if directive == ".elif":
                block = blocks[-1]
                if block.seen_else:
                    raise InvalidValue("'.elif' after '.else'")
                value = block.outer and not block.taken and evaluate(rest, env)
                block.keeping, block.taken = value, block.taken or value
                continue
            if directive == ".else":
                block = blocks[-1]
                if block.seen_else:
                    raise InvalidValue("a second '.else' in the same block")
                block.seen_else = True
                block.keeping = block.outer and not block.taken
                block.taken = True
                continue
            if directive == ".endif":
                blocks.pop()
                continue
        except InvalidValue as error:
            errors.append((number, error.message))
            if directive == ".if":
                blocks.append(_Block(number, False, True, keeping))
            continue
        if not keeping:
            continue
        if directive in (".notice", ".warning", ".diag"):
            warnings.append((number, rest))
            continue
        if directive == ".alert":
            errors.append((number, rest))
            continue
        if directive:
            errors.append(
                (
                    number,
                    f"unknown directive {directive!r}; allowed: .if, .elif, .else,"
                    " .endif, .notice, .warning, .diag, .alert",
                )
            )
            continue
        indented = raw[:1] in (" ", "\t")
        lines.append(CfgLine(number, tuple(words), comment, indented))
    for block in blocks:
        errors.append((block.line, "'.if' without its '.endif'"))
    return lines, errors, warnings
