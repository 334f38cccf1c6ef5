"""
C{maxconn}: listening ports stop accepting at the limit and resume below
it, and never accept more in one batch than there are free slots.
"""

from __future__ import annotations

from l4lb.tcp.limits import ConnectionLimiter
from tests.relaykit import ListeningPort as Port


def test_ports_held_until_opened() -> None:
    """A frontend accepts nothing until the service opens it."""
    gate = ConnectionLimiter().gate()
    port = Port()
    gate.add_port(port)
    assert not port.reading
    gate.open()
    assert port.reading


def test_frontend_limit_pauses_and_resumes() -> None:
    """At the frontend's maxconn its ports stop reading; one close resumes."""
    gate = ConnectionLimiter().gate(maxconn=2)
    port = Port()
    gate.add_port(port)
    gate.open()
    gate.acquire()
    assert port.reading
    gate.acquire()
    assert not port.reading
    gate.release()
    assert port.reading


def test_global_limit_pauses_every_frontend() -> None:
    """The global maxconn pauses every frontend's ports, and resumes them."""
    limiter = ConnectionLimiter(maxconn=2)
    a, b = limiter.gate(), limiter.gate()
    pa, pb = Port(), Port()
    a.add_port(pa)
    b.add_port(pb)
    a.open()
    b.open()
    a.acquire()
    b.acquire()
    assert not pa.reading and not pb.reading
    b.release()
    assert pa.reading and pb.reading


def test_batch_capped_at_free_slots() -> None:
    """A readiness event accepts at most as many connections as are free."""
    gate = ConnectionLimiter(maxconn=10).gate(maxconn=3)
    port = Port()
    gate.add_port(port)
    gate.open()
    gate.acquire()
    port.doRead()
    assert port.batches == [2]


def test_stray_read_at_the_limit_accepts_nothing() -> None:
    """A readiness event that arrives at the limit accepts nothing."""
    gate = ConnectionLimiter().gate(maxconn=1)
    port = Port()
    gate.add_port(port)
    gate.open()
    gate.acquire()
    port.reading = True
    port.doRead()
    assert port.batches == [] and not port.reading
