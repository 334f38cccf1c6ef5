"""
A C{mode udp} frontend's sessions, driven with a fake UDP reactor and
L{Clock}: routing, replies, idle expiry, C{udp-responses},
C{udp-requests}, the cap, send errors, ICMP refusals and server changes.
"""

from __future__ import annotations

import errno

import pytest
from twisted.internet.error import MessageLengthError
from twisted.logger import capturedLogs

from l4lb.udp.session import UdpSession
from l4lb.udp.sockets import MAX_DATAGRAM

from tests.udpkit import FakeUdpReactor, UdpRig, udp_servers

A = ("192.0.2.1", 5000)
B = ("192.0.2.2", 5000)
C = ("192.0.2.3", 5000)


def test_first_datagram_opens_a_connected_socket_to_the_picked_server() -> None:
    """A new client's datagram picks a server and goes out, unchanged, on a socket connected to it."""
    rig = UdpRig()
    rig.send(b"query", A)
    port = rig.server_port("s1")
    assert port.written == [(b"query", None)]
    assert port.interface == ""
    assert port.max_packet_size == MAX_DATAGRAM
    assert rig.frontend.current == 1


def test_later_datagrams_of_a_client_use_its_session() -> None:
    """Further datagrams from the same client address reuse its session and socket."""
    rig = UdpRig()
    rig.send(b"one", A)
    rig.send(b"two", A)
    assert [d for d, _ in rig.server_port("s1").written] == [b"one", b"two"]
    assert len(rig.reactor.ports) == 2  # the frontend's port and one session socket


def test_replies_go_back_to_the_client_through_the_frontend_port() -> None:
    """A server's reply is written by the frontend's own port to the client's address."""
    rig = UdpRig()
    rig.send(b"q", A)
    rig.server_port("s1").reply(b"answer")
    assert rig.replies() == [(b"answer", A)]


def test_new_clients_are_balanced() -> None:
    """With roundrobin, two new clients go to the two servers."""
    rig = UdpRig()
    rig.send(b"q", A)
    rig.send(b"q", B)
    assert rig.server_port("s1").written == [(b"q", None)]
    assert rig.server_port("s2").written == [(b"q", None)]


def test_idle_session_expires_and_its_socket_closes() -> None:
    """After timeout udp of silence the session ends, its socket is closed and one line is logged."""
    rig = UdpRig(timeout=10.0)
    rig.send(b"q", A)
    port = rig.server_port("s1")
    rig.reactor.advance(9.9)
    assert rig.frontend.current == 1
    rig.reactor.advance(0.1)
    assert rig.frontend.current == 0
    assert port.closed
    assert len(rig.sink.lines) == 1
    assert " cD idle " in rig.sink.lines[0]
    assert rig.backend.server("s1").current == 0
    assert rig.listener.clients == {}


def test_client_datagrams_refresh_the_idle_timeout() -> None:
    """A datagram from the client restarts the idle time."""
    rig = UdpRig(timeout=10.0)
    rig.send(b"q", A)
    rig.reactor.advance(8.0)
    rig.send(b"q", A)
    rig.reactor.advance(8.0)
    assert rig.frontend.current == 1
    rig.reactor.advance(2.0)
    assert rig.frontend.current == 0


def test_server_replies_refresh_the_idle_timeout() -> None:
    """A reply from the server restarts the idle time too."""
    rig = UdpRig(timeout=10.0)
    rig.send(b"q", A)
    rig.reactor.advance(8.0)
    rig.server_port("s1").reply(b"r")
    rig.reactor.advance(8.0)
    assert rig.frontend.current == 1
    rig.reactor.advance(2.0)
    assert rig.frontend.current == 0


def test_one_timer_for_the_whole_table() -> None:
    """Datagrams arm no timer of their own: one timer serves every session."""
    rig = UdpRig(timeout=10.0)
    for i in range(50):
        rig.send(b"q", ("192.0.2.9", 6000 + i))
        rig.send(b"q", ("192.0.2.9", 6000 + i))
    assert len(rig.reactor.getDelayedCalls()) == 1


