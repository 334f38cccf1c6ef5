"""
Tests for L{l4lb.queue} and the relay's use of it: connections wait for a
free server slot when every server is at its C{maxconn}, are served in
order, and are closed with C{sQ} (queue timeout), C{CQ} (client left) or
C{SQ} (queue full).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest
from twisted.internet import error
from twisted.python.failure import Failure

from l4lb.config.model import ServerSpec, Timeouts
from l4lb.pool import BackendState, Server
from l4lb.queue import WaitQueue
from l4lb.tcp.relay import QUEUED, ClientLeg, ServerLeg
from tests.balancerkit import backend, spec
from tests.relaykit import Relay

DONE = Failure(error.ConnectionDone())


def limited(*servers: Tuple[str, int, int], disabled: str = "") -> Tuple[ServerSpec, ...]:
    """
    Make server specs C{(name, maxconn, maxqueue)} on 127.0.10.N:80; the
    server named C{disabled} starts in maintenance.
    """
    return tuple(
        ServerSpec(
            name=name,
            host=f"127.0.10.{i}",
            port=80,
            address=f"127.0.10.{i}",
            maxconn=maxconn,
            maxqueue=maxqueue,
            disabled=name == disabled,
        )
        for i, (name, maxconn, maxqueue) in enumerate(servers, 1)
    )


def fields(line: str) -> List[str]:
    """
    Split a log line into its space-separated fields.
    """
    return line.split(" ")


def finish(client: ClientLeg, server: Optional[ServerLeg]) -> None:
    """
    Close both sockets of an established session.
    """
    client.connectionLost(DONE)
    assert server is not None
    server.connectionLost(DONE)


def test_waits_then_served_when_slot_frees() -> None:
    """With the only server full, a new connection waits (nothing is tried), and connects as
    soon as the server's connection ends; the log shows the time spent queued."""
    relay = Relay(limited(("s1", 1, 0)))
    first, _ = relay.accept()
    leg, _ = relay.complete()
    second, _ = relay.accept()
    assert second.session.state == QUEUED
    assert len(relay.attempts()) == 1
    assert relay.backend.queue.current == 1
    relay.reactor.advance(2)
    finish(first, leg)
    assert len(relay.attempts()) == 2
    assert second.session.state == "connecting"
    assert relay.backend.queue.current == 0
    leg2, _ = relay.complete()
    relay.reactor.advance(1)
    finish(second, leg2)
    line = relay.sink.lines[-1]
    assert fields(line)[3] == "be/s1"
    assert fields(line)[4].startswith("2000/0/")
    assert fields(line)[6] == "CD"
    # The first in line logs its own position, as HAProxy does.
    assert fields(line)[8] == "0/1"


def test_served_in_order() -> None:
    """Waiting connections are served first come, first served, and each log line counts
    the connections served from the queue before it."""
    relay = Relay(limited(("s1", 1, 0)))
    first, _ = relay.accept()
    leg, _ = relay.complete()
    waiting = [relay.accept()[0] for _ in range(3)]
    order = []
    for _ in range(3):
        finish(first, leg)
        session = relay.session_of()
        order.append(session)
        first = next(c for c in waiting if c.session is session)
        leg, _ = relay.complete()
    assert order == [c.session for c in waiting]
    finish(first, leg)
    # As in HAProxy, a connection that went through the queue counts its
    # own position: the first in line logs 1.
    assert [fields(line)[8] for line in relay.sink.lines] == ["0/0", "0/1", "0/2", "0/3"]
    assert [c.session.queue_passed for c in waiting] == [1, 2, 3]


def test_queue_positions_passed() -> None:
    """A connection that waited behind two others logs 3 in the backend
    queue field: the two served before it and its own position, as
    HAProxy counts."""
    relay = Relay(limited(("s1", 3, 0)))
    running = [(relay.accept()[0], relay.complete()[0]) for _ in range(3)]
    waiting = [relay.accept()[0] for _ in range(3)]
    for client, leg in running:
        finish(client, leg)
    third = waiting[2]
    assert third.session.state == "connecting"
    assert third.session.queue_passed == 3


def test_new_connection_goes_behind_waiting_ones() -> None:
    """A new connection does not overtake those already waiting."""
    relay = Relay(limited(("s1", 1, 0)))
    relay.accept()
    relay.complete()
    queued, _ = relay.accept()
    # A slot frees without the queue hearing of it: the next arrival still waits.
    relay.backend.servers[0].current = 0
    later, _ = relay.accept()
    assert later.session.state == QUEUED
    assert relay.backend.queue.current == 2


