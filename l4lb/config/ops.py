"""
The operations keys of C{[global]}: C{stats socket = PATH [mode OCTAL]},
C{stats bind = [HOST]:PORT}, C{stats auth = USER:PASSWORD} and
C{hard-stop-after = TIME}.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Dict, Tuple

from l4lb.config.errors import InvalidValue
from l4lb.config.model import StatsBind, StatsSocket
from l4lb.config.units import parse_time

#: The operations keys of C{[global]}.
OPS_GLOBAL_KEYS = ("hard-stop-after", "stats auth", "stats bind", "stats socket")


def parse_stats_socket(text: str) -> StatsSocket:
    """
    Parse C{PATH [mode OCTAL]}; the path must be absolute.
    """
    words = text.split()
    if not words or not words[0].startswith("/"):
        raise InvalidValue(
            f"{text.strip()!r} is not a socket path; expected an absolute path,"
            " optionally followed by 'mode OCTAL', e.g. '/run/l4lb/admin.sock mode 600'"
        )
    path, rest = words[0], words[1:]
    if not rest:
        return StatsSocket(path)
    if len(rest) != 2 or rest[0].lower() != "mode":
        raise InvalidValue(
            f"unexpected {' '.join(rest)!r} after the path; allowed: 'mode OCTAL',"
            " e.g. 'mode 600'"
        )
    try:
        mode = int(rest[1], 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise InvalidValue(f"mode {rest[1]!r} is not an octal mode; expected e.g. 600 or 660")
    return StatsSocket(path, mode)


def parse_stats_bind(text: str) -> StatsBind:
    """
    Parse C{[HOST]:PORT}, C{[IPV6]:PORT} or C{PORT}; without a host the
    pages listen on the loopback address only.
    """
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise InvalidValue(
            f"{text!r} is not an address; expected IP:PORT, [IPV6]:PORT or PORT"
            " (loopback), e.g. 127.0.0.1:8404"
        )
    return StatsBind(host, port)


def parse_stats_auth(text: str) -> Tuple[str, str]:
    """
    Parse C{USER:PASSWORD} (the password may contain C{:}).
    """
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise InvalidValue("expected USER:PASSWORD, e.g. 'admin:s3cret'")
    return user, password


#: Parsers of the operations keys.
OPS_VALUES: Dict[str, Callable[[str], object]] = {
    "stats socket": parse_stats_socket,
    "stats bind": parse_stats_bind,
    "stats auth": parse_stats_auth,
    "hard-stop-after": parse_time,
}
