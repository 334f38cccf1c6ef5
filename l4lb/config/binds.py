"""
C{bind = ...}: where a frontend listens.

Two spellings are accepted, and several addresses may be separated by
commas or continuation lines:

  - HAProxy's C{ADDRESS:PORT}: C{*:80}, C{:80}, C{0.0.0.0:80},
    C{127.0.0.1:8080}, C{[::1]:8080}, C{[::]:80} or C{:::80};
  - a Twisted server endpoint description starting with a known prefix:
    C{tcp:8080:interface=127.0.0.1}, C{tcp6:...}, C{unix:/run/lb.sock},
    C{ssl:...}, C{systemd:domain=INET:index=0}.

Both become a L{l4lb.config.model.BindSpec} whose C{endpoint} is a Twisted
description.  Descriptions are checked by constructing the endpoint against
a L{MemoryReactor}, which parses without binding anything.
"""

from __future__ import annotations

import ipaddress
from typing import Dict, List, Optional, Sequence, Tuple

from l4lb.config.errors import InvalidValue
from l4lb.config.model import BindSpec
from l4lb.config.units import not_allowed, parse_int, parse_port

#: Twisted endpoint types recognised in a bind.
ENDPOINT_PREFIXES = ("ssl", "systemd", "tcp", "tcp6", "unix")

#: Words allowed after a bind address (HAProxy's bind options).
BIND_OPTIONS: Tuple[str, ...] = ("accept-proxy", "backlog", "crt", "ssl")
#: The largest listen backlog (C{listen(2)} takes a C int).
MAX_BACKLOG = 2**31 - 1
#: The bind options that take a value (the next word).
BIND_VALUE_OPTIONS: Tuple[str, ...] = ("backlog", "crt")

_EXPECTED = (
    "expected ADDRESS:PORT such as *:80, 127.0.0.1:8080 or [::1]:8080, or a"
    f" Twisted endpoint starting with {', '.join(p + ':' for p in ENDPOINT_PREFIXES)}"
)


def _escape(text: str) -> str:
    """
    Quote C{text} for a Twisted endpoint description.
    """
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def haproxy_bind(text: str) -> str:
    """
    Convert HAProxy's C{ADDRESS:PORT} into a Twisted endpoint description.

    @raise InvalidValue: For a missing or invalid address or port.
    """
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise InvalidValue(f"{text!r} is not a bind address; {_EXPECTED}")
        port_text = rest[1:]
        family = "tcp6"
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise InvalidValue(f"{text!r} has no port; {_EXPECTED}")
        family = ""
    try:
        port = parse_port(port_text)
    except InvalidValue as error:
        raise InvalidValue(f"port of {text!r}: {error.message}")
    if family == "" and host in ("", "*"):
        return f"tcp:{port}"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise InvalidValue(
            f"{host!r} is not an IP address; a bind address is an IPv4 or"
            " IPv6 address, * or empty (host names are not resolved for binds)"
        )
    if address.version == 4:
        if family:
            raise InvalidValue(f"{host!r} in brackets is not an IPv6 address")
        return f"tcp:{port}:interface={host}"
    return f"tcp6:{port}:interface={_escape(host)}"


def _check_systemd(description: str) -> None:
    """
    Check a C{systemd:} description without looking for inherited sockets,
    which only exist when systemd starts the service.
    """
    arguments = {}
    for part in description.split(":")[1:]:
        key, equals, value = part.partition("=")
        if not equals or key not in ("domain", "index", "name"):
            raise InvalidValue(
                f"{description!r}: unexpected {part!r}; a systemd endpoint"
                " takes domain=INET|INET6|UNIX and one of index=N or name=NAME"
            )
        arguments[key] = value
    if arguments.get("domain") not in ("INET", "INET6", "UNIX"):
        raise InvalidValue(
            f"{description!r}: domain must be one of INET, INET6, UNIX"
        )
    if ("index" in arguments) == ("name" in arguments):
        raise InvalidValue(
            f"{description!r}: give exactly one of index=N or name=NAME"
        )
    if "index" in arguments:
        parse_int(arguments["index"], 0)


