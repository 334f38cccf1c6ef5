"""
The keys each section accepts, how a written key maps to a keyword, and the
parsers of simple values.

A key is a keyword, optionally followed by a name: C{maxconn},
C{timeout connect}, C{option redispatch}, C{server web1}.  Keywords are
case-insensitive; server names keep their case.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, FrozenSet, Optional, Tuple

import attr

from l4lb.config import logtarget
from l4lb.config.dns import RESOLVERS, RESOLVERS_KEYS, RESOLVERS_VALUES
from l4lb.config.errors import InvalidValue
from l4lb.config.etcd import ETCD_KEYS, ETCD_VALUES
from l4lb.config.model import LogTarget
from l4lb.config.ops import OPS_GLOBAL_KEYS, OPS_VALUES
from l4lb.config.protect import PROTECT_KEYS, PROTECT_VALUES
from l4lb.config.proxy import PROXY_KEYS, PROXY_VALUES
from l4lb.config.sni import SNI_KEYS, SNI_VALUES
from l4lb.config.statefile import STATE_GLOBAL_KEYS, STATE_PROXY_KEYS, STATE_VALUES
from l4lb.config.udp import UDP_CHECK_KEYS, UDP_VALUES
from l4lb.config.units import (
    allowed_list,
    not_allowed,
    parse_bool,
    parse_choice,
    parse_int,
    parse_time,
)

GLOBAL = "global"
DEFAULTS = "defaults"
FRONTEND = "frontend"
BACKEND = "backend"
LISTEN = "listen"

#: Section kinds, and whether a name follows the kind.
SECTION_KINDS: Dict[str, bool] = {
    BACKEND: True,
    DEFAULTS: False,
    FRONTEND: True,
    GLOBAL: False,
    LISTEN: True,
    RESOLVERS: True,
}

#: The most worker processes C{nbproc} may ask for.
MAX_NBPROC = 64

#: Timeouts that only a frontend uses.
FRONTEND_TIMEOUTS = ("timeout client", "timeout client-fin")
#: Timeouts that only a backend uses.
BACKEND_TIMEOUTS = (
    "timeout check",
    "timeout connect",
    "timeout queue",
    "timeout server",
    "timeout server-fin",
    "timeout tunnel",
)
#: Keys of C{mode udp} frontends.
UDP_FRONTEND_KEYS = ("maxsessions", "timeout udp")
#: Keys of C{mode udp} backends.
UDP_BACKEND_KEYS = ("timeout udp", "udp-requests", "udp-responses") + UDP_CHECK_KEYS

_FRONTEND_KEYS = (
    "backlog",
    "bind",
    "default_backend",
    "log",
    "log-format",
    "maxconn",
    "mode",
    "option dontlognull",
    "option tcplog",
    "use_backend",
) + FRONTEND_TIMEOUTS + UDP_FRONTEND_KEYS + SNI_KEYS + PROXY_KEYS + PROTECT_KEYS
_BACKEND_KEYS = (
    "balance",
    "default-server",
    "hash-balance-factor",
    "hash-type",
    "mode",
    "option allbackups",
    "option log-health-checks",
    "option redispatch",
    "option tcp-check",
    "retries",
    "server",
    "server-template",
    "tcp-check",
) + BACKEND_TIMEOUTS + UDP_BACKEND_KEYS + ETCD_KEYS + STATE_PROXY_KEYS

#: The keys allowed in each kind of section.
KEYS: Dict[str, FrozenSet[str]] = {
    GLOBAL: frozenset(
        {"log", "maxconn", "maxpipes", "nbproc", "spread-checks", "tune.relay"}
        | set(OPS_GLOBAL_KEYS)
        | set(STATE_GLOBAL_KEYS)
    ),
    DEFAULTS: frozenset(
        {
            "backlog",
            "balance",
            "default-server",
            "hash-balance-factor",
            "hash-type",
            "log",
            "log-format",
            "maxconn",
            "mode",
            "option allbackups",
            "option dontlognull",
            "option log-health-checks",
            "option redispatch",
            "option tcp-check",
            "option tcplog",
            "retries",
            "tcp-check",
        }
        | set(FRONTEND_TIMEOUTS)
        | set(BACKEND_TIMEOUTS)
        | set(UDP_FRONTEND_KEYS)
        | set(UDP_BACKEND_KEYS)
        | set(SNI_KEYS)
        | set(PROXY_KEYS)
        | set(STATE_PROXY_KEYS)
    ),
    FRONTEND: frozenset(_FRONTEND_KEYS),
    BACKEND: frozenset(_BACKEND_KEYS),
    LISTEN: frozenset(set(_FRONTEND_KEYS) | set(_BACKEND_KEYS)) - {"default_backend"},
    RESOLVERS: frozenset({"nameserver"} | set(RESOLVERS_KEYS)),
}

#: Every keyword of every section.
ALL_KEYS: FrozenSet[str] = frozenset().union(*KEYS.values())

_TWO_WORD = ("timeout", "option", "udp-check", "stats", "tcp-request", "rate-limit", "hold")
_NAMED = ("server", "use_backend", "nameserver", "server-template")
#: What follows the name of a named key, for messages.
_NAMED_SYNTAX = {
    "server": "ADDRESS:PORT [options]",
    "use_backend": "sni HOST [HOST ...]",
    "nameserver": "IP:PORT",
    "server-template": "COUNT|LOW-HIGH FQDN[:PORT] [options]",
}


def display_keys(keys: FrozenSet[str]) -> Tuple[str, ...]:
    """
    The keys sorted as shown in messages, C{server} as C{server NAME}.
    """
    return tuple(sorted(k + " NAME" if k in _NAMED else k for k in keys))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Key:
    """
    A key as understood.

    @ivar keyword: The canonical keyword, e.g. C{"timeout connect"}.
    @ivar name: The name after a named keyword (C{server NAME}), else
        C{None}.
    @ivar written: The key as written, for messages.
    """

    keyword: str
    name: Optional[str]
    written: str

    @property
    def ident(self) -> Tuple[str, Optional[str]]:
        """
        What identifies the key within a section, to find repeated keys.
        """
        return (self.keyword, self.name)


def split_key(written: str, has_value: bool) -> Key:
    """
    Understand a written key.

    @param has_value: Whether the line had C{=}; a known keyword followed by
        more words and no C{=} is most likely a forgotten C{=}.
    @raise InvalidValue: For a key with missing or extra words.  Unknown
        keywords are not an error here: the caller knows what is allowed.
    """
    words = written.split()
    first = words[0].lower()
    size = 2 if first in _TWO_WORD or first in _NAMED else 1
    if len(words) < size:
        if first in _NAMED:
            raise InvalidValue(
                f"{first!r} needs a name: '{first} NAME = {_NAMED_SYNTAX[first]}'"
            )
        known = sorted(k for k in ALL_KEYS if k.startswith(first + " "))
        raise InvalidValue(
            f"{first!r} needs a second word; allowed: {allowed_list(known)}"
        )
    if first in _NAMED:
        keyword, name = first, words[1]
    else:
        keyword, name = " ".join(w.lower() for w in words[:size]), None
    if len(words) > size:
        if not has_value and keyword in ALL_KEYS:
            head = " ".join(words[:size])
            raise InvalidValue(
                f"missing '=' after {head!r}; write"
                f" '{head} = {' '.join(words[size:])}'"
            )
        # An unknown key of several words; the caller suggests one.
        return Key(written.lower(), None, written)
    return Key(keyword, name, written)


def unknown_key_message(key: Key, kind: str) -> str:
    """
    The message for a key that is not allowed in a section of C{kind}.
    """
    allowed = KEYS[kind]
    shown = allowed_list(display_keys(allowed))
    if key.keyword in ALL_KEYS:
        where = sorted(k for k, keys in KEYS.items() if key.keyword in keys)
        return (
            f"not allowed in a [{kind}] section (only in"
            f" {', '.join('[' + w + ']' for w in where)}); allowed here: {shown}"
        )
    candidates = sorted(allowed)
    first_word = key.keyword.split()[0]
    for query in (key.keyword, first_word):
        message = not_allowed("unknown key", query, candidates, display_keys(allowed))
        if "did you mean" in message:
            return message
    return f"unknown key; allowed: {shown}"


def available_balancers() -> Tuple[str, ...]:
    """
    The names of the balancing algorithms that are installed.
    """
    try:
        from l4lb.balancers import available
    except ImportError:
        return ("roundrobin",)
    return tuple(available())


_BALANCE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)(?:\((?P<args>[^()]*)\))?$")


def parse_balance(text: str) -> Tuple[str, Tuple[str, ...]]:
    """
    Parse C{NAME} or C{NAME(ARG, ...)}.

    @return: The lowercased name and its arguments.
    """
    names = available_balancers()
    match = _BALANCE.match(text.strip())
    if match is None:
        raise InvalidValue(
            f"{text.strip()!r} is not an algorithm; expected NAME or"
            f" NAME(ARGUMENTS), with NAME one of: {allowed_list(names)}"
        )
    name = match.group("name").lower()
    if name not in names:
        raise InvalidValue(
            not_allowed(f"unknown balance algorithm {name!r}", name, names)
        )
    args_text = match.group("args")
    args = tuple(
        a.strip() for a in (args_text or "").split(",") if a.strip()
    )
    check_balance_args(name, args)
    return name, args


def check_balance_args(name: str, args: Tuple[str, ...]) -> None:
    """
    Have the algorithm C{name} check its arguments, so that a wrong one is
    an error of the configuration file rather than of the service start.

    @raise InvalidValue: With the algorithm's reason and allowed values.
    """
    try:
        from l4lb.balancers import find_factory
        from l4lb.balancers.base import BalancerArgumentError
    except ImportError:
        return
    check = getattr(find_factory(name), "check_args", None)
    if check is None:
        return
    try:
        check(args)
    except BalancerArgumentError as error:
        raise InvalidValue(str(error))
    except (ValueError, TypeError) as error:
        raise InvalidValue(f"balance {name}({', '.join(args)}): {error}")


def parse_global_log(text: str) -> LogTarget:
    """
    Parse the global C{log}: C{stdout}, C{stderr}, C{none}, an absolute
    file path, or a syslog target (L{l4lb.config.logtarget}).
    """
    return logtarget.parse_global_log(text)


def parse_proxy_log(text: str) -> bool:
    """
    Parse C{log} in a proxy: C{global} (log with the global settings) or
    C{none}.
    """
    return parse_choice(text, ("global", "none")) == "global"


def parse_mode(text: str) -> str:
    """
    Parse C{mode}: C{tcp} or C{udp}.
    """
    word = text.strip().lower()
    if word == "http":
        raise InvalidValue(
            "'http' is not supported: l4lb is a Layer 4 balancer and relays"
            " bytes without reading HTTP; allowed: tcp, udp"
        )
    return parse_choice(text, ("tcp", "udp"))


def parse_timeout(text: str) -> Optional[float]:
    """
    Parse a timeout; C{0} means no timeout, the same as not setting it.
    """
    value = parse_time(text)
    return value if value > 0 else None


def parse_redispatch(text: Optional[str]) -> int:
    """
    Parse C{option redispatch}: a boolean (on means the last retry, -1) or
    HAProxy's interval, a non-zero integer.
    """
    if text is None or not text.strip():
        return -1
    word = text.strip().lower()
    if word in ("true", "yes", "on"):
        return -1
    if word in ("false", "no", "off"):
        return 0
    try:
        return parse_int(word)
    except InvalidValue:
        raise InvalidValue(
            f"{text.strip()!r} is not allowed; expected true, yes, on (redispatch"
            " on the last retry), false, no, off, or an integer: P > 0"
            " redispatches every Pth retry, N < 0 on the Nth retry before the last"
        )


def parse_hash_balance_factor(text: str) -> int:
    """
    Parse C{hash-balance-factor}: 0 (off) or an integer >= 100.
    """
    value = parse_int(text, 0)
    if 0 < value < 100:
        raise InvalidValue(f"{value} is out of range; expected 0 (off) or an integer >= 100")
    return value


#: Parsers of values that need nothing but their text.  A parser that
#: accepts C{None} allows the key to be written without C{=}.
SIMPLE_VALUES: Dict[str, Callable[[str], object]] = {
    "maxconn": lambda text: parse_int(text, 1),
    "maxpipes": lambda text: parse_int(text, 0),
    "backlog": lambda text: parse_int(text, 1, 2**31 - 1),
    "nbproc": lambda text: parse_int(text, 1, MAX_NBPROC),
    "spread-checks": lambda text: parse_int(text, 0, 50),
    "tune.relay": lambda text: parse_choice(text, ("lean", "classic")),
    "mode": parse_mode,
    "retries": lambda text: parse_int(text, 0),
    "balance": parse_balance,
    "hash-type": lambda text: parse_choice(text, ("map-based", "consistent")),
    "hash-balance-factor": parse_hash_balance_factor,
    "log-format": logtarget.parse_log_format,
}
for _timeout in FRONTEND_TIMEOUTS + BACKEND_TIMEOUTS + ("timeout udp",):
    SIMPLE_VALUES[_timeout] = parse_timeout
SIMPLE_VALUES.update(UDP_VALUES)
SIMPLE_VALUES.update(OPS_VALUES)
SIMPLE_VALUES.update(SNI_VALUES)
SIMPLE_VALUES.update(PROXY_VALUES)
SIMPLE_VALUES.update(PROTECT_VALUES)
SIMPLE_VALUES.update(ETCD_VALUES)
SIMPLE_VALUES.update(RESOLVERS_VALUES)
SIMPLE_VALUES.update(STATE_VALUES)

#: Keys that may be written without a value (C{option tcplog}).
BARE_VALUES: Dict[str, Callable[[Optional[str]], object]] = {
    "option redispatch": parse_redispatch,
    "option tcplog": parse_bool,
    "option dontlognull": parse_bool,
    "option allbackups": parse_bool,
    "option tcp-check": parse_bool,
    "option log-health-checks": parse_bool,
    "parse-resolv-conf": parse_bool,
}
