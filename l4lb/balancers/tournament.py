"""
A kinetic tournament: which of up to 256 lines is highest at a time that
only moves forward.

C{roundrobin} keeps the servers of each weight in a heap; the top server of
the heap of weight C{w} has score C{base + w * t} after C{t} picks, a line
whose slope is its weight.  The next winner is the highest of those lines
(the lowest file order on a tie).  Rather than comparing every weight at
every pick, a L{Tournament} keeps, at each node of a binary tree over the
weights, the winner of its two children and the first time at which the
loser overtakes it (its certificate).  A query at time C{t} recomputes only
the nodes whose certificate expired, and a changed line only its path to
the root: O(log k) node updates per pick for k weights, amortized, instead
of k comparisons.
"""

from __future__ import annotations

from typing import List

# A time that never comes.
NEVER = 1 << 62


class Tournament:
    """
    The highest of lines C{base[w] + w * t}, one per weight C{w} from 1 to
    L{size}, each present or not.

    @ivar size: The largest weight (a power of two).
    @ivar stale: Whether the tree must be built again from the lines
        (after L{clear}) at the next L{best}.
    """

    def __init__(self, size: int = 256) -> None:
        leaves = 1
        while leaves < size:
            leaves *= 2
        self.size = leaves
        self._base: List[int] = [0] * (leaves + 1)
        self._order: List[int] = [0] * (leaves + 1)
        # Node n's winner (a weight, 0 for none) and the first time at
        # which that may change without a line changing.
        self._winner: List[int] = [0] * (2 * leaves)
        self._expires: List[int] = [NEVER] * (2 * leaves)
        self._changed: List[int] = []
        self.stale = True

    def put(self, weight: int, base: int, order: int) -> None:
        """
        Make line C{weight} present with C{base}, its tie-breaking C{order}
        lower first.
        """
        if weight > self.size:
            self._grow(weight)
        self._base[weight] = base
        self._order[weight] = order
        self._winner[self.size + weight - 1] = weight
        self._changed.append(weight)

    def remove(self, weight: int) -> None:
        """
        Make line C{weight} absent.
        """
        if weight <= self.size:
            self._winner[self.size + weight - 1] = 0
            self._changed.append(weight)

    def clear(self) -> None:
        """
        Remove every line; the tree is built again at the next L{best}.
        """
        self._winner[self.size :] = [0] * self.size
        self._changed = []
        self.stale = True

    def best(self, time: int) -> int:
        """
        Return the weight whose line is highest at C{time} (the lowest
        order on a tie), or 0 when none is present.  C{time} must not go
        back, except after L{clear}.
        """
        if self.stale:
            self._changed = []
            for node in range(self.size - 1, 0, -1):
                self._combine(node, time)
            self.stale = False
        elif self._changed:
            for weight in self._changed:
                node = (self.size + weight - 1) // 2
                while node:
                    self._refresh(2 * node, time)
                    self._refresh(2 * node + 1, time)
                    self._combine(node, time)
                    node //= 2
            self._changed = []
        self._refresh(1, time)
        return self._winner[1]

    def _refresh(self, node: int, time: int) -> None:
        """
        Make C{node}'s winner right at C{time}: recompute the nodes below
        it whose certificates expired.
        """
        if self._expires[node] > time:
            return
        self._refresh(2 * node, time)
        self._refresh(2 * node + 1, time)
        self._combine(node, time)

    def _combine(self, node: int, time: int) -> None:
        """
        Set C{node}'s winner at C{time} from its children's, and when its
        certificate expires.
        """
        left, right = 2 * node, 2 * node + 1
        expires = self._expires
        soonest = expires[left] if expires[left] < expires[right] else expires[right]
        a, b = self._winner[left], self._winner[right]
        if not a or not b:
            self._winner[node] = a or b
            expires[node] = soonest
            return
        base, order = self._base, self._order
        key_a = base[a] + a * time
        key_b = base[b] + b * time
        if key_a > key_b or (key_a == key_b and order[a] < order[b]):
            high, low, lead = a, b, key_a - key_b
        else:
            high, low, lead = b, a, key_b - key_a
        self._winner[node] = high
        if low > high:
            # The steeper line catches up by low - high per unit of time.
            gap = low - high
            if order[low] < order[high]:
                steps = max(1, -(-lead // gap))
            else:
                steps = lead // gap + 1
            if time + steps < soonest:
                soonest = time + steps
        expires[node] = soonest

    def _grow(self, weight: int) -> None:
        """
        Make room for weights up to C{weight}; the tree is built again.
        """
        old_size = self.size
        leaves = old_size
        while leaves < weight:
            leaves *= 2
        present = self._winner[old_size:]
        self.size = leaves
        self._base += [0] * (leaves - old_size)
        self._order += [0] * (leaves - old_size)
        self._winner = [0] * (2 * leaves)
        self._winner[leaves : leaves + old_size] = present
        self._expires = [NEVER] * (2 * leaves)
        self._changed = []
        self.stale = True
