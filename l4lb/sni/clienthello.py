"""
Reading the server name from a TLS ClientHello, without terminating TLS.

A client's first flight is one or more TLS records (content type 22,
handshake) carrying one handshake message of type 1, the ClientHello
(RFC 8446 section 4.1.2; RFC 5246 section 7.4.1.2 for TLS 1.2).  The
message may be split over several records, and the records over several TCP
segments: a hello with post-quantum key shares is well over a kilobyte.
Its C{server_name} extension (RFC 6066 section 3) holds the name.

L{HelloReader} is fed the bytes received so far, each call with what the
previous one had plus what arrived since.  It only looks at each byte once:
it skips whole records by their headers, copies their payload, and parses
the message once all of it is there, so that a hello fed one byte at a time
costs time linear in its size.

No Twisted here: the reader is pure and takes bytes.
"""

from __future__ import annotations

import enum
import re
from typing import Optional, Union

import attr

#: The largest hello read by default, records included, in bytes.
DEFAULT_MAX_HELLO = 16384

_HANDSHAKE = 22
_CLIENT_HELLO = 1
_RECORD_HEADER = 5
#: The largest plaintext record payload TLS allows (2^14 bytes).
_MAX_RECORD = 16384
_SERVER_NAME = 0
_HOST_NAME = 0
_NAME = re.compile(rb"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


class Verdict(enum.Enum):
    """
    What the bytes read so far are, when they are not a whole hello.

    @cvar NEED_MORE: A hello may still follow: wait for more bytes.
    @cvar NOT_TLS: The first bytes are not a TLS handshake record.
    @cvar MALFORMED: TLS records, but not a well-formed ClientHello.
    @cvar TOO_BIG: The hello would be larger than the size cap.
    """

    NEED_MORE = "need more"
    NOT_TLS = "not TLS"
    MALFORMED = "malformed"
    TOO_BIG = "too big"


NEED_MORE = Verdict.NEED_MORE
NOT_TLS = Verdict.NOT_TLS
MALFORMED = Verdict.MALFORMED
TOO_BIG = Verdict.TOO_BIG


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ClientHello:
    """
    A whole, well-formed ClientHello.

    @ivar server_name: The host name of its C{server_name} extension,
        lowercased, or C{None} when it has none.
    @ivar size: How many bytes of the input its records took.
    """

    server_name: Optional[str]
    size: int


Outcome = Union[Verdict, ClientHello]


class _Malformed(Exception):
    """
    The message is not a well-formed ClientHello, for the reason given.
    """


class HelloReader:
    """
    Reads one client's first flight as it arrives.

    @ivar max_size: The largest hello accepted, in bytes of input.
    @ivar reason: Why the last outcome was not a hello, for logs; empty
        otherwise.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_HELLO) -> None:
        self.max_size = max_size
        self.reason = ""
        self._pos = 0
        self._message = bytearray()
        self._length: Optional[int] = None
        self._outcome: Outcome = NEED_MORE

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> Outcome:
        """
        Read what the client sent so far.

        @param data: Every byte received, from the first; each call's
            C{data} must start with the previous call's.
        @return: L{NEED_MORE}, L{NOT_TLS}, L{MALFORMED}, L{TOO_BIG} or the
            L{ClientHello}.  Once decided, the same outcome is returned.
        """
        if self._outcome is not NEED_MORE:
            return self._outcome
        self._outcome = self._read(data)
        return self._outcome

    def _fail(self, verdict: Verdict, reason: str) -> Verdict:
        self.reason = reason
        return verdict

    def _header(self, header: Union[bytes, bytearray, memoryview]) -> Optional[Verdict]:
        """
        Check the handshake message's type and length, and note its length.
        """
        if header[0] != _CLIENT_HELLO:
            return self._fail(MALFORMED, f"the first handshake message is of type {header[0]}, not ClientHello")
        self._length = 4 + ((header[1] << 16) | (header[2] << 8) | header[3])
        # The records' headers only add to the message's size.
        if self._length > self.max_size:
            return self._fail(TOO_BIG, f"the ClientHello is larger than {self.max_size} bytes")
        return None

    def _read(self, data: Union[bytes, bytearray, memoryview]) -> Outcome:
        pos = self._pos
        end = len(data)
        if pos == 0 and end:
            # Refuse a plain-text client on its first byte or two.
            if data[0] != _HANDSHAKE:
                return self._fail(NOT_TLS, "the client did not start with a TLS handshake record")
            if end > 1 and data[1] != 3:
                return self._fail(NOT_TLS, "the client's first record is not TLS (version 3.x)")
        message = self._message
        while end - pos >= _RECORD_HEADER:
            if data[pos] != _HANDSHAKE:
                return self._fail(MALFORMED, "a record of another type came before the whole ClientHello")
            if data[pos + 1] != 3:
                return self._fail(MALFORMED, "a record with a version other than 3.x")
            length = (data[pos + 3] << 8) | data[pos + 4]
            if length == 0 or length > _MAX_RECORD:
                return self._fail(MALFORMED, f"a handshake record of {length} bytes")
            if pos + _RECORD_HEADER + length > self.max_size:
                return self._fail(TOO_BIG, f"the ClientHello is larger than {self.max_size} bytes")
            if self._length is None and not message and length >= 4 and end - pos >= 9:
                # The message's header is in the first record: check it
                # before the rest of the record arrives.
                failed = self._header(data[pos + 5 : pos + 9])
                if failed is not None:
                    return failed
            if end - pos - _RECORD_HEADER < length:
                break
            message += data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
            pos += _RECORD_HEADER + length
            self._pos = pos
            if self._length is None and len(message) >= 4:
                failed = self._header(message[:4])
                if failed is not None:
                    return failed
            if self._length is not None and len(message) >= self._length:
                try:
                    name = _server_name(memoryview(message)[4 : self._length])
                except _Malformed as e:
                    return self._fail(MALFORMED, str(e))
                return ClientHello(name, pos)
        return NEED_MORE


class _Cursor:
    """
    Reads big-endian fields from a message, refusing to read past its end.
    """

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.view) - self.pos

    def number(self, size: int, what: str) -> int:
        if self.left < size:
            raise _Malformed(f"the ClientHello ends inside its {what}")
        value = int.from_bytes(self.view[self.pos : self.pos + size], "big")
        self.pos += size
        return value

    def vector(self, size: int, what: str, minimum: int = 0) -> memoryview:
        length = self.number(size, what + " length")
        if length < minimum or self.left < length:
            raise _Malformed(f"the ClientHello's {what} has a wrong length ({length})")
        value = self.view[self.pos : self.pos + length]
        self.pos += length
        return value


def _server_name(body: memoryview) -> Optional[str]:
    """
    Check a ClientHello's body and return its host name, if any.

    @raise _Malformed: When a length is inconsistent or a field is out of
        range.
    """
    cursor = _Cursor(body)
    if cursor.number(1, "version") != 3:
        raise _Malformed("the ClientHello's version is not 3.x")
    cursor.number(1, "version")
    if cursor.left < 32:
        raise _Malformed("the ClientHello ends inside its random")
    cursor.pos += 32
    if len(cursor.vector(1, "session id")) > 32:
        raise _Malformed("the ClientHello's session id is longer than 32 bytes")
    suites = cursor.vector(2, "cipher suites", minimum=2)
    if len(suites) % 2:
        raise _Malformed("the ClientHello's cipher suites have an odd length")
    cursor.vector(1, "compression methods", minimum=1)
    if not cursor.left:
        # A TLS 1.2 hello may have no extensions at all.
        return None
    extensions = _Cursor(cursor.vector(2, "extensions"))
    if cursor.left:
        raise _Malformed("bytes follow the ClientHello's extensions")
    name: Optional[str] = None
    seen = set()
    while extensions.left:
        kind = extensions.number(2, "extension type")
        value = extensions.vector(2, "extension")
        if kind in seen:
            raise _Malformed(f"the ClientHello has extension {kind} twice")
        seen.add(kind)
        if kind == _SERVER_NAME:
            name = _host_name(value)
    return name


def _host_name(value: memoryview) -> Optional[str]:
    """
    The host name of a C{server_name} extension's value, or C{None} when it
    names no host.
    """
    outer = _Cursor(value)
    names = _Cursor(outer.vector(2, "server name list", minimum=1))
    if outer.left:
        raise _Malformed("bytes follow the ClientHello's server name list")
    found: Optional[str] = None
    while names.left:
        kind = names.number(1, "server name type")
        name = bytes(names.vector(2, "server name", minimum=1))
        if kind != _HOST_NAME or found is not None:
            continue
        if len(name) > 255 or _NAME.fullmatch(name) is None:
            raise _Malformed("the ClientHello's server name is not a host name")
        found = name.decode("ascii").lower()
    return found


def parse_client_hello(
    data: Union[bytes, bytearray, memoryview], max_size: int = DEFAULT_MAX_HELLO
) -> Outcome:
    """
    Read a client's first bytes at once.

    @return: As for L{HelloReader.feed}.
    """
    return HelloReader(max_size).feed(data)
