"""
The hashes that hashing algorithms share, fixed so that every l4lb instance
computes the same ones.

Python's C{hash()} is salted per process, so it is never used: every value
here is the first 8 bytes of BLAKE2b (C{hashlib.blake2b(data,
digest_size=8)}), read as a big-endian unsigned 64-bit integer.

A client is hashed by its address in binary form (4 bytes for IPv4, 16 for
IPv6; an IPv4-mapped IPv6 address such as C{::ffff:192.0.2.1} counts as the
IPv4 address), so that the text form of an address does not matter.

A server is hashed by its B{hash key}, which by default is its name, never
its position in the file: two balancers whose files list the same servers in
another order agree.  The server option C{hash-key} chooses another key:
C{name} (the default), C{addr} (the IP address) or C{addr-port} (the address
and port).
"""

from __future__ import annotations

import socket
import struct
from hashlib import blake2b
from typing import List, Optional

from l4lb.pool import Server

__all__ = [
    "HASH_KEYS",
    "client_hash",
    "client_key",
    "hash64",
    "server_hash_key",
    "server_points",
]

#: The values of the server option C{hash-key}.
HASH_KEYS = ("name", "addr", "addr-port")

_MAPPED_V4 = "::ffff:"
_WORDS = struct.Struct(">4Q")


def hash64(data: bytes) -> int:
    """
    Return the 64-bit hash of C{data}: BLAKE2b with an 8-byte digest, read
    big-endian.
    """
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


def _packed(address: str) -> Optional[bytes]:
    """
    Return an IP address in binary form, or C{None} when it is not one.
    """
    try:
        if ":" in address:
            if address.startswith(_MAPPED_V4) and "." in address:
                return socket.inet_pton(socket.AF_INET, address[len(_MAPPED_V4):])
            return socket.inet_pton(socket.AF_INET6, address)
        return socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError):
        return None


def client_key(address: Optional[str]) -> bytes:
    """
    Return the bytes a client address is hashed by: the address in binary
    form, or its UTF-8 text when it is not an IP address (a UNIX socket),
    or nothing when there is no address.
    """
    if not address:
        return b""
    packed = _packed(address)
    return packed if packed is not None else address.encode("utf-8")


def client_hash(address: Optional[str]) -> int:
    """
    Return the 64-bit hash of a client address (see L{client_key}).
    """
    return hash64(client_key(address))


def server_hash_key(server: Server) -> bytes:
    """
    Return the bytes that place C{server} in hash tables and rings, chosen
    by its C{hash-key} option (the last one written wins): its name by
    default, its address with C{addr}, its address and port with
    C{addr-port}.  An unresolved address falls back to the host as written.
    """
    kind = "name"
    for word, value in server.spec.options:
        if word == "hash-key" and value is not None:
            kind = value.lower()
    if kind == "name":
        return b"name:" + server.name.encode("utf-8")
    host = server.address or server.spec.host
    packed = _packed(host)
    key = packed if packed is not None else host.encode("utf-8")
    if kind == "addr-port":
        return b"addr-port:" + key + server.port.to_bytes(2, "big")
    return b"addr:" + key


def server_points(key: bytes, count: int) -> List[int]:
    """
    Return the first C{count} points of a server on a 64-bit hash ring.

    Points come four at a time: points C{4j} to C{4j + 3} are the four
    big-endian 8-byte words of BLAKE2b-256 of C{key} followed by C{j} as 4
    big-endian bytes.  A server with a greater weight keeps the points it
    had with a smaller one and adds more, so a weight change moves only the
    keys of the points added or removed.
    """
    points: List[int] = []
    for block in range(-(-count // 4)):
        digest = blake2b(key + block.to_bytes(4, "big"), digest_size=32).digest()
        points.extend(_WORDS.unpack(digest))
    del points[count:]
    return points
