"""
HAProxy's C{static-rr}: weighted round robin with the weights of the
configuration.

The order of a whole cycle is computed once, when the balancer is built:
each server appears as many times as its configured weight, spread evenly
over the cycle (a server of weight C{w} at positions C{(k + 1/2) / w}).  A
pick moves a cursor along the cycle and skips servers that may not be
chosen now, so a pick costs O(1) while most servers are usable.  Weights
changed at run time are ignored, as in HAProxy, except that a weight of 0
still stops new connections.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Container, List, Optional, Sequence, Tuple

from l4lb.balancers.base import BalancerBase, no_arguments
from l4lb.pool import Server


def static_cycle(servers: Sequence[Server]) -> List[Server]:
    """
    Return one cycle of weighted turns over C{servers}, by their configured
    weights: server C{s} appears C{s.spec.weight} times, evenly spread; on
    equal positions the earlier server in C{servers} goes first.
    """
    slots = []
    for index, server in enumerate(servers):
        weight = server.spec.weight
        for k in range(weight):
            slots.append((Fraction(2 * k + 1, 2 * weight), index, server))
    slots.sort(key=lambda slot: (slot[0], slot[1]))
    return [server for _, _, server in slots]


class StaticRoundRobin(BalancerBase):
    """
    Round robin over a cycle fixed by the configured weights.

    The active and backup servers have a cycle each; the cursor of the
    cycle in use moves one step past each server it returns.
    """

    name = "static-rr"
    needs_client_address = False
    # As HAProxy's: weights are fixed, so slowstart only ramps maxconn.
    dynamic_weights = False

    def setup(self) -> None:
        """
        Build the algorithm's own state.
        """
        self._cycles = (static_cycle(self._active), static_cycle(self._backups))
        self._cursors = [0, 0]

    @classmethod
    def check_args(cls, args: Tuple[str, ...]) -> None:
        """
        Refuse arguments: C{static-rr} takes none.
        """
        no_arguments(cls.name, args)

    def pick(
        self, client_address: Optional[str], avoid: Container[Server] = ()
    ) -> Optional[Server]:
        """
        Return the next usable server of the cycle in use.

        @param client_address: Ignored.
        @param avoid: Servers not to choose unless nothing else is left.
        """
        if self.active_in_use():
            which = 0
        elif self.allbackups:
            which = 1
        else:
            return self.fallback(avoid)
        cycle = self._cycles[which]
        size = len(cycle)
        cursor = self._cursors[which]
        for _ in range(size):
            server = cycle[cursor]
            cursor += 1
            if cursor == size:
                cursor = 0
            if server.eligible and not server.full and server not in avoid:
                self._cursors[which] = cursor
                return server
        return self.fallback(avoid)
