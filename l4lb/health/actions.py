"""
What a server's C{on-marked-down} and C{on-marked-up} options do, decided
in one place for every way a server leaves or re-enters service: its health
checks or agent (L{l4lb.health.server.ServerHealth}), the runtime API
(C{set server ... state}, C{disable server}), and an C{nbproc} worker that
is sent the main process's view (L{l4lb.workers.child}).

As HAProxy does, a server is I{in service} while it is UP and not in
maintenance (drain keeps it in service: its sessions go on):

 - leaving service (marked DOWN, or put in maintenance while UP) with
   C{on-marked-down shutdown-sessions} closes its sessions, logged C{D};
 - entering service (marked UP, or out of maintenance while UP) with
   C{on-marked-up shutdown-backup-sessions}, for a server that is not
   itself a backup, closes the sessions of its backend's backup servers,
   logged C{U}.

Use L{marking} around any change of a server's health or administrative
state::

    with marking(server):
        server.set_admin("maint")
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from l4lb.pool import Server

__all__ = ["in_service", "marked", "marking"]


def in_service(server: Server) -> bool:
    """
    Whether C{server} is in service: UP, and not in maintenance.
    """
    return bool(server.up) and server.admin != "maint"


def marked(server: Server, was_in_service: bool) -> int:
    """
    Do what C{server}'s C{on-marked-down} / C{on-marked-up} options ask,
    now that its state changed from C{was_in_service}.

    @return: How many sessions were closed.
    """
    from l4lb.health.server import shutdown_sessions

    now_in_service = in_service(server)
    spec = server.spec
    if was_in_service and not now_in_service:
        if spec.on_marked_down == "shutdown-sessions":
            return shutdown_sessions(server, "D")
        return 0
    if now_in_service and not was_in_service:
        backend = server.backend
        if spec.on_marked_up == "shutdown-backup-sessions" and not spec.backup and backend:
            return sum(
                shutdown_sessions(other, "U") for other in backend.servers if other.spec.backup
            )
    return 0


@contextmanager
def marking(server: Server) -> Iterator[None]:
    """
    Apply L{marked} after the changes made to C{server} inside the block.
    """
    before = in_service(server)
    yield
    marked(server, before)
