"""
The backend key that takes servers from a store: C{servers-from}.

C{servers-from = etcd http://127.0.0.1:2379 /l4lb/backends/web/} watches
the keys under a prefix in etcd (its v3 API, through its JSON gateway);
each key under it names a server and its value is a server line's text
(L{l4lb.etcd}).  Several endpoints of one etcd cluster are separated by
commas, and tried in turn when one does not answer.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple
from urllib.parse import urlsplit

from l4lb.config.errors import InvalidValue
from l4lb.config.model import ServersFrom

#: The backend keys this module parses.
ETCD_KEYS = ("servers-from",)

#: The stores C{servers-from} can read.
PROVIDERS = ("etcd",)

#: What a C{servers-from} value looks like, for messages.
SYNTAX = "etcd URL[,URL...] PREFIX, such as: etcd http://127.0.0.1:2379 /l4lb/backends/web/"


def parse_endpoint(text: str) -> str:
    """
    Check one etcd client URL: C{http://HOST:PORT} or C{https://HOST:PORT},
    without a path.

    @return: The URL without a trailing slash.
    @raise InvalidValue: For anything else.
    """
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise InvalidValue(
            f"{text!r} is not an etcd client URL; expected http://HOST:PORT or"
            " https://HOST:PORT, such as http://127.0.0.1:2379"
        )
    if port is None:
        raise InvalidValue(
            f"{text!r} has no port; etcd's clients usually connect to port 2379:"
            f" {text.rstrip('/')}:2379"
        )
    return text.rstrip("/")


def parse_servers_from(text: str) -> ServersFrom:
    """
    Parse C{servers-from = etcd URL[,URL...] PREFIX}.

    @raise InvalidValue: For another store, a bad URL, or a missing or
        extra word.
    """
    words = text.split()
    if not words or words[0].lower() not in PROVIDERS:
        shown = words[0] if words else ""
        raise InvalidValue(f"{shown!r} is not a store l4lb reads; expected {SYNTAX}")
    if len(words) != 3:
        raise InvalidValue(f"expected {SYNTAX}")
    endpoints: Tuple[str, ...] = tuple(
        parse_endpoint(url) for url in words[1].split(",") if url
    )
    if not endpoints:
        raise InvalidValue(f"no URL; expected {SYNTAX}")
    prefix = words[2]
    if not prefix.endswith("/"):
        # Without the separator, /l4lb/web would also take /l4lb/web2's keys.
        raise InvalidValue(
            f"the prefix {prefix!r} must end with '/', so that it does not also"
            f" take the keys of another prefix that starts the same way: {prefix}/"
        )
    return ServersFrom(provider=words[0].lower(), endpoints=endpoints, prefix=prefix)


#: Parsers of the keys in L{ETCD_KEYS}.
ETCD_VALUES: Dict[str, Callable[[str], object]] = {
    "servers-from": parse_servers_from,
}
