"""
A consistent hash ring with weight-proportional points, and the
weight-proportional table of map-based hashing.

Both are plain sorted structures built from the servers' hash keys (see
L{l4lb.balancers.hashing}), never from their order in the file, so two
instances with the same servers build the same ring and the same table.
They are rebuilt by the balancer's hooks, not at each pick.
"""

from __future__ import annotations

from bisect import bisect_right
from fractions import Fraction
from typing import Dict, Iterable, List, Optional

from l4lb.balancers.hashing import server_hash_key, server_points
from l4lb.pool import Server

#: The number of points a ring aims at, over all its servers.  A server's
#: share of the ring deviates from its weight's share C{p} by about
#: C{sqrt(p * (1 - p) / points)} (for 2 equal servers and 65,536 points,
#: 0.2 percentage points), so more points spread keys more evenly, at the
#: cost of memory (about 50 bytes a point) and of rebuild time on weight
#: changes.
RING_POINTS = 65536

# Points carry the index of their server in their low bits, so that the
# ring is one sorted list of integers.
_INDEX_BITS = 20
_INDEX_MASK = (1 << _INDEX_BITS) - 1


def points_per_weight(total_weight: int, target: Optional[int] = None) -> int:
    """
    Return how many points a unit of weight gets on a ring whose servers'
    configured weights add up to C{total_weight}, so that the ring has about
    C{target} points (by default L{RING_POINTS}).  It is computed once from
    the configuration and kept while l4lb runs, so that servers going down,
    coming back or changing weight move only their own keys.
    """
    if target is None:
        target = RING_POINTS
    return max(1, -(-target // max(1, total_weight)))


class HashRing:
    """
    Servers placed on a ring of 64-bit positions, C{weight *
    points_per_weight} points each; a key belongs to the first point after
    its hash, going round.

    @ivar points_per_weight: Points per unit of weight.
    @ivar owners: The server of each point, in ring order.
    """

    def __init__(self, points_per_weight: int) -> None:
        self.points_per_weight = points_per_weight
        self.owners: List[Server] = []
        self._ring: List[int] = []
        self._cache: Dict[bytes, List[int]] = {}

    def build(self, servers: Iterable[Server]) -> None:
        """
        Place C{servers} on the ring by their current weight (a server of
        weight 0 has no point), replacing what was there.  Each server's
        points are computed once and kept, so a rebuild is one sort.
        """
        keyed = sorted(
            ((server_hash_key(s), s) for s in servers if s.weight > 0),
            key=lambda item: item[0],
        )
        ring: List[int] = []
        for index, (key, server) in enumerate(keyed):
            count = server.weight * self.points_per_weight
            cached = self._cache.get(key)
            if cached is None or len(cached) < count:
                cached = self._cache[key] = server_points(key, count)
            ring.extend([(p << _INDEX_BITS) | index for p in cached[:count]])
        ring.sort()
        owners = [s for _, s in keyed]
        self._ring = ring
        self.owners = [owners[entry & _INDEX_MASK] for entry in ring]

    @property
    def points(self) -> List[int]:
        """
        The points' positions, in ring order.
        """
        return [entry >> _INDEX_BITS for entry in self._ring]

    def __len__(self) -> int:
        return len(self._ring)

    def index(self, key_hash: int) -> int:
        """
        Return the index of the point a key of hash C{key_hash} belongs to:
        the first point after it, going round.  The ring must not be empty.
        """
        found = bisect_right(self._ring, (key_hash << _INDEX_BITS) | _INDEX_MASK)
        return 0 if found == len(self._ring) else found


def map_table(servers: Iterable[Server]) -> List[Server]:
    """
    Return the table of map-based hashing: each server C{weight} times,
    servers ordered by hash key and their turns interleaved, so that a key
    C{h} belongs to C{table[h % len(table)]}.
    """
    keyed = sorted(
        ((server_hash_key(s), s) for s in servers if s.weight > 0),
        key=lambda item: item[0],
    )
    slots = []
    for order, (_, server) in enumerate(keyed):
        weight = server.weight
        for k in range(weight):
            slots.append((Fraction(2 * k + 1, 2 * weight), order, server))
    slots.sort(key=lambda slot: (slot[0], slot[1]))
    return [server for _, _, server in slots]