def check_endpoint(description: str) -> str:
    """
    Check a Twisted server endpoint description without binding anything.

    @return: C{description} unchanged.
    @raise InvalidValue: With Twisted's reason.
    """
    if description.split(":", 1)[0].lower() == "systemd":
        _check_systemd(description)
        return description
    # Only for descriptions (rare): endpoints import TLS, MemoryReactor
    # twisted.trial.
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    try:
        endpoint = serverFromString(MemoryReactor(), description)
    except Exception as error:
        raise InvalidValue(
            f"{description!r} is not a valid endpoint description: {error}"
        )
    # Twisted accepts any integer port at construction time and fails only
    # when listening; check the range now.  Port 0 (any free port) is allowed
    # for descriptions, which embedding applications and tests use.
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise InvalidValue(
            f"{description!r}: port {port} is out of range; expected 0-65535"
        )
    return description


def parse_bind_item(text: str, line: int) -> BindSpec:
    """
    Parse one bind address (no commas).

    @raise InvalidValue: For an invalid address or words after it.
    """
    words = text.split()
    flags: Dict[str, Optional[str]] = {}
    index = 1
    while index < len(words):
        word = words[index]
        index += 1
        if word.lower() not in BIND_OPTIONS:
            raise InvalidValue(
                not_allowed(
                    f"unexpected {word!r} after {words[0]!r}: not a bind option"
                    " (separate addresses with commas)",
                    word.lower(),
                    BIND_OPTIONS,
                )
            )
        value = None
        if word.lower() in BIND_VALUE_OPTIONS:
            if index >= len(words):
                raise InvalidValue(f"bind option {word.lower()!r} needs a value")
            value = words[index]
            index += 1
        flags[word.lower()] = value
    address = words[0]
    prefix = address.split(":", 1)[0].lower() if ":" in address else ""
    if prefix in ENDPOINT_PREFIXES:
        endpoint = check_endpoint(address)
    else:
        endpoint = haproxy_bind(address)
    crt = None
    if "ssl" in flags or "crt" in flags:
        crt = _tls_crt(address, prefix in ENDPOINT_PREFIXES, flags)
    return BindSpec(
        endpoint=endpoint,
        text=address,
        line=line,
        accept_proxy="accept-proxy" in flags,
        crt=crt,
        backlog=_backlog(flags.get("backlog")),
    )


def _backlog(text: Optional[str]) -> int:
    """
    The value of a bind's C{backlog N} option; 0 when absent.

    @raise InvalidValue: For anything but an integer >= 1.
    """
    if text is None:
        return 0
    try:
        return parse_int(text, 1, MAX_BACKLOG)
    except InvalidValue as error:
        raise InvalidValue(f"bind option 'backlog': {error.message}")


def _tls_crt(address: str, described: bool, flags: Dict[str, Optional[str]]) -> str:
    """
    Check C{ssl crt PATH} on a bind and read its certificate file.

    @param described: Whether the bind is a Twisted endpoint description.
    @return: The certificate file's path.
    @raise InvalidValue: For C{ssl} without C{crt} or the reverse, on an
        endpoint description, or for an unusable certificate file.
    """
    crt = flags.get("crt")
    if described:
        raise InvalidValue(
            f"'ssl' and 'crt' apply to ADDRESS:PORT binds; {address!r} is a"
            " Twisted endpoint description: use ssl:PORT:privateKey=...:certKey=..."
            " or write the address as ADDRESS:PORT"
        )
    if "ssl" not in flags:
        raise InvalidValue(f"'crt' needs 'ssl' on the same bind: '{address} ssl crt {crt}'")
    if crt is None:
        raise InvalidValue(
            "'ssl' needs 'crt PATH': a PEM file with the certificate, its"
            " chain and the private key"
        )
    if "accept-proxy" in flags:
        raise InvalidValue(
            "'accept-proxy' cannot be combined with 'ssl': the PROXY header"
            " comes in clear before the TLS handshake, which l4lb does not read"
        )
    from l4lb.config.tls import load_certificate_file

    load_certificate_file(crt)
    return crt


def parse_binds(
    pieces: Sequence[Tuple[int, str]]
) -> Tuple[List[BindSpec], List[Tuple[int, str]]]:
    """
    Parse a bind value given as its lines.

    @param pieces: C{(line, text)} for each line of the value.
    @return: The binds in order, and C{(line, message)} per problem.
    """
    binds: List[BindSpec] = []
    errors: List[Tuple[int, str]] = []
    for line, text in pieces:
        for item in text.split(","):
            if not item.strip():
                continue
            try:
                binds.append(parse_bind_item(item.strip(), line))
            except InvalidValue as error:
                errors.append((line, error.message))
    if not binds and not errors:
        errors.append(
            (pieces[0][0] if pieces else 0, f"missing address; {_EXPECTED}")
        )
    return binds, errors
