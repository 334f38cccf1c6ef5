"""
The operations keys of C{[global]}: C{stats socket = PATH [mode OCTAL]
[level admin] [maxconn N]}, C{stats bind = [HOST]:PORT [maxconn N]},
C{stats auth = USER:PASSWORD}, C{stats timeout = TIME},
C{stats maxconn = N}, C{hard-stop-after = TIME} and C{grace = TIME}.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Dict, List, Optional, Tuple

from l4lb.config.errors import InvalidValue
from l4lb.config.model import StatsBind, StatsSocket
from l4lb.config.units import parse_int, parse_time

#: The operations keys of C{[global]}.
OPS_GLOBAL_KEYS = (
    "grace",
    "hard-stop-after",
    "stats auth",
    "stats bind",
    "stats maxconn",
    "stats socket",
    "stats timeout",
)

#: The options a C{stats socket} line takes after its path, as written.
_SOCKET_OPTIONS = "'mode OCTAL', 'level admin', 'maxconn N', 'expose-fd listeners'"


def _option_pairs(words: List[str], allowed: str, known: Tuple[str, ...]) -> Dict[str, str]:
    """
    Read C{NAME VALUE} pairs; an unknown or incomplete one is an error
    naming only that part and listing C{allowed}.
    """
    options: Dict[str, str] = {}
    index = 0
    while index < len(words):
        name = words[index].lower()
        if name not in known:
            # HAProxy's bind options are a word and a value; show the word
            # with its value so that the line's culprit is recognisable.
            culprit = " ".join(words[index : index + 2])
            raise InvalidValue(f"unknown option {culprit!r}; allowed: {allowed}")
        if index + 1 >= len(words):
            raise InvalidValue(f"option {words[index]!r} needs a value; allowed: {allowed}")
        if name in options:
            raise InvalidValue(f"option {words[index]!r} is given twice")
        options[name] = words[index + 1]
        index += 2
    return options


def _option_maxconn(options: Dict[str, str]) -> Optional[int]:
    if "maxconn" not in options:
        return None
    try:
        return parse_int(options["maxconn"], 1)
    except InvalidValue:
        raise InvalidValue(
            f"'maxconn {options['maxconn']}' is not allowed; expected 'maxconn N'"
            " with N >= 1"
        ) from None


def parse_stats_socket(text: str) -> StatsSocket:
    """
    Parse C{PATH [mode OCTAL] [level admin] [maxconn N] [expose-fd
    listeners]}; the path must be absolute.  C{expose-fd listeners} lets a
    new process take the listening sockets over this socket (a handover,
    L{l4lb.handover}).  C{level admin} is accepted as written in HAProxy
    configurations: every connection to l4lb's socket may run every
    command, so a lower level is refused rather than silently widened.
    """
    words = text.split()
    if not words or not words[0].startswith("/"):
        raise InvalidValue(
            f"{text.strip()!r} is not a socket path; expected an absolute path,"
            f" optionally followed by {_SOCKET_OPTIONS},"
            " e.g. '/run/l4lb/admin.sock mode 600'"
        )
    options = _option_pairs(
        words[1:], _SOCKET_OPTIONS, ("mode", "level", "maxconn", "expose-fd")
    )
    mode = 0o600
    if "mode" in options:
        try:
            mode = int(options["mode"], 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            raise InvalidValue(
                f"mode {options['mode']!r} is not an octal mode; expected e.g. 600 or 660"
            )
    level = options.get("level", "admin").lower()
    if level != "admin":
        raise InvalidValue(
            f"'level {options['level']}' is not available: every connection to"
            " l4lb's socket may run every command (HAProxy's 'level admin');"
            " write 'level admin' or nothing, and restrict who may connect with"
            " 'mode' and the socket directory's permissions"
        )
    expose = options.get("expose-fd")
    if expose is not None and expose.lower() != "listeners":
        raise InvalidValue(
            f"'expose-fd {expose}' is not available; only 'expose-fd listeners'"
            " (hand the listening sockets to a new process) is"
        )
    return StatsSocket(words[0], mode, _option_maxconn(options), expose is not None)


def parse_stats_bind(text: str) -> StatsBind:
    """
    Parse C{[HOST]:PORT}, C{[IPV6]:PORT} or C{PORT}, optionally followed
    by C{maxconn N}; without a host the pages listen on the loopback
    address only.
    """
    words = text.split()
    address = words[0] if words else ""
    options = _option_pairs(words[1:], "'maxconn N'", ("maxconn",))
    host, sep, port_text = address.rpartition(":")
    if not sep:
        host, port_text = "", address
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise InvalidValue(
            f"{address!r} is not an address; expected IP:PORT, [IPV6]:PORT or PORT"
            " (loopback), optionally followed by 'maxconn N', e.g. 127.0.0.1:8404"
        )
    return StatsBind(host, port, _option_maxconn(options))


def parse_stats_timeout(text: str) -> float:
    """
    Parse C{stats timeout}: a time above zero (HAProxy refuses 0 too).
    """
    value = parse_time(text)
    if value <= 0:
        raise InvalidValue(f"{text.strip()!r} is not allowed; expected a time above 0, e.g. 10s")
    return value


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
    "stats timeout": parse_stats_timeout,
    "stats maxconn": lambda text: parse_int(text, 1),
    "hard-stop-after": parse_time,
    "grace": parse_time,
}