def test_expiry_keeps_running_for_later_sessions() -> None:
    """Sessions that start after the first one expire too, each at its own time."""
    rig = UdpRig(timeout=10.0)
    rig.send(b"q", A)
    rig.reactor.advance(5.0)
    rig.send(b"q", B)
    rig.reactor.advance(5.0)
    assert rig.frontend.current == 1
    rig.reactor.advance(5.0)
    assert rig.frontend.current == 0
    assert rig.reactor.getDelayedCalls() == []


def test_responses_end_the_session() -> None:
    """With udp-responses 1 the session ends at the first reply, and is logged as such."""
    rig = UdpRig(responses=1)
    rig.send(b"q", A)
    port = rig.server_port("s1")
    port.reply(b"r")
    assert rig.replies() == [(b"r", A)]
    assert port.closed
    assert rig.frontend.current == 0
    line = rig.sink.lines[0]
    assert line.startswith("192.0.2.1:5000 [")
    assert " fe be/s1 0 1/1 1/1 0 -- responses 0/0/0" in line


def test_responses_count_several_replies() -> None:
    """With udp-responses 2 the session outlives the first reply and ends at the second."""
    rig = UdpRig(responses=2)
    rig.send(b"q", A)
    port = rig.server_port("s1")
    port.reply(b"r1")
    assert rig.frontend.current == 1
    port.reply(b"r2")
    assert rig.frontend.current == 0


def test_responses_are_counted_per_client_datagram() -> None:
    """With udp-responses 1, two queries in flight from one client port keep the session until both are answered, and both answers reach the client."""
    rig = UdpRig(responses=1)
    rig.send(b"q-a", A)
    rig.send(b"q-aaaa", A)
    port = rig.server_port("s1")
    assert [d for d, _ in port.written] == [b"q-a", b"q-aaaa"]
    port.reply(b"r-aaaa")
    assert rig.frontend.current == 1
    assert not port.closed
    port.reply(b"r-a")
    assert rig.replies() == [(b"r-aaaa", A), (b"r-a", A)]
    assert port.closed
    assert rig.frontend.current == 0
    assert " fe be/s1 0 2/9 2/9 0 -- responses 0/0/0" in rig.sink.lines[0]


def test_a_query_sent_after_a_reply_is_waited_for_too() -> None:
    """A client datagram that arrives between two replies is owed its own reply before the session ends."""
    rig = UdpRig(responses=1)
    rig.send(b"1", A)
    rig.send(b"2", A)
    port = rig.server_port("s1")
    port.reply(b"r1")
    rig.send(b"3", A)
    port.reply(b"r2")
    assert rig.frontend.current == 1
    port.reply(b"r3")
    assert rig.frontend.current == 0
    assert [d for d, _ in rig.replies()] == [b"r1", b"r2", b"r3"]
    assert len(rig.reactor.ports) == 2  # one session socket for the three queries
    assert " 3/3 3/6 0 -- responses " in rig.sink.lines[0]


def test_several_responses_per_datagram_in_flight() -> None:
    """With udp-responses 2 and two datagrams in flight, the session ends at the fourth reply, not the second."""
    rig = UdpRig(responses=2)
    rig.send(b"1", A)
    rig.send(b"2", A)
    port = rig.server_port("s1")
    for i in range(3):
        port.reply(b"r%d" % i)
        assert rig.frontend.current == 1
    port.reply(b"r3")
    assert rig.frontend.current == 0
    assert len(rig.replies()) == 4


def test_retired_session_ends_once_its_datagrams_are_answered() -> None:
    """With udp-requests 2 and udp-responses 1, the retired session relays both replies before it ends; the client's next datagram has its own session."""
    rig = UdpRig(requests=2, responses=1)
    for data in (b"1", b"2", b"3"):
        rig.send(data, A)
    first, second = [p for p in rig.reactor.ports if p.connected_to is not None]
    first.reply(b"r1")
    assert not first.closed
    second.reply(b"r3")
    assert second.closed
    first.reply(b"r2")
    assert first.closed
    assert [d for d, _ in rig.replies()] == [b"r1", b"r3", b"r2"]
    assert rig.frontend.current == 0
    assert all(" -- responses " in line for line in rig.sink.lines)


