"""
HAProxy's C{source}: the server is chosen by a hash of the client's
address, so a client keeps going to the same server while the servers do.

The backend's C{hash-type} chooses how hashes map to servers:

- C{map-based} (the default): a table where each eligible server appears
  as many times as its weight (see L{l4lb.balancers.ring.map_table}); a
  client goes to entry C{hash % size}.  Weights are honoured exactly, but
  when a server goes down or comes back most clients change server.
- C{consistent}: a hash ring (L{l4lb.balancers.ring.HashRing}) with points
  in proportion to weight; a client goes to the first point after its
  hash.  When a server goes down only its clients move, to the next
  servers on the ring, and they come back when it does.

With C{hash-type = consistent}, C{hash-balance-factor = F} bounds the load:
walking the ring from the client's point, a server is skipped when taking
the connection would put it above C{F}% of the average load for its weight
(C{current * 100 * total_weight >= F * (total_current + 1) * weight}).

When the client's server may not take the connection (full, avoided on a
retry), the next entry of the table or ring is tried, so that a client's
fallback server is stable too.  Both structures are built from the
servers' hash keys, never from their order in the file.
"""

from __future__ import annotations

from typing import Any, Container, List, Optional, Sequence, Tuple

from l4lb.balancers.base import BalancerBase, backend_setting, no_arguments
from l4lb.balancers.hashing import client_hash, server_hash_key
from l4lb.balancers.ring import HashRing, map_table, points_per_weight
from l4lb.pool import Server

MAP_BASED = "map-based"
CONSISTENT = "consistent"


