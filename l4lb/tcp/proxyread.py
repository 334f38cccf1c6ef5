"""
Reading a PROXY protocol header (versions 1 and 2) at the start of a
connection, with Twisted's parsers (C{twisted.protocols.haproxy}).

Twisted's parsers are private modules, reached through
L{l4lb._twistedcompat}; this is the one place l4lb uses them.  Around them it
adds what an untrusted byte stream needs: it decides from the first bytes
which version to expect, bounds the header's size (107 bytes for version 1,
as the specification says; L{MAX_V2} for version 2), accepts
C{PROXY UNKNOWN\\r\\n}, and checks the addresses and ports itself.  Every
failure is an L{InvalidHeader}; nothing else escapes.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Optional, Tuple

import attr

from l4lb._twistedcompat import V1Parser, V2Parser
from l4lb.proxyproto import V1_MAX, V2_SIGNATURE
from l4lb.tcp.stages import MAX_INSPECT

#: The longest version 2 header read: what the stages of a connection may
#: hold at most.  The specification allows up to 16 + 65535 bytes.
MAX_V2 = MAX_INSPECT

_V1_PREFIX = b"PROXY "
_UNKNOWN = b"PROXY UNKNOWN"

Endpoint = Tuple[str, int]


class InvalidHeader(Exception):
    """
    The bytes are not a valid PROXY protocol header.

    @ivar message: Why, for the log.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ProxyHeader:
    """
    A header read from the start of a connection.

    @ivar version: 1 or 2.
    @ivar length: How many bytes it took, which are not relayed.
    @ivar source: The client's C{(address, port)} it carries, or C{None}
        when it carries none (C{UNKNOWN}, C{LOCAL}, unspecified or UNIX
        family): the connection's own addresses are then used.
    @ivar destination: The C{(address, port)} the client connected to, or
        C{None} likewise.
    """

    version: int
    length: int
    source: Optional[Endpoint] = None
    destination: Optional[Endpoint] = None


def _starts_like(data: bytes, prefix: bytes) -> bool:
    """
    Whether C{data} begins with C{prefix}, or with a beginning of it when
    shorter.
    """
    return data[: len(prefix)] == prefix[: len(data)]


def read_header(data: bytes) -> Optional[ProxyHeader]:
    """
    Read a PROXY protocol header at the start of C{data}.

    @param data: Everything the client sent so far.
    @return: The header, or C{None} when C{data} is a valid beginning of
        one and more bytes are needed.
    @raise InvalidHeader: When C{data} does not start with a valid header.
    """
    if not data:
        return None
    if _starts_like(data, V2_SIGNATURE):
        return _read_v2(data)
    if _starts_like(data, _V1_PREFIX):
        return _read_v1(data)
    raise InvalidHeader("no PROXY protocol header (the connection does not start with one)")


def _read_v1(data: bytes) -> Optional[ProxyHeader]:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise InvalidHeader(f"PROXY v1 header without CRLF in its first {V1_MAX} bytes")
        if not all(32 <= c < 127 for c in data.rstrip(b"\r")):
            raise InvalidHeader(
                f"PROXY v1 header {_show(data)}: a byte that is not printable ASCII"
            )
        return None
    line = bytes(data[:end])
    length = end + 2
    if not all(32 <= c < 127 for c in line):
        raise InvalidHeader(f"PROXY v1 header {_show(line)}: a byte that is not printable ASCII")
    if line == _UNKNOWN or line.startswith(_UNKNOWN + b" "):
        return ProxyHeader(1, length)
    parts = line.split(b" ")
    if len(parts) != 6:
        raise InvalidHeader(f"PROXY v1 header {_show(line)}: expected 6 words")
    family, src, dst, sport, dport = parts[1:]
    if family not in (b"TCP4", b"TCP6"):
        raise InvalidHeader(f"PROXY v1 header {_show(line)}: unknown protocol")
    version = 4 if family == b"TCP4" else 6
    for text, what in ((src, "source"), (dst, "destination")):
        _check_ip(text, version, line, what)
    for text, what in ((sport, "source port"), (dport, "destination port")):
        if not (text.isdigit() and len(text) <= 5 and int(text) <= 65535):
            raise InvalidHeader(f"PROXY v1 header {_show(line)}: invalid {what}")
    try:
        info, rest = V1Parser().feed(line + b"\r\n")
    except Exception as e:
        raise InvalidHeader(f"PROXY v1 header {_show(line)}: {type(e).__name__}")
    if info is None or rest != b"":
        raise InvalidHeader(f"PROXY v1 header {_show(line)}: not understood")
    return ProxyHeader(1, length, _endpoint(info.source), _endpoint(info.destination))


def _read_v2(data: bytes) -> Optional[ProxyHeader]:
    if len(data) > 12 and data[12] >> 4 != 2:
        raise InvalidHeader(f"PROXY v2 header of version {data[12] >> 4}; expected 2")
    if len(data) < 16:
        return None
    (size,) = struct.unpack("!H", data[14:16])
    length = 16 + size
    if length > MAX_V2:
        raise InvalidHeader(f"PROXY v2 header of {length} bytes; at most {MAX_V2} are read")
    if len(data) < length:
        return None
    try:
        info, rest = V2Parser().feed(bytes(data[:length]))
    except Exception as e:
        raise InvalidHeader(
            f"PROXY v2 header (command/version 0x{data[12]:02x}, family 0x{data[13]:02x},"
            f" {size} bytes of addresses): {type(e).__name__}"
        )
    if info is None or rest != b"":
        raise InvalidHeader("PROXY v2 header not understood")
    return ProxyHeader(2, length, _endpoint(info.source), _endpoint(info.destination))


def _check_ip(text: bytes, version: int, line: bytes, what: str) -> None:
    try:
        address = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        address = None
    if address is None or address.version != version:
        raise InvalidHeader(f"PROXY v1 header {_show(line)}: invalid {what} address")


def _endpoint(address: object) -> Optional[Endpoint]:
    """
    An IP address's C{(host, port)}; C{None} for other kinds (UNIX).
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if not isinstance(host, str) or not isinstance(port, int):
        return None
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        return None


def _show(line: bytes) -> str:
    """
    A header line for a log message: printable, and short.
    """
    text = line[:V1_MAX].decode("ascii", "backslashreplace")
    return repr("".join(c if c.isprintable() else "?" for c in text))
