"""
HAProxy's C{random} and C{random(N)}: power of N choices.

Each pick draws C{N} usable servers at random, each with a probability in
proportion to its weight, and keeps the least loaded of them (fewest
connections for its weight; on a tie, the one drawn first).  C{random(1)}
is plain weighted random; the default, C{random} alone, draws 2, as in
HAProxy.  A draw is a binary search in the cumulative weights, rebuilt by
the hooks when servers change.
"""

from __future__ import annotations

import random as _random
from bisect import bisect_right
from typing import Container, List, Optional, Sequence, Tuple

from l4lb.balancers.base import BalancerArgumentError, BalancerBase
from l4lb.pool import Server

#: Draws when C{random} is written without a number.
DEFAULT_DRAWS = 2
#: The largest number of draws accepted.
MAX_DRAWS = 100

# Draws of an unusable server tolerated before drawing among the
# candidates instead.
_RETRIES = 8


class Random(BalancerBase):
    """
    Weighted random with power of N choices.

    @ivar draws: Servers drawn for each pick.
    """

    name = "random"
    needs_client_address = False

    def __init__(
        self,
        servers: Sequence[Server],
        args: Tuple[str, ...] = (),
        allbackups: Optional[bool] = None,
        rng: Optional[_random.Random] = None,
    ) -> None:
        """
        @param servers: The backend's servers, in file order.
        @param args: Empty, or the number of draws.
        @param allbackups: See L{BalancerBase}.
        @param rng: The random number generator; by default one seeded by
            the operating system.  Tests pass a seeded one.
        @raise BalancerArgumentError: When C{args} is not one integer from
            1 to L{MAX_DRAWS}.
        """
        super().__init__(servers, args, allbackups)
        self.draws = int(args[0]) if args else DEFAULT_DRAWS
        self._random = (rng or _random.Random()).random
        self._tiers = (self._active, self._backups)
        self._members: List[List[Server]] = [[], []]
        self._cumulative: List[List[int]] = [[], []]
        for tier in (0, 1):
            self._rebuild(tier)

    @classmethod
    def check_args(cls, args: Tuple[str, ...]) -> None:
        """
        Accept nothing or one integer from 1 to L{MAX_DRAWS}.
        """
        if not args:
            return
        if len(args) == 1 and args[0].isdigit() and 1 <= int(args[0]) <= MAX_DRAWS:
            return
        raise BalancerArgumentError(
            cls.name,
            args,
            f"expected one number of draws from 1 to {MAX_DRAWS}, as in random(2)",
        )

    def _rebuild(self, tier: int) -> None:
        """
        Rebuild the cumulative weights of one tier's eligible servers.
        """
        members = [s for s in self._tiers[tier] if s.eligible]
        cumulative = []
        total = 0
        for server in members:
            total += server.weight
            cumulative.append(total)
        self._members[tier] = members
        self._cumulative[tier] = cumulative

    def _draw(self, members: List[Server], cumulative: List[int]) -> Server:
        return members[bisect_right(cumulative, self._random() * cumulative[-1])]

    def pick(
        self, client_address: Optional[str], avoid: Container[Server] = ()
    ) -> Optional[Server]:
        """
        Draw C{draws} usable servers and return the least loaded.

        @param client_address: Ignored.
        @param avoid: Servers not to choose unless nothing else is left.
        """
        if self.active_in_use():
            tier = 0
        elif self.allbackups:
            tier = 1
        else:
            return self.fallback(avoid)
        members = self._members[tier]
        cumulative = self._cumulative[tier]
        best: Optional[Server] = None
        for _ in range(self.draws):
            server = None
            if cumulative:
                for _ in range(_RETRIES):
                    drawn = self._draw(members, cumulative)
                    if drawn.eligible and not drawn.full and drawn not in avoid:
                        server = drawn
                        break
            if server is None:
                server = self._draw_candidate(avoid)
                if server is None:
                    return None
            if best is None or server.current * best.weight < best.current * server.weight:
                best = server
        return best

    def _draw_candidate(self, avoid: Container[Server]) -> Optional[Server]:
        """
        Draw among L{candidates} by weight: the slow way, when the index
        keeps offering servers that may not be chosen.
        """
        candidates = self.candidates(avoid)
        if not candidates:
            return None
        cumulative = []
        total = 0
        for server in candidates:
            total += server.weight
            cumulative.append(total)
        return self._draw(candidates, cumulative)

    def _tier_of(self, server: Server) -> int:
        return 1 if server.spec.backup else 0

    def server_up(self, server: Server) -> None:
        """
        Add C{server} to its tier's draws.
        """
        self._rebuild(self._tier_of(server))

    def server_down(self, server: Server) -> None:
        """
        Remove C{server} from its tier's draws.
        """
        self._rebuild(self._tier_of(server))

    def weight_changed(self, server: Server) -> None:
        """
        Redraw C{server}'s tier with its new weight.
        """
        self._rebuild(self._tier_of(server))
