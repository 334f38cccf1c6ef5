"""
The configuration of C{mode udp}: its bind addresses, its keys' values and
the C{udp-check} rules.

A UDP bind is written like a TCP one (C{*:53}, C{[::]:53},
C{127.0.0.1:5353}) and becomes a L{BindSpec} whose C{endpoint} is
C{udp:PORT} or C{udp:PORT:interface=ADDRESS} (colons of an IPv6 address
escaped as in Twisted's descriptions); L{parse_udp_endpoint} reads it back.
"""

from __future__ import annotations

import binascii
import re
from typing import Callable, Dict, List, Mapping, Optional, Tuple, cast

import attr

from l4lb.config.binds import ENDPOINT_PREFIXES, haproxy_bind
from l4lb.config.errors import InvalidValue
from l4lb.config.model import BindSpec, UdpCheckSpec
from l4lb.config.units import parse_int

#: The C{udp-check} keys, in the order they are documented.
UDP_CHECK_KEYS = (
    "udp-check send",
    "udp-check send-binary",
    "udp-check expect",
    "udp-check dns",
)

#: DNS query types a C{udp-check dns} may ask for.
DNS_TYPES = ("A", "AAAA", "ANY", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT")

_UDP_ENDPOINT = re.compile(r"^udp:(?P<port>\d+)(?::interface=(?P<interface>.*))?$")
_NAME_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"^({_NAME_LABEL}\.)*{_NAME_LABEL}\.?$|^\.$")


def udp_bind(bind: BindSpec) -> BindSpec:
    """
    Turn a bind of a C{mode udp} frontend into its UDP form.

    @param bind: The bind as parsed for TCP, whose C{text} is what was
        written.
    @raise InvalidValue: When it is not an C{ADDRESS:PORT} (Twisted
        endpoint descriptions and UNIX sockets are stream-only).
    """
    text = bind.text or bind.endpoint
    prefix = text.split(":", 1)[0].lower() if ":" in text else ""
    if prefix in ENDPOINT_PREFIXES:
        raise InvalidValue(
            f"{text!r} cannot be used by a 'mode udp' frontend; a UDP bind is"
            " ADDRESS:PORT such as *:53, [::]:53 or 127.0.0.1:5353"
        )
    tcp = haproxy_bind(text)
    family, _, rest = tcp.partition(":")
    del family
    return attr.evolve(bind, endpoint="udp:" + rest)


def parse_udp_endpoint(description: str) -> Tuple[str, int]:
    """
    Read a C{udp:PORT[:interface=ADDRESS]} description.

    @return: The interface (C{""}: every IPv4 address) and the port.
    @raise ValueError: For anything else.
    """
    match = _UDP_ENDPOINT.match(description)
    if match is None:
        raise ValueError(f"{description!r} is not a UDP bind")
    interface = (match.group("interface") or "").replace("\\:", ":").replace("\\\\", "\\")
    return interface, int(match.group("port"))


def parse_count(text: str) -> int:
    """
    Parse C{udp-responses} or C{udp-requests}: 0 (no limit) or more.
    """
    return parse_int(text, 0)


def parse_send(text: str) -> bytes:
    """
    Parse C{udp-check send}: text sent as UTF-8, with C{\\n}, C{\\r},
    C{\\t}, C{\\0}, C{\\xHH} and C{\\\\} escapes.
    """
    return _unescape(text.strip())


def parse_hex(text: str) -> bytes:
    """
    Parse hexadecimal bytes; spaces between them are allowed.

    @raise InvalidValue: For odd length or non-hex characters.
    """
    compact = "".join(text.split())
    try:
        data = binascii.unhexlify(compact)
    except (binascii.Error, ValueError):
        raise InvalidValue(
            f"{text.strip()!r} is not hexadecimal bytes; expected pairs of"
            " hex digits such as 00ff10"
        )
    if not data:
        raise InvalidValue("expected at least one byte of hexadecimal, e.g. 00")
    return data


