"""
HAProxy's C{roundrobin}: weighted round robin with dynamic weights.

Servers are served in proportion to their weights, interleaved rather than
in bursts (the "smooth" weighted round robin): with weights 5, 1 and 1 the
order is C{a a b a c a a}, not C{a a a a a b c}.  Weights are read from
L{l4lb.pool.Server.weight} at every pick, so a weight changed at run time
(by the runtime API or an agent check) takes effect on the next connection.
"""

from __future__ import annotations

from typing import Container, Dict, Optional, Tuple

from l4lb.balancers.base import BalancerBase, no_arguments
from l4lb.pool import Server


class RoundRobin(BalancerBase):
    """
    Smooth weighted round robin over L{BalancerBase.candidates}.

    Each server has a running score, zero at the start.  At each pick every
    candidate's score grows by its weight, the candidate with the highest
    score wins (the first in file order on a tie) and its score drops by the
    candidates' total weight.  Over any run of picks in which the candidates
    and weights stay the same, each server is picked in proportion to its
    weight, and a cycle of C{sum(weights)} picks repeats exactly.

    A pick costs one pass over the backend's servers.
    """

    name = "roundrobin"
    needs_client_address = False

    def setup(self) -> None:
        """
        Build the algorithm's own state.
        """
        self._score: Dict[Server, int] = {s: 0 for s in self.servers}

    @classmethod
    def check_args(cls, args: Tuple[str, ...]) -> None:
        """
        Refuse arguments: C{roundrobin} takes none.
        """
        no_arguments(cls.name, args)

    def pick(
        self, client_address: Optional[str], avoid: Container[Server] = ()
    ) -> Optional[Server]:
        """
        Choose the next server in the weighted rotation.

        @param client_address: Ignored.
        @param avoid: Servers not to choose unless nothing else is left.
        @return: The chosen server, or C{None} when none may be chosen.
        """
        candidates = self.candidates(avoid)
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            return None
        score = self._score
        total = 0
        best = candidates[0]
        best_score = None
        for server in candidates:
            weight = server.weight
            current = score[server] + weight
            score[server] = current
            total += weight
            if best_score is None or current > best_score:
                best = server
                best_score = current
        score[best] -= total
        return best

    def server_up(self, server: Server) -> None:
        """
        Restart the rotation, so that a returning server starts from a fresh
        score instead of one left over from before it went away.
        """
        self._restart()

    def server_down(self, server: Server) -> None:
        """
        Restart the rotation over the servers that are left.
        """
        self._restart()

    def _restart(self) -> None:
        """
        Set every score back to zero.
        """
        for server in self._score:
            self._score[server] = 0
