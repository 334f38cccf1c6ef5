"""
The C{tcp-check} key: a sequence of health check rules, one per line.

HAProxy writes one C{tcp-check ...} line per rule; an INI key may appear
only once per section, so l4lb writes the rules as one C{tcp-check} value
whose continuation lines are the rules, in order::

    option tcp-check = true
    tcp-check = connect
                send PING\\r\\n
                expect string +PONG

Words are separated by spaces.  Double quotes group words and honour
escapes; single quotes group words and take everything literally.  Escapes
(outside single quotes): C{\\r}, C{\\n}, C{\\t}, C{\\\\}, C{\\"}, C{\\'},
C{\\ } (a space inside a word) and C{\\xHH} (one byte); any other backslash
is kept as written, so that regular expressions such as C{\\d} work.
"""

from __future__ import annotations

import binascii
import re
from typing import List, Optional, Sequence, Tuple

from l4lb.config.errors import InvalidValue
from l4lb.config.model import TcpCheckRule
from l4lb.config.units import not_allowed, parse_ip, parse_port

#: The rule actions, sorted.
ACTIONS = ("connect", "expect", "send", "send-binary")

#: What C{expect} can match.
MATCHES = ("binary", "rbinary", "rstring", "string")

_SIMPLE_ESCAPES = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", " ": " "}
_HEX = re.compile(r"^[0-9A-Fa-f]*$")


