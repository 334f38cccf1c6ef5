"""
What C{roundrobin} and C{leastconn} share to pick a server in O(log n): an
index of the servers that may take a connection, kept up to date by the
balancer hooks instead of walking every server at every pick.

Each server has a L{Slot}.  A slot is I{inside} its tier's index (active
or backup) while the server is eligible and below its C{maxconn};
otherwise it is outside.  The pool calls the hooks whenever a server's
state, weight or connection count changes, and each hook moves the slot in
or out.  A pick looks only at the top of the index and checks the server
it finds there against its live state, so a change made without a hook is
noticed when that server comes up: it is taken out and I{watched}, and a
few watched servers are looked at again at each pick.  Servers at their
C{maxconn} are watched too, since their limit may be raised without a
hook, and so are those out of rotation when the balancer is built until a
hook speaks of them.  When the index has nothing to offer while the tier still has an
eligible server, every slot of the tier is checked against its server once
(an audit), which costs a pass over the tier as every pick did before.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Container, Dict, List, Optional, Tuple

from l4lb.balancers.base import BalancerBase
from l4lb.pool import Server

# Watched servers looked at again per pick: enough for the few a backend
# has in normal operation, bounded so that a backend whose servers are
# mostly full does not pay a pass over them at every pick.
WATCH_PER_PICK = 8


class Slot:
    """
    A server's place in an index.

    @ivar server: The server.
    @ivar order: Its position in the backend, in file order.
    @ivar backup: Whether it is a backup server (the tier it belongs to).
    @ivar inside: Whether it is in its tier's index now.
    @ivar weight: The weight it is indexed with (its weight when it
        entered or was last re-keyed).
    @ivar version: Bumped whenever the slot's heap entries become stale;
        an entry that carries another version is skipped.
    @ivar key: The algorithm's value: a score or a load.
    @ivar epoch: The algorithm's generation in which L{key} was set.
    @ivar seq: The algorithm's tie-breaking sequence number.
    """

    __slots__ = ("server", "order", "backup", "inside", "weight", "version", "key", "epoch", "seq")

    def __init__(self, server: Server, order: int) -> None:
        self.server = server
        self.order = order
        self.backup = bool(server.spec.backup)
        self.inside = False
        self.weight = 0
        self.version = 0
        self.key: float = 0
        self.epoch = -1
        self.seq = 0

    def __repr__(self) -> str:
        return f"<Slot {self.server.name} inside={self.inside} key={self.key}>"


class IndexedBalancer(BalancerBase):
    """
    A balancer that keeps an index of usable servers per tier.

    Subclasses implement L{enter}, L{leave}, L{rekey} (the index's
    operations on one slot) and L{choose} (a pick from one tier's index).
    The active tier is index C{0}, the backup tier index C{1}.
    """

    def setup(self) -> None:
        """
        Build the slots, let the subclass build its indexes
        (L{build_index}), and put every usable server in them.
        """
        self._slots: Dict[Server, Slot] = {}
        self._order: List[Slot] = []
        self._tiers: Tuple[List[Slot], List[Slot]] = ([], [])
        for order, server in enumerate(self.servers):
            slot = Slot(server, order)
            self._slots[server] = slot
            self._order.append(slot)
            self._tiers[slot.backup].append(slot)
        self._watch: Dict[Server, Slot] = {}
        # Position in the active servers of the last one found eligible.
        self._hint = 0
        self.build_index()
        usable = []
        for slot in self._order:
            server = slot.server
            if server.eligible and not server.full:
                usable.append(slot)
            else:
                # What a reload or a state file restores right after the
                # build (an address already resolved) may come without a
                # hook.
                self._watch[server] = slot
        self.fill(usable)

    # -- what subclasses implement -------------------------------------------

    def build_index(self) -> None:
        """
        Create the empty indexes of both tiers.
        """
        raise NotImplementedError

    def fill(self, slots: List[Slot]) -> None:
        """
        Put C{slots} (in file order) in the new, empty indexes.  By default
        each one enters in turn; a subclass may do it in bulk.
        """
        for slot in slots:
            self.enter(slot)

    def enter(self, slot: Slot) -> None:
        """
        Put C{slot} in its tier's index, with its server's live weight.
        """
        raise NotImplementedError

    def leave(self, slot: Slot) -> None:
        """
        Take C{slot} out of its tier's index.
        """
        raise NotImplementedError

    def rekey(self, slot: Slot) -> None:
        """
        C{slot} is inside and its server's weight or load changed: index
        it again.  By default it leaves and enters again.
        """
        self.leave(slot)
        self.enter(slot)

    def choose(self, tier: int, avoid: Container[Server]) -> Optional[Server]:
        """
        Pick from the index of C{tier}, which is the tier in use.
        """
        raise NotImplementedError

    def eligibility_changed(self) -> None:
        """
        A server became eligible or stopped being so (after its slot was
        updated).  Does nothing by default.
        """

    # -- the pick --------------------------------------------------------------

    def pick(
        self, client_address: Optional[str], avoid: Container[Server] = ()
    ) -> Optional[Server]:
        """
        Choose a server for a new connection; see L{IBalancer.pick
        <l4lb.interfaces.IBalancer.pick>}.

        @param client_address: Ignored.
        @param avoid: Servers not to choose unless nothing else is left.
        """
        if self._watch:
            self._recheck()
        active = self._active
        if active:
            hint = self._hint
            if hint < len(active) and active[hint].eligible:
                return self.choose(0, avoid)
            for index, server in enumerate(active):
                if server.eligible:
                    self._hint = index
                    return self.choose(0, avoid)
        if self.allbackups:
            return self.choose(1, avoid)
        # Only the first eligible backup is used: nothing to balance.
        for server in self._backups:
            if server.eligible:
                return None if server.full else server
        return None

    def held(self, tier: int, avoid: Container[Server]) -> List[Slot]:
        """
        Return the slots inside C{tier}'s index whose servers are in
        C{avoid}, when C{avoid} can be iterated (a set, list or tuple, as
        the relay passes); others are found as they come up (L{avoided}).
        """
        found: List[Slot] = []
        if avoid and isinstance(avoid, Iterable):
            slots = self._slots
            backup = bool(tier)
            for server in avoid:
                slot = slots.get(server)
                if slot is not None and slot.inside and slot.backup is backup and slot not in found:
                    found.append(slot)
        return found

    def check(self, slot: Slot) -> bool:
        """
        Whether C{slot}, found at the top of its index, still matches its
        server; if not, take it out (and watch it) or index it again.
        """
        server = slot.server
        if not server.eligible or server.full:
            self.leave(slot)
            self._watch[server] = slot
            return False
        if server.weight != slot.weight:
            self.rekey(slot)
            return False
        return True

    def audit(self, tier: int) -> bool:
        """
        Check every slot of C{tier} against its server, after the index
        ran dry.

        @return: Whether the index has a slot inside afterwards.
        """
        inside = False
        for slot in self._tiers[tier]:
            server = slot.server
            if server.eligible and not server.full:
                self._watch.pop(server, None)
                if not slot.inside:
                    self.enter(slot)
                elif server.weight != slot.weight:
                    self.rekey(slot)
                inside = True
            elif slot.inside:
                self.leave(slot)
        return inside

    def _recheck(self) -> None:
        """
        Put back the first few watched servers that may take connections
        again; the others go to the back of the watch list.
        """
        watch = self._watch
        for slot in list(islice(watch.values(), WATCH_PER_PICK)):
            server = slot.server
            del watch[server]
            if slot.inside:
                continue
            if server.eligible and not server.full:
                self.enter(slot)
            else:
                watch[server] = slot

    # -- the hooks ---------------------------------------------------------------

    def _sync(self, server: Server) -> Optional[Slot]:
        """
        Bring C{server}'s slot in line with the server, after a hook said
        it changed.  A server out of rotation for a reason a hook reports
        (down, drain, maintenance, weight 0) is not watched; one at its
        C{maxconn} is.

        @return: Its slot, or C{None} for a server not of this balancer.
        """
        slot = self._slots.get(server)
        if slot is None:
            return None
        if server.eligible:
            if server.full:
                if slot.inside:
                    self.leave(slot)
                self._watch[server] = slot
            else:
                self._watch.pop(server, None)
                if not slot.inside:
                    self.enter(slot)
                elif server.weight != slot.weight:
                    self.rekey(slot)
        else:
            if slot.inside:
                self.leave(slot)
            self._watch.pop(server, None)
        return slot

    def server_up(self, server: Server) -> None:
        """
        C{server} became eligible: index it.
        """
        self._sync(server)
        self.eligibility_changed()

    def server_down(self, server: Server) -> None:
        """
        C{server} stopped being eligible: take it out of the index.
        """
        self._sync(server)
        self.eligibility_changed()

    def weight_changed(self, server: Server) -> None:
        """
        C{server}'s effective weight changed: index it with the new one.
        """
        self._sync(server)

    def connection_taken(self, server: Server) -> None:
        """
        A connection to C{server} was counted: it may now be full.
        """
        self._sync(server)

    def connection_dropped(self, server: Server) -> None:
        """
        A connection to C{server} ended: it may have a free slot again.
        """
        self._sync(server)
