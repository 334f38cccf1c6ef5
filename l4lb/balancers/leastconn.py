"""
HAProxy's C{leastconn}: the server with the fewest connections for its
weight.

A server's load is C{current / weight}.  Among servers of equal load the
turn rotates: the server just chosen goes behind the others of its load,
so equal servers take turns instead of the first one in the file taking
every tie.  The servers are kept in a heap ordered by load, as HAProxy
keeps them in a tree: a pick, and each connection taken or ended, costs
O(log n).
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Container, List, Optional, Tuple

from l4lb.balancers.base import no_arguments
from l4lb.balancers.indexed import IndexedBalancer, Slot
from l4lb.pool import Server

# A heap entry: the load, a sequence number (both the sort key; the
# sequence rotates ties), the slot's version when pushed, and the slot.
_Entry = Tuple[float, int, int, Slot]


def _load(server: Server) -> float:
    """
    Return C{server}'s connections per unit of weight.

    A float division is exact enough: two loads with numerators below
    2**40 and weights up to 256 that differ, differ by far more than a
    float's rounding, and equal ones give equal floats.
    """
    return server.current / server.weight


class LeastConnections(IndexedBalancer):
    """
    Weighted least connections with rotating ties.
    """

    name = "leastconn"
    needs_client_address = False

    @classmethod
    def check_args(cls, args: Tuple[str, ...]) -> None:
        """
        Refuse arguments: C{leastconn} takes none.
        """
        no_arguments(cls.name, args)

    def build_index(self) -> None:
        """
        Create the heaps of the active and the backup servers.
        """
        self._heaps: Tuple[List[_Entry], List[_Entry]] = ([], [])
        self._counts = [0, 0]
        self._seq = 0

    # -- the index ---------------------------------------------------------------

    def fill(self, slots: List[Slot]) -> None:
        """
        Put C{slots} in their heaps, in file order among equal loads, and
        order each heap once.
        """
        for seq, slot in enumerate(slots, 1):
            server = slot.server
            slot.weight = server.weight
            slot.key = server.current / server.weight
            slot.seq = seq
            slot.version = 1
            slot.inside = True
            self._heaps[slot.backup].append((slot.key, seq, 1, slot))
            self._counts[slot.backup] += 1
        self._seq = len(slots)
        for heap in self._heaps:
            heapify(heap)

    def enter(self, slot: Slot) -> None:
        """
        Put C{slot} in its heap, behind the servers of equal load.
        """
        slot.weight = slot.server.weight
        self._push(slot, _load(slot.server))
        self._counts[slot.backup] += 1
        slot.inside = True

    def leave(self, slot: Slot) -> None:
        """
        Take C{slot} out of its heap.
        """
        slot.version += 1
        self._counts[slot.backup] -= 1
        slot.inside = False

    def rekey(self, slot: Slot) -> None:
        """
        Move C{slot} to its server's current load, behind the servers of
        equal load.
        """
        slot.weight = slot.server.weight
        self._push(slot, _load(slot.server))

    def _push(self, slot: Slot, load: float, seq: int = 0) -> None:
        """
        Give C{slot} a new heap entry at C{load}; its older ones become
        stale.  Without C{seq}, it goes behind every entry of that load.
        """
        if not seq:
            self._seq += 1
            seq = self._seq
        slot.key = load
        slot.seq = seq
        slot.version += 1
        heap = self._heaps[slot.backup]
        heappush(heap, (load, seq, slot.version, slot))
        if len(heap) > 2 * self._counts[slot.backup] + 64:
            # Stale entries deep in the heap surface slowly: sweep them.
            heap[:] = [entry for entry in heap if entry[2] == entry[3].version]
            heapify(heap)

    def _sync_load(self, server: Server) -> None:
        """
        Bring C{server}'s slot in line with it, then with its load.
        """
        slot = self._sync(server)
        if slot is not None and slot.inside and slot.key != _load(server):
            self.rekey(slot)

    def connection_taken(self, server: Server) -> None:
        """
        A connection to C{server} was counted: its load grew.
        """
        self._sync_load(server)

    def connection_dropped(self, server: Server) -> None:
        """
        A connection to C{server} ended: its load shrank.
        """
        self._sync_load(server)

    # -- the pick ------------------------------------------------------------------

    def choose(self, tier: int, avoid: Container[Server]) -> Optional[Server]:
        """
        Return the server of C{tier} with the lowest load; on a tie, the
        one that waited longest.
        """
        heap = self._heaps[tier]
        held = self.held(tier, avoid)
        for slot in held:
            slot.version += 1
        audited = False
        chosen: Optional[Slot] = None
        for _ in range(len(self.servers) + 3):
            if self._counts[tier] - len(held) <= 0:
                if not audited and (held or self._counts[tier] == 0):
                    # A server may have come back without a hook.
                    self.audit(tier)
                    audited = True
                    held = [slot for slot in held if slot.inside]
                    continue
                if not held:
                    break
                # Only avoided servers are left: avoid none.
                self._release(held)
                held = []
                avoid = ()
                continue
            while heap and heap[0][2] != heap[0][3].version:
                heappop(heap)
            if not heap:
                if audited:
                    break
                self.audit(tier)
                audited = True
                held = [slot for slot in held if slot.inside]
                continue
            best = heap[0][3]
            if not self.check(best):
                continue
            if best.key != _load(best.server):
                # Its count changed without a hook.
                self.rekey(best)
                continue
            if avoid and best.server in avoid:
                best.version += 1
                if best not in held:
                    held.append(best)
                continue
            chosen = best
            break
        if chosen is not None:
            # Behind the others of its load until its count changes.
            self._push(chosen, chosen.key)
        self._release(held)
        return None if chosen is None else chosen.server

    def _release(self, held: List[Slot]) -> None:
        """
        Show the C{held} slots again where they were.
        """
        for slot in held:
            if slot.inside:
                self._push(slot, slot.key, slot.seq)
