"""
HAProxy's C{roundrobin}: weighted round robin with dynamic weights.

Servers are served in proportion to their weights, interleaved rather than
in bursts (the "smooth" weighted round robin): with weights 5, 1 and 1 the
order is C{a a b a c a a}, not C{a a a a a b c}.  A weight changed at run
time (by the runtime API, an agent check or C{slowstart}) takes effect on
the next connection.

A pick costs O(log k + log n) for n servers of k distinct weights, rather
than a pass over every server: see L{RoundRobin}.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from heapq import heapify, heappop, heappush
from typing import Container, Dict, List, Optional, Set, Tuple

from l4lb.balancers.base import no_arguments
from l4lb.balancers.indexed import IndexedBalancer, Slot
from l4lb.balancers.tournament import Tournament
from l4lb.pool import Server

# Up to this many distinct weights, a pick compares the top server of each
# weight directly; beyond, a kinetic tournament finds it in O(log k).
COMPARE_WEIGHTS = 8

# A heap entry: minus the slot's base, its file order (both the sort key),
# the slot's version when pushed, and the slot.
_Entry = Tuple[float, int, int, Slot]


class _WeightClass:
    """
    The servers of one tier with the same weight.

    Their scores all grow by the same amount at each pick, so their order
    changes only for the server picked: a heap of their bases keeps it.
    Right after the scores are restarted every one of them has score zero,
    so they are in file order without a heap: L{fresh} lists them, and a
    server leaves it for the heap the first time its score changes.

    @ivar weight: The weight.
    @ivar members: The file orders of the slots inside, sorted.
    @ivar heap: Entries of the slots whose score changed since the restart.
    @ivar fresh: The file orders of the slots inside at the restart.
    @ivar next: The first position of L{fresh} not yet known to be stale.
    @ivar changed: The rotation's set of weights whose top server may have
        changed since the tournament last heard of them.
    @ivar top: Its top slot when the tournament last heard of it.
    """

    __slots__ = ("weight", "members", "heap", "fresh", "next", "changed", "top")

    def __init__(self, weight: int, changed: Set[int]) -> None:
        self.weight = weight
        self.members: List[int] = []
        self.heap: List[_Entry] = []
        self.fresh: List[int] = []
        self.next = 0
        self.changed = changed
        self.top: Optional[Slot] = None


class _Rotation:
    """
    The smooth rotation of one tier.

    A slot inside has score C{key + weight * steps}; its C{key} is the
    base.  A slot whose C{epoch} is not the rotation's has score zero (it
    was not touched since the last restart).  A slot outside keeps its
    score in C{key}.

    @ivar classes: The L{_WeightClass}es with a slot inside, by weight.
    @ivar steps: Picks that raised every score since the restart.
    @ivar epoch: How many times the scores were restarted.
    @ivar total: The sum of the weights of the slots inside.
    @ivar count: The number of slots inside.
    @ivar tree: The L{Tournament} of the top slots of the weights, used
        when there are more than L{COMPARE_WEIGHTS} of them.
    @ivar changed: The weights whose top slot may have changed since
        L{tree} last heard of them.
    """

    __slots__ = ("classes", "steps", "epoch", "total", "count", "tree", "changed")

    def __init__(self) -> None:
        self.classes: Dict[int, _WeightClass] = {}
        self.steps = 0
        self.epoch = 0
        self.total = 0
        self.count = 0
        self.tree = Tournament()
        self.changed: Set[int] = set()


class RoundRobin(IndexedBalancer):
    """
    Smooth weighted round robin.

    Each server has a running score, zero at the start.  At each pick every
    candidate's score grows by its weight, the candidate with the highest
    score wins (the first in file order on a tie) and its score drops by the
    candidates' total weight.  Over any run of picks in which the candidates
    and weights stay the same, each server is picked in proportion to its
    weight, and a cycle of C{sum(weights)} picks repeats exactly.  When a
    server comes up or goes down every score starts again from zero; a
    single candidate is returned without changing the scores.

    The growth is not applied server by server: the scores of the servers
    of one weight grow together, so each weight keeps its servers in a heap
    and the rotation counts the picks.  A pick finds the highest of the
    top servers of the k weights (comparing them when there are a few, with
    a L{Tournament} when there are more) and puts the winner back in its
    heap: O(log k + log n).  Building it costs O(n); restarting the scores
    costs a copy of each weight's list of servers, not a loop over them.
    """

    name = "roundrobin"
    needs_client_address = False

    @classmethod
    def check_args(cls, args: Tuple[str, ...]) -> None:
        """
        Refuse arguments: C{roundrobin} takes none.
        """
        no_arguments(cls.name, args)

    def build_index(self) -> None:
        """
        Create the rotations of the active and the backup servers.
        """
        self._rotations = (_Rotation(), _Rotation())

    # -- the index ---------------------------------------------------------------

    def fill(self, slots: List[Slot]) -> None:
        """
        Put C{slots} in their rotations at score zero: untouched, in file
        order, without a heap entry.
        """
        for slot in slots:
            rotation = self._rotations[slot.backup]
            weight = slot.weight = slot.server.weight
            weight_class = rotation.classes.get(weight)
            if weight_class is None:
                weight_class = rotation.classes[weight] = _WeightClass(weight, rotation.changed)
            weight_class.members.append(slot.order)
            rotation.total += weight
            rotation.count += 1
            slot.inside = True
        for rotation in self._rotations:
            for weight_class in rotation.classes.values():
                weight_class.fresh = list(weight_class.members)

    def enter(self, slot: Slot) -> None:
        """
        Put C{slot} in its rotation with the score it left with (zero if
        the scores restarted since).
        """
        rotation = self._rotations[slot.backup]
        weight = slot.server.weight
        score = slot.key if slot.epoch == rotation.epoch else 0
        slot.epoch = rotation.epoch
        slot.weight = weight
        slot.key = score - weight * rotation.steps
        weight_class = rotation.classes.get(weight)
        if weight_class is None:
            weight_class = rotation.classes[weight] = _WeightClass(weight, rotation.changed)
        insort(weight_class.members, slot.order)
        self._push(weight_class, slot)
        rotation.total += weight
        rotation.count += 1
        slot.inside = True

    def leave(self, slot: Slot) -> None:
        """
        Take C{slot} out of its rotation, keeping its score.
        """
        rotation = self._rotations[slot.backup]
        weight = slot.weight
        base = slot.key if slot.epoch == rotation.epoch else 0
        slot.key = base + weight * rotation.steps
        slot.epoch = rotation.epoch
        slot.version += 1
        weight_class = rotation.classes[weight]
        rotation.changed.add(weight)
        members = weight_class.members
        del members[bisect_left(members, slot.order)]
        if not members:
            del rotation.classes[weight]
        rotation.total -= weight
        rotation.count -= 1
        slot.inside = False

    def eligibility_changed(self) -> None:
        """
        Restart every score from zero, as when the backend started.
        """
        for rotation in self._rotations:
            rotation.steps = 0
            rotation.epoch += 1
            rotation.tree.clear()
            rotation.changed.clear()
            for weight_class in rotation.classes.values():
                weight_class.heap = []
                weight_class.fresh = list(weight_class.members)
                weight_class.next = 0

    def _push(self, weight_class: _WeightClass, slot: Slot) -> None:
        """
        Give C{slot} a new heap entry; its older ones become stale.
        """
        slot.version += 1
        weight_class.changed.add(weight_class.weight)
        heap = weight_class.heap
        heappush(heap, (-slot.key, slot.order, slot.version, slot))
        if len(heap) > 2 * len(weight_class.members) + 64:
            # Stale entries deep in the heap surface slowly: sweep them.
            heap[:] = [entry for entry in heap if entry[2] == entry[3].version]
            heapify(heap)

    def _top(self, rotation: _Rotation, weight_class: _WeightClass) -> Optional[Slot]:
        """
        Return the slot of C{weight_class} with the highest score (the
        first in file order on a tie), dropping stale entries on the way.
        """
        heap = weight_class.heap
        while heap and heap[0][2] != heap[0][3].version:
            heappop(heap)
        fresh = weight_class.fresh
        position = weight_class.next
        slots = self._order
        epoch = rotation.epoch
        while position < len(fresh) and slots[fresh[position]].epoch == epoch:
            position += 1
        weight_class.next = position
        if position == len(fresh):
            return heap[0][3] if heap else None
        untouched = slots[fresh[position]]
        if heap:
            key, order = heap[0][0], heap[0][1]
            # Untouched slots have a base of zero.
            if key < 0 or (key == 0 and order < untouched.order):
                return heap[0][3]
        return untouched

    def _best(self, rotation: _Rotation) -> Optional[Slot]:
        """
        Return the slot that wins the next step: the highest score once
        every score grew by its weight, the first in file order on a tie.
        """
        if len(rotation.classes) > COMPARE_WEIGHTS:
            return self._best_by_tree(rotation)
        steps = rotation.steps + 1
        epoch = rotation.epoch
        best = None
        best_score: float = 0
        for weight_class in rotation.classes.values():
            slot = self._top(rotation, weight_class)
            if slot is None:
                continue
            score = (slot.key if slot.epoch == epoch else 0) + weight_class.weight * steps
            if (
                best is None
                or score > best_score
                or (score == best_score and slot.order < best.order)
            ):
                best, best_score = slot, score
        return best

    def _best_by_tree(self, rotation: _Rotation) -> Optional[Slot]:
        """
        Return what L{_best} does, through the rotation's tournament: tell
        it of the weights whose top changed, then ask it.
        """
        tree = rotation.tree
        classes = rotation.classes
        weights = list(classes) if tree.stale else rotation.changed
        for weight in weights:
            weight_class = classes.get(weight)
            top = None if weight_class is None else self._top(rotation, weight_class)
            if weight_class is None or top is None:
                tree.remove(weight)
            else:
                weight_class.top = top
                base = top.key if top.epoch == rotation.epoch else 0
                tree.put(weight, int(base), top.order)
        rotation.changed.clear()
        weight = tree.best(rotation.steps + 1)
        return classes[weight].top if weight else None

    # -- the pick ------------------------------------------------------------------

    def choose(self, tier: int, avoid: Container[Server]) -> Optional[Server]:
        """
        Take one step of the rotation of C{tier} and return its winner.

        Servers in C{avoid} sit the step out (their scores do not grow),
        unless they are all that is left.
        """
        rotation = self._rotations[tier]
        held = self.held(tier, avoid)
        for slot in held:
            self._hold(rotation, slot)
        audited = False
        chosen: Optional[Slot] = None
        for _ in range(len(self.servers) + 3):
            count = rotation.count - len(held)
            if count <= 0:
                if held and not audited:
                    # A server may have come back without a hook.
                    self.audit(tier)
                    audited = True
                    held = [slot for slot in held if slot.inside]
                    continue
                if held:
                    # Only avoided servers are left: avoid none.
                    self._release(rotation, held)
                    held = []
                    avoid = ()
                    continue
                if audited or not self.audit(tier):
                    break
                audited = True
                continue
            best = self._best(rotation)
            if best is None:
                # Counted slots without entries: repair, then try again.
                if audited:
                    break
                self.audit(tier)
                audited = True
                held = [slot for slot in held if slot.inside]
                continue
            if not self.check(best):
                continue
            if avoid and best.server in avoid:
                self._hold(rotation, best)
                if best not in held:
                    held.append(best)
                continue
            chosen = best
            break
        if chosen is not None and count > 1:
            total = rotation.total
            for slot in held:
                # Held servers sit this step out: their scores stay.
                slot.key -= slot.weight
                total -= slot.weight
            rotation.steps += 1
            if chosen.epoch != rotation.epoch:
                chosen.key = 0
                chosen.epoch = rotation.epoch
            chosen.key -= total
            self._push(rotation.classes[chosen.weight], chosen)
        self._release(rotation, held)
        return None if chosen is None else chosen.server

    def _hold(self, rotation: _Rotation, slot: Slot) -> None:
        """
        Hide C{slot} from the next step without taking it out.
        """
        if slot.epoch != rotation.epoch:
            slot.key = 0
            slot.epoch = rotation.epoch
        slot.version += 1
        rotation.changed.add(slot.weight)

    def _release(self, rotation: _Rotation, held: List[Slot]) -> None:
        """
        Show the C{held} slots again.
        """
        for slot in held:
            if slot.inside:
                self._push(rotation.classes[slot.weight], slot)
