"""
A backend's C{downtime}: the time it spent with no usable server, counted
on the reactor's clock and carried by a reload, as HAProxy's C{BACKEND}
row shows it.
"""

from __future__ import annotations

from l4lb.admin.stats import backend_row
from l4lb.pool import Downtime
from tests.test_reload import BASE, start
from tests.test_reload_state import reload_text


def test_downtime_counts_only_spells_without_a_usable_server() -> None:
    """Only the time with no usable server counts, the current spell included."""
    downtime = Downtime()
    downtime.note(True, 0.0)
    downtime.note(False, 10.0)
    downtime.note(False, 15.0)
    assert downtime.seconds(25.0) == 15.0
    downtime.note(True, 30.0)
    downtime.note(True, 40.0)
    assert downtime.seconds(100.0) == 20.0


def test_backend_row_shows_downtime_and_a_reload_keeps_it() -> None:
    """
    With both servers in maintenance for 30 s the BACKEND row says 30; one
    server back stops the count, and a reload carries what was counted.
    """
    service, reactor = start()
    backend = service.backends["be"]
    reactor.advance(10)
    assert backend_row(backend, 1, 1, reactor.seconds())["downtime"] == "0"
    for server in backend.servers:
        server.set_admin("maint")
    reactor.advance(30)
    backend.server("s1").set_admin("ready")
    reactor.advance(5)
    assert backend_row(backend, 1, 1, reactor.seconds())["downtime"] == "30"
    reload_text(service, BASE.replace("127.0.10.2:80", "127.0.10.2:80 weight 2"))
    reactor.advance(5)
    assert backend_row(service.backends["be"], 1, 1, reactor.seconds())["downtime"] == "30"


def test_backend_row_counts_its_down_transitions() -> None:
    """
    The BACKEND row's C{chkdown} says how often the backend was left with
    no usable server, as HAProxy's does: 0 at start, 1 after both servers
    went into maintenance, 2 after a second such spell; a reload keeps it.
    """
    service, reactor = start()
    backend = service.backends["be"]
    assert backend_row(backend, 1, 1, reactor.seconds())["chkdown"] == "0"
    for spell in (1, 2):
        for server in backend.servers:
            server.set_admin("maint")
        reactor.advance(5)
        for server in backend.servers:
            server.set_admin("ready")
        assert backend_row(backend, 1, 1, reactor.seconds())["chkdown"] == str(spell)
    reload_text(service, BASE.replace("127.0.10.2:80", "127.0.10.2:80 weight 2"))
    assert backend_row(service.backends["be"], 1, 1, reactor.seconds())["chkdown"] == "2"
