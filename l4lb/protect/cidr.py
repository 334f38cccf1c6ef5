"""
Sets of IPv4 and IPv6 address ranges, matched fast however many there are.

Each range is turned once into a pair of integers (its first and last
address); overlapping and adjacent ranges are merged, and a lookup is one
bisection in the sorted starts of the address's family: a few microseconds
for 10,000 ranges or a million.  An IPv4-mapped IPv6 address
(C{::ffff:10.1.2.3}, what a dual-stack socket reports for an IPv4 client)
is matched as the IPv4 address it carries, and so is an IPv4-mapped range.
"""

from __future__ import annotations

import ipaddress
import socket
from bisect import bisect_right
from typing import Iterable, List, Optional, Tuple, Union

import attr

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: An address as a lookup key: its family (4 or 6) and its integer value.
AddressKey = Tuple[int, int]

_MAPPED_PREFIX = 0xFFFF << 32
_MAPPED_MASK = ~0xFFFFFFFF & ((1 << 128) - 1)


def address_key(host: str) -> Optional[AddressKey]:
    """
    The lookup key of an address written as text, or C{None} when the text
    is not an IP address (a UNIX socket's peer).

    An IPv4-mapped IPv6 address gives the key of its IPv4 address; an IPv6
    zone (C{fe80::1%eth0}) is ignored.
    """
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
    except (OSError, ValueError):
        pass
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0]), "big")
    except (OSError, ValueError):
        return None
    if value & _MAPPED_MASK == _MAPPED_PREFIX:
        return 4, value & 0xFFFFFFFF
    return 6, value


#: A range as C{(family, first, last)}.
Range = Tuple[int, int, int]


def parse_range(text: str) -> Range:
    """
    Read a range or an address (C{10.0.0.0/8}, C{192.0.2.7},
    C{2001:db8::/32}) as C{(family, first, last)}; host bits are ignored
    and an IPv4-mapped IPv6 range is the IPv4 range it maps.

    Several times faster than C{ipaddress.ip_network}, for lists of
    hundreds of thousands of ranges.

    @raise ValueError: For text that is neither.
    """
    address, slash, prefix_text = text.partition("/")
    if ":" in address:
        family, width = 6, 128
        try:
            packed = socket.inet_pton(socket.AF_INET6, address)
        except (OSError, ValueError):
            raise ValueError(f"{text!r} is not an address or a range")
    else:
        family, width = 4, 32
        # inet_pton refuses leading zeros and short forms (10.1), as ipaddress does.
        try:
            packed = socket.inet_pton(socket.AF_INET, address)
        except (OSError, ValueError):
            raise ValueError(f"{text!r} is not an address or a range")
    prefix = width
    if slash:
        if not (prefix_text.isdigit() and prefix_text.isascii() and len(prefix_text) <= 3):
            raise ValueError(f"{text!r}: the prefix length is not a number")
        prefix = int(prefix_text)
        if prefix > width:
            raise ValueError(f"{text!r}: the prefix length is above {width}")
    value = int.from_bytes(packed, "big")
    host_bits = width - prefix
    first = value >> host_bits << host_bits
    last = first | ((1 << host_bits) - 1)
    if family == 6 and prefix >= 96 and first & _MAPPED_MASK == _MAPPED_PREFIX:
        return 4, first & 0xFFFFFFFF, last & 0xFFFFFFFF
    return family, first, last


def _network_range(network: Network) -> Tuple[int, int, int]:
    """
    The family, first and last address of a range, IPv4-mapped IPv6
    ranges as IPv4.
    """
    first = int(network.network_address)
    last = int(network.broadcast_address)
    if network.version == 6 and first & _MAPPED_MASK == _MAPPED_PREFIX and network.prefixlen >= 96:
        return 4, first & 0xFFFFFFFF, last & 0xFFFFFFFF
    return network.version, first, last


def _merge(ranges: List[Tuple[int, int]]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    ranges.sort()
    starts: List[int] = []
    ends: List[int] = []
    for first, last in ranges:
        if ends and first <= ends[-1] + 1:
            if last > ends[-1]:
                ends[-1] = last
        else:
            starts.append(first)
            ends.append(last)
    return tuple(starts), tuple(ends)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AddressSet:
    """
    A set of address ranges of both families, as sorted disjoint integer
    ranges.

    @ivar v4_starts: The first address of each IPv4 range, ascending.
    @ivar v4_ends: The last address of each IPv4 range, in the same order.
    @ivar v6_starts: As C{v4_starts}, for IPv6.
    @ivar v6_ends: As C{v4_ends}, for IPv6.
    @ivar count: How many ranges were given (before merging), for display.
    """

    v4_starts: Tuple[int, ...] = ()
    v4_ends: Tuple[int, ...] = ()
    v6_starts: Tuple[int, ...] = ()
    v6_ends: Tuple[int, ...] = ()
    count: int = 0

    @classmethod
    def from_ranges(cls, ranges: Iterable[Range]) -> "AddressSet":
        """
        Build a set from C{(family, first, last)} ranges (L{parse_range}).
        """
        v4: List[Tuple[int, int]] = []
        v6: List[Tuple[int, int]] = []
        for family, first, last in ranges:
            (v4 if family == 4 else v6).append((first, last))
        v4_starts, v4_ends = _merge(v4)
        v6_starts, v6_ends = _merge(v6)
        return cls(v4_starts, v4_ends, v6_starts, v6_ends, len(v4) + len(v6))

    @classmethod
    def from_networks(cls, networks: Iterable[Network]) -> "AddressSet":
        """
        Build a set from C{ipaddress} networks.
        """
        return cls.from_ranges(_network_range(network) for network in networks)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "AddressSet":
        """
        Build a set from ranges and addresses written as text (C{10.0.0.0/8},
        C{192.0.2.7}, C{2001:db8::/32}); host bits are ignored.

        @raise ValueError: For text that is neither.
        """
        return cls.from_ranges(parse_range(text) for text in texts)

    def union(self, other: "AddressSet") -> "AddressSet":
        """
        A set holding the ranges of both.
        """
        v4_starts, v4_ends = _merge(
            list(zip(self.v4_starts, self.v4_ends)) + list(zip(other.v4_starts, other.v4_ends))
        )
        v6_starts, v6_ends = _merge(
            list(zip(self.v6_starts, self.v6_ends)) + list(zip(other.v6_starts, other.v6_ends))
        )
        return AddressSet(v4_starts, v4_ends, v6_starts, v6_ends, self.count + other.count)

    def contains_key(self, key: AddressKey) -> bool:
        """
        Whether the address of C{key} (L{address_key}) is in a range.
        """
        family, value = key
        if family == 4:
            starts, ends = self.v4_starts, self.v4_ends
        else:
            starts, ends = self.v6_starts, self.v6_ends
        index = bisect_right(starts, value) - 1
        return index >= 0 and value <= ends[index]

    def __contains__(self, host: object) -> bool:
        """
        Whether an address written as text is in a range; text that is not
        an address is in none.
        """
        if not isinstance(host, str):
            return False
        key = address_key(host)
        return key is not None and self.contains_key(key)
