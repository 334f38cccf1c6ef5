"""
HAProxy's C{leastconn}: the server with the fewest connections for its
weight.

A server's load is C{current / weight} (compared without dividing).  Among
servers of equal load the turn rotates: the scan starts just after the
server chosen last, so equal servers take turns instead of the first one
in the file taking every tie.  A pick is one pass over the candidates.
"""

from __future__ import annotations

from typing import Container, Optional, Tuple

from l4lb.balancers.base import BalancerBase, no_arguments
from l4lb.pool import Server


class LeastConnections(BalancerBase):
    """
    Weighted least connections with rotating ties.
    """

    name = "leastconn"
    needs_client_address = False

    def setup(self) -> None:
        """
        Build the algorithm's own state.
        """
        self._start = 0

    @classmethod
    def check_args(cls, args: Tuple[str, ...]) -> None:
        """
        Refuse arguments: C{leastconn} takes none.
        """
        no_arguments(cls.name, args)

    def pick(
        self, client_address: Optional[str], avoid: Container[Server] = ()
    ) -> Optional[Server]:
        """
        Return the candidate with the lowest C{current / weight}; on a tie,
        the first one at or after the rotating start.

        @param client_address: Ignored.
        @param avoid: Servers not to choose unless nothing else is left.
        """
        candidates = self.candidates(avoid)
        count = len(candidates)
        if count <= 1:
            return candidates[0] if candidates else None
        start = self._start % count
        best = candidates[start]
        best_index = start
        best_current, best_weight = best.current, best.weight
        index = start
        for _ in range(count - 1):
            index += 1
            if index == count:
                index = 0
            server = candidates[index]
            if server.current * best_weight < best_current * server.weight:
                best, best_index = server, index
                best_current, best_weight = server.current, server.weight
        self._start = best_index + 1
        return best
