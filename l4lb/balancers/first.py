"""
HAProxy's C{first}: the first server, by id, that has a free slot.

Servers are ordered by their C{id} server option when they have one, and
otherwise by their position in the file (the N-th server counts as id N),
as HAProxy numbers servers.  Each new connection goes to the first usable
server in that order, so that servers beyond the first ones stay idle
while the first ones have room (set C{maxconn} on them): useful to let
unused servers be powered down.  Weights are ignored, except that a
weight of 0 takes no new connections.
"""

from __future__ import annotations

from typing import Container, List, Optional, Sequence, Tuple

from l4lb.balancers.base import BalancerBase, no_arguments
from l4lb.pool import Server


def by_id(servers: Sequence[Server]) -> List[Server]:
    """
    Return C{servers} ordered by their C{id} option, those without one
    counting as their 1-based position in C{servers}; equal ids keep file
    order.
    """

    def server_id(item: Tuple[int, Server]) -> Tuple[int, int]:
        position, server = item
        number = position + 1
        for word, value in server.spec.options:
            if word == "id" and value is not None:
                number = int(value)
        return number, position

    return [s for _, s in sorted(enumerate(servers), key=server_id)]


class First(BalancerBase):
    """
    The first usable server by id.
    """

    name = "first"
    needs_client_address = False

    def setup(self) -> None:
        """
        Build the algorithm's own state.
        """
        self._ordered = (by_id(self._active), by_id(self._backups))

    @classmethod
    def check_args(cls, args: Tuple[str, ...]) -> None:
        """
        Refuse arguments: C{first} takes none.
        """
        no_arguments(cls.name, args)

    def pick(
        self, client_address: Optional[str], avoid: Container[Server] = ()
    ) -> Optional[Server]:
        """
        Return the first usable server by id.

        @param client_address: Ignored.
        @param avoid: Servers not to choose unless nothing else is left.
        """
        if self.active_in_use():
            ordered = self._ordered[0]
        elif self.allbackups:
            ordered = self._ordered[1]
        else:
            return self.fallback(avoid)
        for server in ordered:
            if server.eligible and not server.full and server not in avoid:
                return server
        found = [s for s in ordered if s.eligible and not s.full]
        return found[0] if found else None