class Source(BalancerBase):
    """
    Client address hashing, map-based or consistent, with optional bounded
    load.

    @ivar hash_type: C{"map-based"} or C{"consistent"}.
    @ivar balance_factor: The bounded-load factor in percent; 0 when off
        (always 0 with map-based hashing).
    """

    name = "source"
    needs_client_address = True

    def __init__(
        self,
        servers: Sequence[Server],
        args: Tuple[str, ...] = (),
        allbackups: Optional[bool] = None,
        hash_type: Optional[str] = None,
        balance_factor: Optional[int] = None,
    ) -> None:
        """
        @param servers: The backend's servers, in file order.
        @param args: Must be empty.
        @param allbackups: See L{BalancerBase}.
        @param hash_type: C{"map-based"} or C{"consistent"}; C{None} takes
            the backend's C{hash-type}.
        @param balance_factor: The bounded-load factor in percent (0 or at
            least 100); C{None} takes the backend's C{hash-balance-factor}.
        @raise l4lb.balancers.base.BalancerArgumentError: When C{args} is
            not empty.
        """
        super().__init__(servers, args, allbackups)
        if hash_type is None:
            hash_type = backend_setting(self.servers, "hash_type", MAP_BASED)
        if balance_factor is None:
            balance_factor = backend_setting(self.servers, "hash_balance_factor", 0)
        if hash_type not in (MAP_BASED, CONSISTENT):
            raise ValueError(f"unknown hash-type {hash_type!r}; allowed: map-based, consistent")
        self.hash_type = hash_type
        # As HAProxy's: a map-based table is rebuilt on a weight change,
        # which moves clients, so slowstart only ramps maxconn there.
        self.dynamic_weights = hash_type == CONSISTENT
        self.balance_factor = balance_factor if hash_type == CONSISTENT else 0
        self._tiers = (self._active, self._backups)
        # The servers of the file set the ring's scale, so that a server
        # added or removed at run time (its backend's balancer is built
        # again) moves only its own keys.
        configured = backend_setting(self.servers, "servers", None)
        self._rings = tuple(
            HashRing(points_per_weight(_scale(tier, configured, backup)))
            for backup, tier in enumerate(self._tiers)
        )
        self._tables: List[List[Server]] = [[], []]
        self._keys = {s: server_hash_key(s) for s in self.servers}
        self._load = [0, 0]
        self._weight = [0, 0]
        for tier in (0, 1):
            self._rebuild(tier)

    @classmethod
    def check_args(cls, args: Tuple[str, ...]) -> None:
        """
        Refuse arguments: C{source} takes none (C{hash-type} and
        C{hash-balance-factor} are keys of their own).
        """
        no_arguments(cls.name, args)

    def _rebuild(self, tier: int) -> None:
        """
        Rebuild the ring or table of one tier (0: active, 1: backup) and
        its eligible weight.
        """
        servers = self._tiers[tier]
        if self.hash_type == CONSISTENT:
            self._rings[tier].build(servers)
        else:
            self._tables[tier] = map_table(s for s in servers if s.eligible)
        self._weight[tier] = sum(s.weight for s in servers if s.eligible)

    def pick(
        self, client_address: Optional[str], avoid: Container[Server] = ()
    ) -> Optional[Server]:
        """
        Return the client's server, or the next usable one after it.

        @param client_address: The client's IP address; all clients without
            one hash alike.
        @param avoid: Servers not to choose unless nothing else is left.
        """
        if self.active_in_use():
            tier = 0
        elif self.allbackups:
            tier = 1
        else:
            return self.fallback(avoid)
        key_hash = client_hash(client_address)
        if self.hash_type == MAP_BASED:
            table = self._tables[tier]
            if not table:
                return self.fallback(avoid)
            return self.walk(table, key_hash % len(table), avoid)
        ring = self._rings[tier]
        if not len(ring):
            return self.fallback(avoid)
        start = ring.index(key_hash)
        if self.balance_factor:
            bounded = self._bounded_walk(ring.owners, start, tier, avoid)
            if bounded is not None:
                return bounded
        return self.walk(ring.owners, start, avoid)

    def _bounded_walk(
        self, owners: List[Server], start: int, tier: int, avoid: Container[Server]
    ) -> Optional[Server]:
        """
        Return the first usable server from C{start} on whose load stays
        within the balance factor once it takes the connection, or C{None}
        when there is none (all usable servers full or avoided).
        """
        allowed = self.balance_factor * (self._load[tier] + 1)
        total_weight = self._weight[tier] * 100
        size = len(owners)
        index = start
        for _ in range(size):
            server = owners[index]
            if (
                server.eligible
                and not server.full
                and server not in avoid
                and server.current * total_weight < allowed * server.weight
            ):
                return server
            index += 1
            if index == size:
                index = 0
        return None

    def _tier_of(self, server: Server) -> int:
        return 1 if server.spec.backup else 0

    def server_up(self, server: Server) -> None:
        """
        Put C{server} back in its tier's table (map-based); a ring keeps
        every server and skips those that are not eligible, so it is only
        rebuilt when the server's hash key changed (an address resolved).
        """
        key = server_hash_key(server)
        if self.hash_type == MAP_BASED or key != self._keys.get(server):
            self._keys[server] = key
            self._rebuild(self._tier_of(server))
        else:
            self._weight[self._tier_of(server)] = sum(
                s.weight for s in self._tiers[self._tier_of(server)] if s.eligible
            )

    def server_down(self, server: Server) -> None:
        """
        Take C{server} out of its tier's table (map-based), or only out of
        the eligible weight (consistent).
        """
        tier = self._tier_of(server)
        if self.hash_type == MAP_BASED:
            self._rebuild(tier)
        else:
            self._weight[tier] = sum(s.weight for s in self._tiers[tier] if s.eligible)

    def weight_changed(self, server: Server) -> None:
        """
        Rebuild C{server}'s tier with its new weight.
        """
        self._rebuild(self._tier_of(server))

    def connection_taken(self, server: Server) -> None:
        """
        Count the connection in its tier's load (for bounded load).
        """
        self._load[self._tier_of(server)] += 1

    def connection_dropped(self, server: Server) -> None:
        """
        Uncount the connection from its tier's load.
        """
        self._load[self._tier_of(server)] -= 1


#: The weight a ring is scaled for when its backend's file defines no
#: server of its tier (every one added at run time).
DEFAULT_SCALE_WEIGHT = 16


def _scale(tier: Sequence[Server], configured: Optional[Sequence[Any]], backup: int) -> int:
    """
    The total weight a tier's ring is scaled for: that of the tier's
    servers written in the configuration file (C{configured}, the
    backend's server specifications), or of all of C{tier} without a
    backend; L{DEFAULT_SCALE_WEIGHT} when there are none.
    """
    if configured is None:
        total = sum(s.spec.weight for s in tier)
    else:
        total = sum(spec.weight for spec in configured if bool(spec.backup) == bool(backup))
    return total or DEFAULT_SCALE_WEIGHT