def parse_expect(text: str) -> Tuple[str, bytes]:
    """
    Parse C{udp-check expect}: C{any}, C{string TEXT} or C{binary HEX}.

    @return: The kind and the bytes a reply must contain.
    """
    kind, _, rest = text.strip().partition(" ")
    kind = kind.lower()
    if kind == "any" and not rest.strip():
        return "any", b""
    if kind == "string" and rest.strip():
        return "string", _unescape(rest.strip())
    if kind == "binary" and rest.strip():
        return "binary", parse_hex(rest)
    raise InvalidValue(
        f"{text.strip()!r} is not an expectation; allowed: any, string TEXT,"
        " binary HEX"
    )


def parse_dns(text: str) -> Tuple[str, str]:
    """
    Parse C{udp-check dns}: C{NAME [TYPE]}.

    @return: The name and the query type (C{A} by default).
    """
    words = text.split()
    if not 1 <= len(words) <= 2 or not _DNS_NAME.match(words[0]) or len(words[0]) > 253:
        raise InvalidValue(
            f"{text.strip()!r} is not a DNS query; expected NAME [TYPE] such as"
            " example.com or example.com AAAA"
        )
    kind = words[1].upper() if len(words) == 2 else "A"
    if kind not in DNS_TYPES:
        raise InvalidValue(
            f"unknown DNS query type {words[1]!r}; allowed: {', '.join(DNS_TYPES)}"
        )
    return words[0], kind


def build_udp_check(values: Mapping[str, object]) -> Tuple[Optional[UdpCheckSpec], List[str]]:
    """
    Combine the C{udp-check} values of a backend.

    @param values: Parsed values by key (from L{UDP_VALUES}).
    @return: The check (C{None} when no key is set) and one message per
        conflict.
    """
    errors: List[str] = []
    if not any(k in values for k in UDP_CHECK_KEYS):
        return None, errors
    sends = [k for k in ("udp-check send", "udp-check send-binary", "udp-check dns") if k in values]
    if len(sends) > 1:
        errors.append(
            f"only one of {', '.join(repr(k) for k in sends)} may be set: a UDP"
            " check sends one datagram"
        )
    spec = UdpCheckSpec()
    if "udp-check dns" in values:
        dns = cast(Tuple[str, str], values["udp-check dns"])
        spec = attr.evolve(spec, dns_name=dns[0], dns_type=dns[1])
    elif "udp-check send-binary" in values:
        spec = attr.evolve(spec, send=cast(bytes, values["udp-check send-binary"]))
    elif "udp-check send" in values:
        spec = attr.evolve(spec, send=cast(bytes, values["udp-check send"]))
    elif "udp-check expect" in values:
        errors.append(
            "'udp-check expect' needs something to send: set 'udp-check send',"
            " 'udp-check send-binary' or 'udp-check dns'"
        )
    if "udp-check expect" in values:
        expect = cast(Tuple[str, bytes], values["udp-check expect"])
        spec = attr.evolve(spec, expect=expect[0], pattern=expect[1])
    return spec, errors


_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0", "\\": b"\\"}
_HEX_ESCAPE = re.compile(r"[0-9A-Fa-f]{2}")


def _unescape(text: str) -> bytes:
    """
    Encode C{text} as UTF-8, turning each escape into its byte.
    """
    out = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            following = text[index + 1]
            if following in _ESCAPES:
                out += _ESCAPES[following]
                index += 2
                continue
            if following == "x" and _HEX_ESCAPE.fullmatch(text[index + 2 : index + 4]):
                out.append(int(text[index + 2 : index + 4], 16))
                index += 4
                continue
        out += char.encode("utf-8")
        index += 1
    return bytes(out)


#: Parsers of the values of the UDP keys.
UDP_VALUES: Dict[str, Callable[[str], object]] = {
    "maxsessions": lambda text: parse_int(text, 1),
    "udp-responses": parse_count,
    "udp-requests": parse_count,
    "udp-check send": parse_send,
    "udp-check send-binary": parse_hex,
    "udp-check expect": parse_expect,
    "udp-check dns": parse_dns,
}
