"""
The frontend key of the PROXY protocol: C{accept-proxy-from}, the peers
whose headers an C{accept-proxy} bind reads.

C{accept-proxy-from = 10.0.0.0/8 192.0.2.7 ::1} lists address ranges and
single addresses, separated by spaces or commas.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Dict, Tuple

from l4lb.config.errors import InvalidValue

#: The frontend keys this module parses.
PROXY_KEYS = ("accept-proxy-from",)


def parse_trusted(text: str) -> Tuple[str, ...]:
    """
    Parse C{accept-proxy-from}: address ranges (C{10.0.0.0/8},
    C{2001:db8::/32}) and addresses, separated by spaces or commas.

    @return: Each range in its normal form (C{10.0.0.0/8},
        C{127.0.0.1/32}).
    @raise InvalidValue: For an empty list or a word that is neither.
    """
    words = text.replace(",", " ").split()
    if not words:
        raise InvalidValue(
            "expected address ranges such as 10.0.0.0/8 127.0.0.1 ::1"
        )
    ranges = []
    for word in words:
        try:
            network = ipaddress.ip_network(word, strict=False)
        except ValueError:
            raise InvalidValue(
                f"{word!r} is not an address or address range; expected"
                " ranges such as 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32"
            )
        ranges.append(str(network))
    return tuple(ranges)


#: Parsers of the keys in L{PROXY_KEYS}.
PROXY_VALUES: Dict[str, Callable[[str], object]] = {
    "accept-proxy-from": parse_trusted,
}