def test_unanswered_datagram_ends_at_the_idle_timeout() -> None:
    """A session whose second datagram is never answered stays until timeout udp and is logged sD unanswered (the server is blamed), with the counts it relayed."""
    rig = UdpRig(responses=1, timeout=10.0)
    rig.send(b"1", A)
    rig.send(b"2", A)
    rig.server_port("s1").reply(b"r1")
    rig.reactor.advance(10.0)
    assert rig.frontend.current == 0
    assert " 2/2 1/2 0 sD unanswered " in rig.sink.lines[0]


def test_answered_session_without_reply_count_ends_idle() -> None:
    """Without udp-responses, a session that goes quiet is the client's normal end: cD idle, even if the server never answered."""
    rig = UdpRig(timeout=10.0)
    rig.send(b"1", A)
    rig.reactor.advance(10.0)
    assert " 1/1 0/0 0 cD idle " in rig.sink.lines[0]


def test_per_packet_balancing() -> None:
    """With udp-requests 1 each datagram of one client picks again, and every reply still gets back."""
    rig = UdpRig(requests=1)
    rig.send(b"a", A)
    rig.send(b"b", A)
    rig.send(b"c", A)
    s1 = [p for p in rig.reactor.ports if p.connected_to == ("127.0.10.1", 53)]
    s2 = [p for p in rig.reactor.ports if p.connected_to == ("127.0.10.2", 53)]
    assert [p.written for p in s1] == [[(b"a", None)], [(b"c", None)]]
    assert [p.written for p in s2] == [[(b"b", None)]]
    s1[0].reply(b"ra")
    s2[0].reply(b"rb")
    assert rig.replies() == [(b"ra", A), (b"rb", A)]
    assert rig.frontend.current == 3


def test_requests_limit_of_two() -> None:
    """With udp-requests 2 a session takes two datagrams, then the client's third starts a new one."""
    rig = UdpRig(requests=2)
    for data in (b"1", b"2", b"3"):
        rig.send(data, A)
    ports = [p for p in rig.reactor.ports if p.connected_to is not None]
    assert [p.written for p in ports] == [[(b"1", None), (b"2", None)], [(b"3", None)]]


def test_cap_evicts_the_least_recently_active_session() -> None:
    """At maxsessions a new client evicts the session idle the longest, which is counted and logged."""
    rig = UdpRig(maxsessions=2)
    rig.send(b"q", A)
    rig.reactor.advance(1.0)
    rig.send(b"q", B)
    rig.reactor.advance(1.0)
    rig.send(b"q", A)  # A is now the most recently active
    with capturedLogs() as events:
        rig.send(b"q", C)
    assert set(rig.listener.clients) == {A, C}
    assert rig.frontend.counters.evicted == 1
    assert " PD evicted " in rig.sink.lines[0] and rig.sink.lines[0].startswith("192.0.2.2:5000")
    warnings = [e for e in events if "maxsessions 2 reached" in e.get("message", "")]
    assert len(warnings) == 1


def test_cap_warning_at_most_once_a_second() -> None:
    """Evictions in a burst log one warning per second, which counts the ones it stands for."""
    rig = UdpRig(maxsessions=1)
    with capturedLogs() as events:
        for i in range(20):
            rig.send(b"q", ("192.0.2.9", 7000 + i))
        rig.reactor.advance(1.0)
        rig.send(b"q", ("192.0.2.9", 8000))
    warnings = [e for e in events if "maxsessions" in e.get("message", "")]
    assert [e["count"] for e in warnings] == [1, 19]
    assert rig.frontend.counters.evicted == 20


def test_cap_reclaims_idle_sessions_before_evicting() -> None:
    """At the cap, sessions already past their idle time are ended as idle rather than evicted."""
    rig = UdpRig(maxsessions=1, timeout=5.0)
    rig.send(b"q", A)
    rig.reactor.pause = True  # type: ignore[attr-defined]
    rig.reactor.rightNow += 6.0  # the timer has not run yet
    rig.send(b"q", B)
    assert rig.frontend.counters.evicted == 0
    assert " cD idle " in rig.sink.lines[0]


