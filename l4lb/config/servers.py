"""
C{server NAME = ADDRESS:PORT [options]} and C{default-server [options]}.

Option words are HAProxy's.  Every option is validated; the ones a
L{l4lb.config.model.ServerSpec} has a field for fill that field, and all of
them are kept in C{ServerSpec.options} in order, so that later releases can
act on the rest without a new parser.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attr

from l4lb.config.dns import DNS_SERVER_OPTIONS
from l4lb.config.errors import InvalidValue
from l4lb.config.model import ServerSpec
from l4lb.config.units import (
    is_ip_literal,
    not_allowed,
    parse_choice,
    parse_int,
    parse_ip,
    parse_port,
    parse_time,
)

#: Option words that take no value.
FLAGS = (
    "agent-check",
    "backup",
    "check",
    "check-send-proxy",
    "check-ssl",
    "disabled",
    "enabled",
    "no-check",
    "no-check-ssl",
    "no-send-proxy",
    "no-send-proxy-v2",
    "no-ssl",
    "send-proxy",
    "send-proxy-v2",
    "ssl",
)

_HOST_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*\.?$")
_DOTTED_NUMBERS = re.compile(r"^[0-9.]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")

Option = Tuple[str, Optional[str]]


def _positive_time(text: str) -> float:
    value = parse_time(text)
    if value <= 0:
        raise InvalidValue(f"{text!r} must be a time greater than 0, e.g. 2s")
    return value


def _text(text: str) -> str:
    if not text:
        raise InvalidValue("expected a non-empty value")
    return text


def _tls_name(text: str, word: str) -> str:
    """
    Read the host name of C{sni} or C{verifyhost}: a name or an IP address,
    also written HAProxy's way as C{str(NAME)}.
    """
    name = text
    if name.startswith("str(") and name.endswith(")"):
        name = name[4:-1]
    if is_ip_literal(name) or (len(name) <= 253 and _HOSTNAME.match(name)):
        return name.rstrip(".").lower()
    raise InvalidValue(
        f"{text!r} is not a host name or IP address; {word} takes a fixed name"
        " such as db.internal or str(db.internal) (sample expressions are not"
        " supported)"
    )


def _choice(*choices: str) -> Callable[[str], str]:
    return lambda text: parse_choice(text, choices)


def _int_range(minimum: int, maximum: Optional[int] = None) -> Callable[[str], int]:
    return lambda text: parse_int(text, minimum, maximum)


#: Option words that take a value, and the parser of that value.
VALUE_OPTIONS: Dict[str, Callable[[str], object]] = {
    "addr": parse_ip,
    "agent-addr": parse_ip,
    "agent-inter": _positive_time,
    "agent-port": parse_port,
    "agent-send": _text,
    "ca-file": _text,
    "crt": _text,
    "downinter": _positive_time,
    "error-limit": _int_range(1),
    "fall": _int_range(1),
    "fastinter": _positive_time,
    "hash-key": _choice("name", "addr", "addr-port"),
    "id": _int_range(1),
    "init-state": _choice("up", "down", "fully-up", "fully-down"),
    "inter": _positive_time,
    "maxconn": _int_range(0),
    "maxqueue": _int_range(0),
    "observe": _choice("layer4"),
    "on-error": _choice("fastinter", "fail-check", "sudden-death", "mark-down"),
    "on-marked-down": _choice("shutdown-sessions"),
    "on-marked-up": _choice("shutdown-backup-sessions"),
    "port": parse_port,
    "rise": _int_range(1),
    "slowstart": parse_time,
    "sni": lambda text: _tls_name(text, "sni"),
    "verify": _choice("none", "required"),
    "verifyhost": lambda text: _tls_name(text, "verifyhost"),
    "weight": _int_range(0, 256),
}

# The DNS options (resolvers, resolve-prefer, init-addr, ...) are validated
# here like the others and read by l4lb.config.dns.server_dns.
VALUE_OPTIONS.update(DNS_SERVER_OPTIONS)

#: Every option word, sorted.
OPTION_WORDS = tuple(sorted(FLAGS + tuple(VALUE_OPTIONS)))

# Flags and valued options that fill a typed ServerSpec field.
_FLAG_FIELDS = {
    "check": ("check", True),
    "no-check": ("check", False),
    "backup": ("backup", True),
    "disabled": ("disabled", True),
    "enabled": ("disabled", False),
    "agent-check": ("agent_check", True),
    "send-proxy": ("send_proxy", 1),
    "send-proxy-v2": ("send_proxy", 2),
    "no-send-proxy": ("send_proxy", 0),
    "no-send-proxy-v2": ("send_proxy", 0),
    "check-send-proxy": ("check_send_proxy", True),
    "ssl": ("ssl", True),
    "no-ssl": ("ssl", False),
    "check-ssl": ("check_ssl", True),
    "no-check-ssl": ("check_ssl", False),
}
_VALUE_FIELDS = {
    "weight": "weight",
    "maxconn": "maxconn",
    "maxqueue": "maxqueue",
    "inter": "inter",
    "fastinter": "fastinter",
    "downinter": "downinter",
    "rise": "rise",
    "fall": "fall",
    "port": "check_port",
    "addr": "check_addr",
    "init-state": "init_state",
    "agent-port": "agent_port",
    "agent-inter": "agent_inter",
    "agent-send": "agent_send",
    "agent-addr": "agent_addr",
    "observe": "observe",
    "error-limit": "error_limit",
    "on-error": "on_error",
    "on-marked-down": "on_marked_down",
    "on-marked-up": "on_marked_up",
    "verify": "verify",
    "ca-file": "ca_file",
    "sni": "sni",
    "verifyhost": "verifyhost",
    "crt": "crt",
    "slowstart": "slowstart",
}


def split_words(text: str) -> List[str]:
    """
    Split option text into words; single and double quotes group words.

    @raise InvalidValue: For an unclosed quote.
    """
    try:
        return shlex.split(text)
    except ValueError as error:
        raise InvalidValue(f"cannot split {text!r} into words: {error}")


def parse_options(words: Sequence[str]) -> Tuple[List[Option], List[str]]:
    """
    Validate server option words.

    @return: The options as C{(word, value or None)} in order, with the
        words lowercased, and one message per invalid option.
    """
    options: List[Option] = []
    errors: List[str] = []
    index = 0
    while index < len(words):
        word = words[index].lower()
        index += 1
        if word in FLAGS:
            options.append((word, None))
            continue
        parser = VALUE_OPTIONS.get(word)
        if parser is None:
            errors.append(
                not_allowed(f"unknown server option {words[index - 1]!r}", word, OPTION_WORDS)
            )
            # Words up to the next known option are most likely the unknown
            # option's value: one error is enough.
            while index < len(words) and words[index].lower() not in OPTION_WORDS:
                index += 1
            continue
        if index >= len(words):
            errors.append(f"server option {word!r} needs a value")
            continue
        value = words[index]
        index += 1
        try:
            parser(value)
        except InvalidValue as error:
            errors.append(f"server option {word!r}: {error.message}")
            continue
        options.append((word, value))
    return options, errors


def parse_address(text: str) -> Tuple[str, int]:
    """
    Parse C{ADDRESS:PORT}: C{192.0.2.1:80}, C{[2001:db8::1]:80} or
    C{host.example:80}.

    @return: The host (without brackets) and the port.
    """
    expected = (
        "expected ADDRESS:PORT such as 192.0.2.10:80, [2001:db8::10]:80"
        " or app.example.com:80"
    )
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise InvalidValue(f"{text!r} is not an address; {expected}")
        port_text = rest[1:]
        if not is_ip_literal(host) or ":" not in host:
            raise InvalidValue(
                f"{host!r} in brackets is not an IPv6 address; {expected}"
            )
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise InvalidValue(f"{text!r} has no port; {expected}")
        if not host:
            raise InvalidValue(f"{text!r} has no host; {expected}")
        if not is_ip_literal(host):
            if _DOTTED_NUMBERS.match(host):
                raise InvalidValue(
                    f"{host!r} is not a valid IPv4 address; {expected}"
                )
            if ":" in host:
                raise InvalidValue(
                    f"{host!r} is not a valid IPv6 address; write IPv6"
                    " addresses in brackets, e.g. [2001:db8::10]:80"
                )
            if len(host) > 253 or not _HOSTNAME.match(host):
                raise InvalidValue(f"{host!r} is not a valid host name; {expected}")
    try:
        port = parse_port(port_text)
    except InvalidValue as error:
        raise InvalidValue(f"port of {text!r}: {error.message}")
    return host, port


def check_name(name: str, what: str) -> None:
    """
    Check a server or section name: letters, digits, C{- _ . :}, as in
    HAProxy.
    """
    if not _NAME.match(name):
        raise InvalidValue(
            f"{what} name {name!r} has characters that are not allowed;"
            " use letters, digits and - _ . :"
        )


def apply_options(spec: ServerSpec, options: Sequence[Option]) -> ServerSpec:
    """
    Fill C{spec}'s typed fields from C{options} (later words win) and record
    the options on it.
    """
    changes: Dict[str, Any] = {}
    for word, value in options:
        if word in _FLAG_FIELDS:
            field, flag = _FLAG_FIELDS[word]
            changes[field] = flag
        elif word in _VALUE_FIELDS and value is not None:
            changes[_VALUE_FIELDS[word]] = VALUE_OPTIONS[word](value)
    return attr.evolve(spec, options=tuple(options), **changes)


def mode_problems(server: ServerSpec, mode: str) -> List[str]:
    """
    What a server line may not say in a backend of C{mode}: the PROXY
    protocol is not sent to UDP servers.
    """
    if mode == "udp" and (server.send_proxy or server.check_send_proxy):
        return [
            "the PROXY protocol is not sent to UDP servers; remove"
            " send-proxy, send-proxy-v2 and check-send-proxy"
        ]
    return []


def parse_server(
    name: str, value: Optional[str], line: int, defaults: Sequence[Option] = ()
) -> Tuple[Optional[ServerSpec], List[str]]:
    """
    Parse one C{server NAME = ADDRESS:PORT [options]} entry.

    @param defaults: Options from C{default-server}; the server's own words
        come after them and therefore win.
    @return: The server (C{None} when its address is invalid) and one
        message per problem.
    """
    errors: List[str] = []
    try:
        check_name(name, "server")
    except InvalidValue as error:
        errors.append(error.message)
    usage = "expected 'server NAME = ADDRESS:PORT [options]'"
    if value is None or not value.strip():
        return None, errors + [f"missing address; {usage}"]
    try:
        words = split_words(value)
    except InvalidValue as error:
        return None, errors + [error.message]
    address: Optional[Tuple[str, int]] = None
    try:
        address = parse_address(words[0])
    except InvalidValue as error:
        errors.append(error.message)
    options, option_errors = parse_options(words[1:])
    errors.extend(option_errors)
    if address is None:
        return None, errors
    host, port = address
    spec = ServerSpec(
        name=name,
        host=host,
        port=port,
        address=host if is_ip_literal(host) else None,
        line=line,
    )
    merged = list(defaults) + options
    words_used = {word for word, _ in merged}
    if "agent-check" in words_used and "agent-port" not in words_used:
        errors.append("server option 'agent-check' needs 'agent-port N'")
    server = apply_options(spec, merged)
    if server.ssl or server.check_ssl:
        # Only then: it imports cryptography.
        from l4lb.config.tls import check_server_tls

        errors.extend(check_server_tls(server))
    return server, errors
