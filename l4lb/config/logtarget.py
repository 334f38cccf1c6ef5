"""
The global C{log} target and the proxies' C{log-format}.

C{log} in C{[global]} is one of::

    stdout | stderr | none                 l4lb's standard streams, or nothing
    /var/log/l4lb.log                      a file (a path alone)
    syslog [FACILITY [LEVEL]]              the local syslog daemon, /dev/log
    unix@PATH [FACILITY [LEVEL]]           a syslog UNIX datagram socket
    PATH FACILITY [LEVEL]                  the same, HAProxy's way (/dev/log local0)
    udp@IP[:PORT] [FACILITY [LEVEL]]       a syslog server over UDP (port 514)
    IP[:PORT] FACILITY [LEVEL]             the same, HAProxy's way

IPv6 addresses are written in brackets (C{udp@[::1]:514}).  The facility is
C{local0} unless given; LEVEL is the least important severity sent
(HAProxy's max level), every message when absent.
"""

from __future__ import annotations

import ipaddress
from typing import Dict, List, Optional, Tuple

from l4lb.config.errors import InvalidValue
from l4lb.config.model import LogTarget
from l4lb.config.units import allowed_list

#: The local syslog daemon's socket (C{log = syslog}).
DEV_LOG = "/dev/log"

#: Syslog's default port.
SYSLOG_PORT = 514

#: Facility codes by name (RFC 3164 and HAProxy's names).
FACILITIES: Dict[str, int] = {
    name: code
    for code, name in enumerate(
        (
            "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
            "uucp", "cron", "auth2", "ftp", "ntp", "audit", "alert", "cron2",
            "local0", "local1", "local2", "local3", "local4", "local5", "local6",
            "local7",
        )
    )
}

#: Severity codes by name, most important first.
SEVERITIES: Dict[str, int] = {
    name: code
    for code, name in enumerate(
        ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
    )
}

#: The values of C{log-format}.
LOG_FORMATS = ("tcplog", "json")

_SYNTAX = (
    "stdout, stderr, none, a file path (/var/log/l4lb.log), syslog [FACILITY],"
    " unix@PATH [FACILITY], udp@IP[:PORT] [FACILITY], or IP[:PORT] FACILITY"
)


def parse_log_format(text: str) -> str:
    """
    Parse C{log-format}: C{tcplog} or C{json}.
    """
    word = text.strip().lower()
    if word in LOG_FORMATS:
        return word
    hint = (
        "; custom %-variable formats are not supported"
        if "%" in text
        else ""
    )
    raise InvalidValue(
        f"{text.strip()!r} is not a log format{hint}; allowed: {allowed_list(LOG_FORMATS)}"
    )


def _facility_level(words: List[str], required: bool) -> Tuple[str, str]:
    if not words:
        if required:
            raise InvalidValue(
                "a syslog target needs a facility after the address, e.g. local0;"
                f" allowed: {allowed_list(FACILITIES)}"
            )
        return "local0", "debug"
    if len(words) > 2:
        raise InvalidValue(
            f"unexpected {' '.join(words[2:])!r}; expected at most a facility and a"
            " level, e.g. 'local0 info'"
        )
    facility = words[0].lower()
    if facility not in FACILITIES:
        raise InvalidValue(
            f"{words[0]!r} is not a syslog facility; allowed: {allowed_list(FACILITIES)}"
        )
    level = words[1].lower() if len(words) > 1 else "debug"
    if level not in SEVERITIES:
        raise InvalidValue(
            f"{words[1]!r} is not a syslog level; allowed: {allowed_list(SEVERITIES)}"
        )
    return facility, level


def _ip_port(text: str) -> Optional[Tuple[str, int]]:
    """
    Split C{IP[:PORT]} or C{[IPv6][:PORT]}; C{None} when it is not an IP
    address.
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    if not port_text:
        return host, SYSLOG_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidValue(f"{port_text!r} is not a port; expected 1-65535")
    return host, int(port_text)


def parse_global_log(text: str) -> LogTarget:
    """
    Parse the global C{log} (see the module's description).
    """
    words = text.split()
    if not words:
        raise InvalidValue(f"missing value; expected {_SYNTAX}")
    first, rest = words[0], words[1:]
    lowered = first.lower()
    if lowered in ("stdout", "stderr", "none") and not rest:
        return LogTarget(kind=lowered)
    if lowered == "syslog":
        facility, level = _facility_level(rest, False)
        return LogTarget(kind="syslog", path=DEV_LOG, facility=facility, level=level)
    if lowered.startswith("unix@"):
        path = first[len("unix@"):]
        if not path.startswith("/"):
            raise InvalidValue(f"{first!r}: expected an absolute socket path, e.g. unix@/dev/log")
        facility, level = _facility_level(rest, False)
        return LogTarget(kind="syslog", path=path, facility=facility, level=level)
    if first.startswith("/"):
        if not rest:
            return LogTarget(kind="file", path=first)
        facility, level = _facility_level(rest, True)
        return LogTarget(kind="syslog", path=first, facility=facility, level=level)
    prefix, at, address = first.partition("@")
    if at and prefix.lower() not in ("udp", "udp4", "udp6"):
        raise InvalidValue(f"{prefix + '@'!r} is not supported; allowed: udp@, unix@")
    where = _ip_port(address if at else first)
    if where is None:
        if at:
            raise InvalidValue(
                f"{address!r} is not an IP address with an optional port, e.g."
                " 127.0.0.1:514 or [::1]:514 (host names are not resolved)"
            )
        raise InvalidValue(f"{text.strip()!r} is not a log target; allowed: {_SYNTAX}")
    facility, level = _facility_level(rest, not at)
    host, port = where
    return LogTarget(kind="udp", host=host, port=port, facility=facility, level=level)