@pytest.mark.parametrize(
    "client, waited, code",
    [(50.0, 3.0, "sQ"), (2.0, 2.0, "cQ")],
    ids=["queue-timeout", "client-timeout-first"],
)
def test_queue_timeout(client: float, waited: float, code: str) -> None:
    """A connection waiting longer than timeout queue is closed and logged sQ, with the
    time it waited and no server; a shorter timeout client ends the wait first,
    logged cQ, as HAProxy does."""
    timeouts = Timeouts(connect=5.0, client=client, server=50.0, queue=3.0)
    relay = Relay(limited(("s1", 1, 0)), timeouts=timeouts)
    relay.accept()
    relay.complete()
    queued, transport = relay.accept()
    relay.reactor.advance(waited - 0.1)
    assert not transport.aborted
    relay.reactor.advance(0.1)
    assert transport.aborted
    queued.connectionLost(DONE)
    (line,) = relay.sink.lines
    ms = int(waited * 1000)
    assert fields(line)[3] == "be/<NOSRV>"
    assert fields(line)[4] == f"{ms}/-1/{ms}"
    assert fields(line)[6] == code
    # It went through the queue first in line: HAProxy logs 0/1.
    assert fields(line)[8] == "0/1"
    assert relay.backend.queue.current == 0


def test_queue_timeout_defaults_to_connect() -> None:
    """Without timeout queue, timeout connect bounds the wait."""
    timeouts = Timeouts(connect=4.0, client=50.0, server=50.0)
    relay = Relay(limited(("s1", 1, 0)), timeouts=timeouts)
    relay.accept()
    relay.complete()
    _, transport = relay.accept()
    relay.reactor.advance(3.9)
    assert not transport.aborted
    relay.reactor.advance(0.1)
    assert transport.aborted


def test_client_leaves_while_queued() -> None:
    """A client that leaves while waiting is logged CQ and leaves the queue."""
    relay = Relay(limited(("s1", 1, 0)))
    relay.accept()
    relay.complete()
    queued, _ = relay.accept()
    relay.reactor.advance(1)
    queued.connectionLost(DONE)
    (line,) = relay.sink.lines
    assert fields(line)[6] == "CQ"
    assert fields(line)[4] == "1000/-1/1000"
    assert relay.backend.queue.current == 0
    assert relay.gate.current == 1


def test_maxqueue_full() -> None:
    """
    When the queue holds the servers' maxqueue, a new connection is closed
    at once: SQ, as HAProxy logs a connection that finds its server's queue
    full.
    """
    relay = Relay(limited(("s1", 1, 1)))
    relay.accept()
    relay.complete()
    relay.accept()
    third, transport = relay.accept()
    assert transport.aborted
    third.connectionLost(DONE)
    (line,) = relay.sink.lines
    assert fields(line)[6] == "SQ"
    assert relay.backend.queue.current == 1


def test_no_eligible_server_does_not_queue() -> None:
    """With no eligible server at all, a connection is refused at once (SC), not queued."""
    relay = Relay(limited(("s1", 1, 0), disabled="s1"))
    client, transport = relay.accept()
    assert transport.aborted
    client.connectionLost(DONE)
    assert fields(relay.sink.lines[0])[6] == "SC"


def test_server_coming_back_serves_queue() -> None:
    """A server leaving maintenance takes a waiting connection at once."""
    relay = Relay(limited(("s1", 1, 0), ("s2", 1, 0), disabled="s2"))
    relay.accept()
    relay.complete()
    queued, _ = relay.accept()
    assert queued.session.state == QUEUED
    relay.backend.server("s2").set_admin("ready")
    assert queued.session.state == "connecting"
    assert relay.attempts()[-1] == ("127.0.10.2", 80)


def test_queue_limit() -> None:
    """The queue's limit is the eligible servers' maxqueue summed, or none when one is 0."""
    state = backend("roundrobin", [spec("a", maxqueue=2), spec("b", maxqueue=3)])
    assert state.queue.limit() == 5
    state.server("b").set_health(False)
    assert state.queue.limit() == 2
    state = backend("roundrobin", [spec("a", maxqueue=2), spec("b")])
    assert state.queue.limit() is None


class Waiting:
    """
    A stand-in for a queued connection: it takes the server it is given.
    """

    def __init__(self, state: BackendState, client_host: str) -> None:
        self.state = state
        self.client_host = client_host
        self.got: Optional[Server] = None

    def dequeued(self, server: Server, served_before: int) -> None:
        self.got = server
        self.state.take(server)


def test_wait_queue_alone() -> None:
    """The queue serves its head through the balancer whenever a slot frees, one per free
    slot, counting what it served and its longest length, and skips removed entries."""
    state = backend("roundrobin", [spec("a", maxconn=1)])
    a = state.server("a")
    state.take(a)
    queue: WaitQueue = state.queue
    one, two, three = (Waiting(state, str(i)) for i in range(3))
    assert [queue.add(w) for w in (one, two, three)] == [0, 0, 0]
    queue.remove(two)
    assert queue.current == 2 and queue.max == 3 and queue.total == 3
    queue.serve()
    assert one.got is None
    state.drop(a)
    assert one.got is a and three.got is None
    assert queue.served == 1
    state.drop(a)
    assert three.got is a
    assert queue.current == 0 and queue.served == 2