@pytest.mark.parametrize(
    "failure",
    [OSError(errno.EAGAIN, "full"), OSError(errno.ENOBUFS, "no buffers"), MessageLengthError()],
)
def test_send_error_towards_the_server_drops_and_counts(failure: BaseException) -> None:
    """A full buffer or an oversized datagram drops that datagram, counts it and raises nothing."""
    rig = UdpRig()
    rig.send(b"q", A)
    port = rig.server_port("s1")
    port.error = failure
    rig.send(b"lost", A)
    port.error = None
    rig.send(b"kept", A)
    assert [d for d, _ in port.written] == [b"q", b"kept"]
    session = rig.listener.clients[A]
    assert session.dropped == 1
    rig.reactor.advance(10.0)
    assert rig.frontend.counters.dropped == 1
    assert rig.backend.server("s1").udp.dropped == 1


def test_send_error_towards_the_client_drops_and_counts() -> None:
    """A reply that cannot be written to the client is dropped and counted."""
    rig = UdpRig()
    rig.send(b"q", A)
    rig.port.error = OSError(errno.EAGAIN, "full")
    rig.server_port("s1").reply(b"r")
    assert rig.listener.clients[A].dropped == 1


def test_largest_datagram_passes_unchanged() -> None:
    """A 65,535-byte datagram is relayed whole both ways."""
    rig = UdpRig()
    big = bytes(range(256)) * 255 + b"x" * 255
    assert len(big) == 65535
    rig.send(big, A)
    port = rig.server_port("s1")
    assert port.written == [(big, None)]
    port.reply(big)
    assert rig.replies() == [(big, A)]


def test_refused_server_counts_a_passive_failure_and_the_datagram_moves() -> None:
    """ICMP port unreachable ends the session, counts against the server and resends the datagram elsewhere."""
    rig = UdpRig()
    rig.send(b"q", A)
    rig.server_port("s1").protocol.connectionRefused()
    s1 = rig.backend.server("s1")
    assert s1.udp.refused == 1
    assert s1.failed_connects == 1
    assert " SC refused " in rig.sink.lines[0]
    assert rig.server_port("s2").written == [(b"q", None)]
    assert rig.listener.clients[A].server.name == "s2"


def test_refusal_on_send_is_handled_too() -> None:
    """A refusal reported while sending (ECONNREFUSED on send) also moves the datagram."""
    rig = UdpRig()
    rig.send(b"q", A)
    rig.server_port("s1").refuse = True
    rig.send(b"again", A)
    assert rig.server_port("s2").written == [(b"again", None)]


def test_refusal_without_another_server_drops() -> None:
    """With a single server, a refused datagram is not resent anywhere."""
    rig = UdpRig(servers=udp_servers("only"))
    rig.send(b"q", A)
    rig.server_port("only").protocol.connectionRefused()
    assert rig.frontend.current == 0
    assert len(rig.reactor.open_ports()) == 1


def test_refusal_without_retries_is_not_resent() -> None:
    """With retries 0, a refused datagram is not resent."""
    rig = UdpRig(retries=0)
    rig.send(b"q", A)
    rig.server_port("s1").protocol.connectionRefused()
    assert rig.frontend.current == 0


def test_refusal_after_a_reply_is_not_resent() -> None:
    """Once a server replied, the last datagram is not kept, so a later refusal resends nothing."""
    rig = UdpRig()
    rig.send(b"q", A)
    port = rig.server_port("s1")
    port.reply(b"r")
    port.protocol.connectionRefused()
    assert rig.frontend.current == 0
    assert " SD refused " in rig.sink.lines[0]


def test_server_going_down_ends_its_sessions() -> None:
    """When a server goes down its sessions end, and the client's next datagram picks another server."""
    rig = UdpRig()
    rig.send(b"q", A)
    port = rig.server_port("s1")
    rig.backend.server("s1").set_health(False)
    assert port.closed
    assert " DD down " in rig.sink.lines[0]
    rig.send(b"q2", A)
    assert rig.server_port("s2").written == [(b"q2", None)]