def unescape(text: str) -> str:
    """
    Apply the escapes of a single word (C{\\r}, C{\\n}, C{\\t}, C{\\\\},
    C{\\xHH}, ...) as L{split_rule_words} does, without splitting.

    @raise InvalidValue: For a malformed C{\\x} escape or a trailing
        backslash.
    """
    out: List[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            escaped, index = _escape(text, index)
            out.append(escaped)
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _escape(text: str, index: int) -> Tuple[str, int]:
    """
    Read the escape starting with the backslash at C{index}.

    @return: What it stands for and the index after it.
    """
    if index + 1 >= len(text):
        raise InvalidValue(f"{text!r} ends with a backslash; write \\\\ for a backslash")
    following = text[index + 1]
    if following in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[following], index + 2
    if following == "x":
        digits = text[index + 2 : index + 4]
        if len(digits) != 2 or not _HEX.match(digits):
            raise InvalidValue(
                f"'\\x{digits}' in {text!r} is not a byte; write \\x and two hex digits, e.g. \\x0d"
            )
        return chr(int(digits, 16)), index + 4
    return "\\" + following, index + 2


def split_rule_words(text: str) -> List[str]:
    """
    Split one rule line into words, applying quotes and escapes.

    @raise InvalidValue: For an unclosed quote or a malformed escape.
    """
    words: List[str] = []
    current: List[str] = []
    in_word = False
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
            escaped, index = _escape(text, index)
            current.append(escaped)
            in_word = True
            continue
        if quote == '"':
            if char == '"':
                quote = None
            else:
                current.append(char)
        elif char in "\"'":
            quote = char
            in_word = True
        elif char.isspace():
            if in_word:
                words.append("".join(current))
                current = []
                in_word = False
        else:
            current.append(char)
            in_word = True
        index += 1
    if quote is not None:
        raise InvalidValue(f"unclosed {quote} quote in {text!r}")
    if in_word:
        words.append("".join(current))
    return words


def to_bytes(text: str) -> bytes:
    """
    The bytes a rule's text stands for: each character below 256 is one
    byte (so C{\\xff} is the byte 0xff); text with other characters is
    encoded as UTF-8.
    """
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _hex(text: str, what: str) -> bytes:
    if not text or len(text) % 2 or not _HEX.match(text):
        raise InvalidValue(
            f"{what} {text!r} is not hexadecimal bytes; expected an even number of"
            " hex digits, e.g. 2a0d0a"
        )
    return binascii.unhexlify(text)


def _connect(words: Sequence[str], line: int) -> TcpCheckRule:
    port: Optional[int] = None
    addr: Optional[str] = None
    index = 0
    while index < len(words):
        word = words[index].lower()
        if word not in ("port", "addr"):
            raise InvalidValue(
                not_allowed(f"unknown 'connect' option {words[index]!r}", word, ("addr", "port"))
            )
        if index + 1 >= len(words):
            raise InvalidValue(f"'connect {word}' needs a value")
        value = words[index + 1]
        if word == "port":
            port = parse_port(value)
        else:
            addr = parse_ip(value)
        index += 2
    return TcpCheckRule("connect", port=port, addr=addr, line=line)


def _send(action: str, words: Sequence[str], line: int) -> TcpCheckRule:
    if len(words) != 1:
        what = "hex digits" if action == "send-binary" else "text"
        raise InvalidValue(
            f"'{action}' takes one argument ({what}); quote it or write '\\ ' for a"
            f" space, e.g. send \"info replication\\r\\n\""
        )
    if action == "send-binary":
        return TcpCheckRule(action, data=_hex(words[0], "send-binary"), pattern=words[0], line=line)
    return TcpCheckRule(action, data=to_bytes(words[0]), pattern=words[0], line=line)


def _expect(words: Sequence[str], line: int) -> TcpCheckRule:
    usage = "expected 'expect [!] string|rstring|binary|rbinary PATTERN'"
    negate = False
    rest = list(words)
    if rest and rest[0] == "!":
        negate = True
        rest = rest[1:]
    elif rest and rest[0].startswith("!"):
        negate = True
        rest[0] = rest[0][1:]
    if not rest:
        raise InvalidValue(f"'expect' needs a match and a pattern; {usage}")
    match = rest[0].lower()
    if match not in MATCHES:
        raise InvalidValue(not_allowed(f"unknown 'expect' match {rest[0]!r}", match, MATCHES))
    if len(rest) != 2:
        raise InvalidValue(
            f"'expect {match}' takes one pattern; quote it or write '\\ ' for a space"
        )
    pattern = rest[1]
    if not pattern:
        raise InvalidValue(f"'expect {match}' needs a non-empty pattern")
    data = b""
    if match == "string":
        data = to_bytes(pattern)
    elif match == "binary":
        data = _hex(pattern, "expect binary")
    else:
        try:
            re.compile(to_bytes(pattern))
        except re.error as error:
            raise InvalidValue(f"{pattern!r} is not a regular expression: {error}")
    return TcpCheckRule("expect", data=data, match=match, pattern=pattern, negate=negate, line=line)


def parse_rule(text: str, line: int = 0) -> TcpCheckRule:
    """
    Parse one rule: C{connect [port N] [addr IP]}, C{send TEXT},
    C{send-binary HEX}, C{expect [!] string|rstring|binary|rbinary PATTERN}.

    @raise InvalidValue: With what is allowed.
    """
    words = split_rule_words(text)
    if not words:
        raise InvalidValue("empty tcp-check rule")
    action = words[0].lower()
    if action not in ACTIONS:
        raise InvalidValue(not_allowed(f"unknown tcp-check action {words[0]!r}", action, ACTIONS))
    if action == "connect":
        return _connect(words[1:], line)
    if action in ("send", "send-binary"):
        return _send(action, words[1:], line)
    return _expect(words[1:], line)


def parse_rules(
    pieces: Sequence[Tuple[int, str]]
) -> Tuple[List[TcpCheckRule], List[Tuple[int, str]]]:
    """
    Parse a C{tcp-check} value given as its lines, one rule per line.

    @param pieces: C{(line, text)} for each line of the value.
    @return: The rules in order, and C{(line, message)} per problem.
    """
    rules: List[TcpCheckRule] = []
    errors: List[Tuple[int, str]] = []
    for line, text in pieces:
        if not text.strip():
            continue
        try:
            rules.append(parse_rule(text, line))
        except InvalidValue as error:
            errors.append((line, error.message))
    if not rules and not errors:
        errors.append(
            (
                pieces[0][0] if pieces else 0,
                "missing rules; write one rule per line: connect, send TEXT,"
                " send-binary HEX, expect string|rstring|binary|rbinary PATTERN",
            )
        )
    return rules, errors
