"""
Value types shared by every section: times, integers, booleans, ports and
IP addresses, with HAProxy's syntax.

Each parser takes the text as written and returns the typed value, or raises
L{l4lb.config.errors.InvalidValue} with a message that says what is allowed.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Iterable, Optional, Sequence

from l4lb.config.errors import InvalidValue

#: Time units and their length in seconds, as HAProxy spells them.
TIME_UNITS = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")

_TIME = re.compile(r"^(?P<number>[0-9]+)(?P<unit>[a-zA-Z]*)$")
_INT = re.compile(r"^[+-]?[0-9]+$")
#: Longer numbers are refused before conversion (Python refuses to convert
#: more than 4300 digits, and no value of lb.ini needs more than a few).
_MAX_DIGITS = 20


def allowed_list(words: Iterable[str]) -> str:
    """
    Format allowed words for a message: C{"a, b, c"}.
    """
    return ", ".join(words)


def nearest(word: str, candidates: Sequence[str]) -> Optional[str]:
    """
    Return the candidate nearest to C{word} (a likely typo), or C{None}.
    """
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def not_allowed(
    message: str,
    word: str,
    candidates: Sequence[str],
    shown: Optional[Sequence[str]] = None,
) -> str:
    """
    Complete C{message} with the nearest candidate and the allowed list.

    The result reads C{"message; did you mean 'x'? Allowed: a, b"}, or
    C{"message; allowed: a, b"} when no candidate is near.

    @param shown: The allowed words as displayed, when they differ from the
        C{candidates} that are compared with C{word}.
    """
    listed = allowed_list(candidates if shown is None else shown)
    guess = nearest(word, candidates)
    if guess is not None:
        return f"{message}; did you mean {guess!r}? Allowed: {listed}"
    return f"{message}; allowed: {listed}"


def parse_time(text: str) -> float:
    """
    Parse a HAProxy time: a whole number with an optional unit.

    A bare number is milliseconds; units are C{us ms s m h d}.

    @return: The time in seconds.
    @raise InvalidValue: For anything else, including negative times.
    """
    text = text.strip()
    units = allowed_list(TIME_UNITS)
    if text.startswith("-"):
        raise InvalidValue(
            f"{text!r} is negative; a time is a whole number >= 0 with an"
            f" optional unit ({units}; none means ms)"
        )
    match = _TIME.match(text)
    if match is None:
        raise InvalidValue(
            f"{text!r} is not a time; expected a whole number with an"
            f" optional unit ({units}; none means ms), e.g. 5000, 5000ms, 5s"
        )
    if len(match.group("number")) > _MAX_DIGITS:
        raise InvalidValue(
            f"{text[:_MAX_DIGITS]!r}... is too large; a time has at most"
            f" {_MAX_DIGITS} digits"
        )
    unit = match.group("unit").lower() or "ms"
    if unit not in TIME_UNITS:
        raise InvalidValue(
            not_allowed(
                f"unknown time unit {match.group('unit')!r} in {text!r}"
                " (a bare number means ms)",
                unit,
                list(TIME_UNITS),
            )
        )
    return int(match.group("number")) * TIME_UNITS[unit]


def parse_int(
    text: str, minimum: Optional[int] = None, maximum: Optional[int] = None
) -> int:
    """
    Parse a decimal integer within C{minimum}..C{maximum} (inclusive).

    @raise InvalidValue: Naming the allowed range.
    """
    text = text.strip()
    if minimum is not None and maximum is not None:
        allowed = f"an integer from {minimum} to {maximum}"
    elif minimum is not None:
        allowed = f"an integer >= {minimum}"
    elif maximum is not None:
        allowed = f"an integer <= {maximum}"
    else:
        allowed = "an integer"
    if not _INT.match(text):
        raise InvalidValue(f"{text!r} is not an integer; expected {allowed}")
    if len(text.lstrip("+-")) > _MAX_DIGITS:
        raise InvalidValue(f"{text[:_MAX_DIGITS]!r}... is out of range; expected {allowed}")
    value = int(text)
    if (minimum is not None and value < minimum) or (
        maximum is not None and value > maximum
    ):
        raise InvalidValue(f"{value} is out of range; expected {allowed}")
    return value


def parse_bool(text: Optional[str]) -> bool:
    """
    Parse a boolean; a missing or empty value means C{True}.

    @raise InvalidValue: Listing the accepted words.
    """
    if text is None or not text.strip():
        return True
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidValue(
        f"{text.strip()!r} is not a boolean;"
        f" allowed: {allowed_list(TRUE_WORDS + FALSE_WORDS)}"
    )


def parse_port(text: str) -> int:
    """
    Parse a TCP or UDP port number, 1-65535.
    """
    return parse_int(text, 1, 65535)


def parse_choice(text: str, choices: Sequence[str]) -> str:
    """
    Return C{text} lowercased when it is one of C{choices}.

    @raise InvalidValue: Suggesting the nearest choice and listing them all.
    """
    word = text.strip().lower()
    if word in choices:
        return word
    raise InvalidValue(not_allowed(f"{text.strip()!r} is not allowed", word, choices))


def is_ip_literal(text: str) -> bool:
    """
    Whether C{text} is an IPv4 or IPv6 address literal (no brackets).
    """
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_ip(text: str) -> str:
    """
    Check that C{text} is an IPv4 or IPv6 literal and return it unchanged.

    Brackets around an IPv6 address are removed.
    """
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not is_ip_literal(text):
        raise InvalidValue(
            f"{text!r} is not an IP address; expected an IPv4 address such as"
            " 192.0.2.10 or an IPv6 address such as 2001:db8::10"
        )
    return text