def test_draining_server_keeps_its_sessions() -> None:
    """A server set to drain keeps its sessions (no new ones)."""
    rig = UdpRig()
    rig.send(b"q", A)
    rig.backend.server("s1").set_admin("drain")
    assert rig.frontend.current == 1


def test_maintenance_ends_sessions_as_killed() -> None:
    """A server put in maintenance loses its sessions, logged KD."""
    rig = UdpRig()
    rig.send(b"q", A)
    rig.backend.server("s1").set_admin("maint")
    assert " KD killed " in rig.sink.lines[0]


def test_no_server_drops_and_counts() -> None:
    """With no server available the datagram is dropped and counted, and no socket opens."""
    rig = UdpRig(servers=udp_servers("s1"))
    rig.backend.server("s1").set_health(False)
    rig.send(b"q", A)
    assert rig.frontend.counters.dropped == 1
    assert len(rig.reactor.ports) == 1


def test_socket_failure_drops_and_counts() -> None:
    """When no socket can be opened (out of descriptors) the datagram is dropped and counted."""
    rig = UdpRig()
    rig.reactor.fail_listen = OSError(errno.EMFILE, "Too many open files")
    rig.send(b"q", A)
    assert rig.frontend.counters.dropped == 1
    assert rig.frontend.current == 0
    assert rig.backend.server("s1").current == 0


def test_counters_add_up_per_frontend_backend_and_server() -> None:
    """Sessions, datagrams and bytes are counted per frontend, backend and server, live and after the end."""
    rig = UdpRig()
    rig.send(b"abc", A)
    rig.server_port("s1").reply(b"hello")
    live = rig.frontend.snapshot()
    assert (live.sessions, live.datagrams_in, live.bytes_in, live.datagrams_out, live.bytes_out) == (
        1, 1, 3, 1, 5,
    )
    rig.reactor.advance(10.0)
    for counters in (rig.frontend.counters, rig.backend.udp, rig.backend.server("s1").udp):
        assert (counters.sessions, counters.bytes_in, counters.bytes_out) == (1, 3, 5)
    assert rig.backend.total == 1 and rig.backend.current == 0


def test_kill_from_outside() -> None:
    """A session can be killed from outside (admin), once."""
    rig = UdpRig()
    rig.send(b"q", A)
    session = rig.listener.clients[A]
    assert isinstance(session, UdpSession)
    session.kill("KD")
    session.kill("KD")
    assert len(rig.sink.lines) == 1


def test_stop_ends_every_session() -> None:
    """Stopping the frontend ends and logs every session, closes their sockets and stops the timer."""
    rig = UdpRig()
    rig.send(b"q", A)
    rig.send(b"q", B)
    rig.frontend.stop()
    assert rig.frontend.current == 0
    assert [p for p in rig.reactor.open_ports() if p is not rig.port] == []
    assert all(" KD stopped " in line for line in rig.sink.lines)
    assert rig.reactor.getDelayedCalls() == []
    rig.send(b"q", C)
    assert rig.frontend.counters.dropped == 1


def test_ipv6_servers_get_ipv6_sockets() -> None:
    """A session to an IPv6 server opens its socket on the IPv6 wildcard."""
    rig = UdpRig(servers=udp_servers("v6", host="2001:db8::{}"))
    rig.send(b"q", ("2001:db8::99", 5353))
    port = rig.server_port("v6")
    assert port.interface == "::"
    port.reply(b"r")
    assert rig.replies() == [(b"r", ("2001:db8::99", 5353))]


def test_source_hashing_agrees_across_instances() -> None:
    """Two balancers with the same servers send each client address to the same server."""
    one = UdpRig(servers=udp_servers("a", "b", "c"), balance="source")
    two = UdpRig(servers=udp_servers("a", "b", "c"), balance="source", reactor=FakeUdpReactor())
    chosen = []
    for rig in (one, two):
        picks = []
        for i in range(40):
            client = (f"198.51.100.{i}", 4000 + i)
            rig.send(b"q", client)
            picks.append(rig.listener.clients[client].server.name)
        chosen.append(picks)
    assert chosen[0] == chosen[1]
    assert len(set(chosen[0])) == 3
