"""
The keys of routing by TLS server name (SNI) without terminating TLS:
C{use_backend NAME = sni HOST [HOST ...]}, C{sni-fallback},
C{sni-max-hello} and C{tcp-request inspect-delay}.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, Tuple

from l4lb.config.errors import InvalidValue
from l4lb.config.units import parse_choice, parse_int, parse_time

#: The frontend keys of SNI routing, besides C{use_backend NAME}.
SNI_KEYS = ("sni-fallback", "sni-max-hello", "tcp-request inspect-delay")

#: The bounds of C{sni-max-hello}, in bytes.
MIN_HELLO = 512
MAX_HELLO = 65536

_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")


def parse_sni_names(text: str) -> Tuple[str, ...]:
    """
    Parse the value of C{use_backend NAME}: C{sni} then host names or
    wildcards (C{*.example.com}), lowercased, in order.
    """
    words = text.split()
    if not words or words[0].lower() != "sni":
        raise InvalidValue(
            f"{text.strip()!r} is not a rule; expected 'sni HOST [HOST ...]',"
            " e.g. 'sni db.example.com *.db.example.com' (the only condition"
            " is the TLS server name)"
        )
    if len(words) == 1:
        raise InvalidValue(
            "'sni' needs at least one host name or wildcard, e.g."
            " 'sni db.example.com *.db.example.com'"
        )
    names = []
    for word in words[1:]:
        name = word.lower().rstrip(".")
        if len(name) > 253 or _HOST.fullmatch(name) is None:
            raise InvalidValue(
                f"{word!r} is not a host name; expected a name such as"
                " db.example.com or a wildcard such as *.example.com (the"
                " '*' only as the whole first label)"
            )
        names.append(name)
    return tuple(names)


def parse_inspect_delay(text: str) -> float:
    """
    Parse C{tcp-request inspect-delay}: a time; C{0} means not set.
    """
    return parse_time(text)


#: Parsers of the SNI keys' values.
SNI_VALUES: Dict[str, Callable[[str], object]] = {
    "sni-fallback": lambda text: parse_choice(text, ("default", "reject")),
    "sni-max-hello": lambda text: parse_int(text, MIN_HELLO, MAX_HELLO),
    "tcp-request inspect-delay": parse_inspect_delay,
}
