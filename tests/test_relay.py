"""
The relay's state machine, driven in memory with a clock: connecting,
retries, relaying, half-close, timeouts and the log line.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.python.failure import Failure

from l4lb.config.model import Timeouts
from tests.relaykit import Relay

DONE = Failure(error.ConnectionDone())
RESET = Failure(error.ConnectionLost())


def fields(line: str) -> list[str]:
    return line.split(" ")


def test_client_paused_until_server_connects() -> None:
    """Nothing is read from the client until the server accepted."""
    relay = Relay()
    client, ct = relay.accept()
    assert ct.producerState == "paused"
    assert relay.attempts() == [("127.0.10.1", 80)]
    relay.complete()
    assert ct.producerState == "producing"


def test_relays_both_ways_and_counts() -> None:
    """Bytes go through unchanged in both directions and are counted."""
    relay = Relay()
    client, ct = relay.accept()
    server, st = relay.complete()
    client.dataReceived(b"hello ")
    client.dataReceived(b"server")
    server.dataReceived(b"hi client")
    assert st.value() == b"hello server"
    assert ct.value() == b"hi client"
    assert (client.session.bytes_in, client.session.bytes_out) == (12, 9)


def test_each_transport_produces_for_the_other() -> None:
    """Flow control: each transport is the streaming producer of the other."""
    relay = Relay()
    client, ct = relay.accept()
    server, st = relay.complete()
    assert ct.producer.source is st and ct.streaming
    assert st.producer.source is ct and st.streaming


def test_half_close_client_first() -> None:
    """A client EOF shuts the server's write half; the reply still flows."""
    relay = Relay()
    client, ct = relay.accept()
    server, st = relay.complete()
    client.dataReceived(b"request")
    client.readConnectionLost()
    assert st.write_closed and not ct.write_closed
    assert st.producer is None
    server.dataReceived(b"reply")
    assert ct.value() == b"reply"
    assert not ct.disconnecting
    server.readConnectionLost()
    assert ct.write_closed
    assert ct.disconnecting and st.disconnecting
    client.connectionLost(DONE)
    server.connectionLost(DONE)
    (line,) = relay.sink.lines
    assert fields(line)[5] == "5" and fields(line)[6] == "--"


def test_half_close_server_first() -> None:
    """A server EOF shuts the client's write half; the client may still send."""
    relay = Relay()
    client, ct = relay.accept()
    server, st = relay.complete()
    server.dataReceived(b"banner")
    server.readConnectionLost()
    assert ct.write_closed and not st.write_closed
    client.dataReceived(b"more")
    assert st.value() == b"more"
    client.readConnectionLost()
    assert ct.disconnecting and st.disconnecting


def test_repeated_eof_is_ignored() -> None:
    """A second end-of-stream notice from one side changes nothing."""
    relay = Relay()
    client, ct = relay.accept()
    server, st = relay.complete()
    client.readConnectionLost()
    client.readConnectionLost()
    assert not ct.disconnecting and not st.disconnecting


def test_client_reset_closes_server_after_flush() -> None:
    """A client reset during data closes the server side, logged CD."""
    relay = Relay()
    client, ct = relay.accept()
    server, st = relay.complete()
    client.dataReceived(b"x")
    client.connectionLost(RESET)
    assert st.disconnecting and not st.aborted
    server.connectionLost(DONE)
    (line,) = relay.sink.lines
    assert fields(line)[6] == "CD"


def test_server_reset_closes_client() -> None:
    """A server reset during data closes the client side, logged SD."""
    relay = Relay()
    client, ct = relay.accept()
    server, st = relay.complete()
    server.connectionLost(RESET)
    assert ct.disconnecting
    client.connectionLost(DONE)
    assert fields(relay.sink.lines[0])[6] == "SD"


def test_round_robin_over_connections() -> None:
    """New connections alternate over equally weighted servers."""
    relay = Relay()
    for _ in range(4):
        relay.accept()
    assert [a[0] for a in relay.attempts()] == ["127.0.10.1", "127.0.10.2"] * 2


def test_refused_then_redispatched_on_last_retry() -> None:
    """With retries 2 and redispatch, a refused server is retried after a
    pause, and the last retry goes to the other server."""
    relay = Relay(retries=2, redispatch=-1)
    client, ct = relay.accept()
    relay.fail(error.ConnectionRefusedError())
    assert len(relay.attempts()) == 1
    relay.reactor.advance(1.0)
    assert relay.attempts()[-1] == ("127.0.10.1", 80)
    relay.fail(error.ConnectionRefusedError())
    assert relay.attempts()[-1] == ("127.0.10.2", 80)
    server, st = relay.complete()
    client.dataReceived(b"ok")
    assert st.value() == b"ok"
    server.readConnectionLost()
    client.readConnectionLost()
    client.connectionLost(DONE)
    server.connectionLost(DONE)
    line = relay.sink.lines[0]
    assert " be/s2 " in line and fields(line)[7].endswith("/+2")


def test_retry_pause_is_capped_by_connect_timeout() -> None:
    """The pause before retrying the same server is min(timeout connect, 1s)."""
    relay = Relay(timeouts=Timeouts(connect=0.2), redispatch=0)
    relay.accept()
    relay.fail(error.ConnectionRefusedError())
    relay.reactor.advance(0.19)
    assert len(relay.attempts()) == 1
    relay.reactor.advance(0.01)
    assert len(relay.attempts()) == 2


def test_all_refused_logs_SC() -> None:
    """When every attempt is refused the client is closed and SC logged."""
    relay = Relay(retries=1, redispatch=0)
    client, ct = relay.accept()
    relay.fail(error.ConnectionRefusedError())
    relay.reactor.advance(1)
    relay.fail(error.ConnectionRefusedError())
    assert ct.aborted
    client.connectionLost(DONE)
    line = relay.sink.lines[0]
    assert fields(line)[6] == "SC" and fields(line)[4] == "0/-1/1000"


def test_connect_timeout_per_attempt() -> None:
    """Each attempt gets `timeout connect`; the last one expiring logs sC."""
    relay = Relay(timeouts=Timeouts(connect=2.0), retries=1, redispatch=-1)
    client, ct = relay.accept()
    relay.reactor.advance(2.0)
    assert relay.reactor.connectors[0].stoppedConnecting
    assert relay.attempts()[-1] == ("127.0.10.2", 80)
    relay.reactor.advance(2.0)
    assert ct.aborted
    client.connectionLost(DONE)
    assert fields(relay.sink.lines[0])[6] == "sC"


def test_client_leaving_cancels_pending_connect() -> None:
    """A client that leaves while connecting cancels the attempt: CC."""
    relay = Relay()
    client, ct = relay.accept()
    client.connectionLost(RESET)
    assert relay.reactor.connectors[0].stoppedConnecting
    assert relay.session_of().buildProtocol(None) is None
    assert fields(relay.sink.lines[0])[6] == "CC"
    assert relay.backend.servers[0].current == 0


def test_no_server_logs_NOSRV() -> None:
    """A backend with no usable server closes at once with SC and <NOSRV>."""
    relay = Relay(backend_servers=())
    client, ct = relay.accept()
    assert ct.aborted
    client.connectionLost(DONE)
    line = relay.sink.lines[0]
    assert " be/<NOSRV> " in line and fields(line)[6] == "SC"


def test_client_timeout_in_data() -> None:
    """An idle connection is closed after `timeout client`: cD."""
    relay = Relay(timeouts=Timeouts(connect=5, client=10, server=20))
    client, ct = relay.accept()
    server, st = relay.complete()
    relay.reactor.advance(6)
    client.dataReceived(b"x")
    relay.reactor.advance(9.9)
    assert not ct.aborted
    relay.reactor.advance(0.1)
    assert ct.aborted and st.aborted
    client.connectionLost(DONE)
    server.connectionLost(DONE)
    assert fields(relay.sink.lines[0])[6] == "cD"


def test_server_timeout_in_data() -> None:
    """With the shorter server timeout, idleness is logged sD."""
    relay = Relay(timeouts=Timeouts(connect=5, client=20, server=10))
    client, ct = relay.accept()
    relay.complete()
    relay.reactor.advance(10)
    assert ct.aborted
    assert relay.session_of().termination == "sD"


def test_tunnel_replaces_client_and_server() -> None:
    """`timeout tunnel` applies instead of client/server once established."""
    relay = Relay(timeouts=Timeouts(connect=5, client=1, server=1, tunnel=30))
    client, ct = relay.accept()
    relay.complete()
    relay.reactor.advance(29)
    assert not ct.aborted
    relay.reactor.advance(1)
    assert ct.aborted


def test_client_fin_applies_after_client_half_close() -> None:
    """After the client half-closes, its side may idle only `client-fin`."""
    relay = Relay(timeouts=Timeouts(connect=5, client=50, server=50, client_fin=3))
    client, ct = relay.accept()
    relay.complete()
    relay.reactor.advance(10)
    client.readConnectionLost()
    relay.reactor.advance(2.9)
    assert not ct.aborted
    relay.reactor.advance(0.1)
    assert ct.aborted
    assert relay.session_of().termination == "cD"


def test_server_fin_applies_after_server_half_close() -> None:
    """After the server half-closes, its side may idle only `server-fin`."""
    relay = Relay(timeouts=Timeouts(connect=5, client=50, server=50, server_fin=2))
    client, ct = relay.accept()
    server, st = relay.complete()
    server.readConnectionLost()
    relay.reactor.advance(2)
    assert st.aborted
    assert relay.session_of().termination == "sD"


def test_graceful_close_that_never_flushes_is_aborted() -> None:
    """A peer that never reads cannot hold a closing session forever."""
    relay = Relay(timeouts=Timeouts(connect=5, client=10, server=10))
    client, ct = relay.accept()
    server, st = relay.complete()
    client.connectionLost(RESET)
    assert st.disconnecting and not st.aborted
    relay.reactor.advance(10)
    assert st.aborted


def test_log_line_layout() -> None:
    """The log line follows HAProxy's tcplog layout field by field."""
    relay = Relay()
    relay.reactor.advance(1234567890.5)
    client, ct = relay.accept()
    relay.reactor.advance(0.003)
    server, st = relay.complete()
    server.dataReceived(b"x" * 212)
    relay.reactor.advance(5.004)
    client.readConnectionLost()
    server.readConnectionLost()
    client.connectionLost(DONE)
    server.connectionLost(DONE)
    f = fields(relay.sink.lines[0])
    assert f[0] == "127.0.0.1:40001"
    assert f[1].startswith("[") and f[1].endswith("]") and ":" in f[1]
    assert f[2:5] == ["fe", "be/s1", "0/3/5007"]
    assert f[5:7] == ["212", "--"]
    assert f[7] == "1/1/1/1/0" and f[8] == "0/0"


def test_counters_return_to_zero() -> None:
    """Connection counts on frontend, backend, server and process go back
    to zero once sessions end, whatever way they end."""
    relay = Relay()
    legs = []
    for _ in range(3):
        c, _ct = relay.accept()
        s, _st = relay.complete()
        legs.append((c, s))
    assert relay.limiter.current == 3 and relay.backend.current == 3
    c, s = legs[0]
    c.connectionLost(RESET)
    s.connectionLost(DONE)
    c, s = legs[1]
    c.readConnectionLost()
    s.readConnectionLost()
    c.connectionLost(DONE)
    s.connectionLost(DONE)
    c, s = legs[2]
    relay.reactor.advance(50)
    c.connectionLost(DONE)
    s.connectionLost(DONE)
    assert relay.limiter.current == 0 and relay.gate.current == 0
    assert relay.backend.current == 0
    assert [srv.current for srv in relay.backend.servers] == [0, 0]
    assert len(relay.sink.lines) == 3


def test_dontlognull_skips_connections_without_data() -> None:
    """With `option dontlognull`, a connection that carried no byte is not
    logged, and one that did is."""
    relay = Relay(dontlognull=True)
    for payload in (b"", b"x"):
        client, ct = relay.accept()
        server, st = relay.complete()
        if payload:
            client.dataReceived(payload)
        client.readConnectionLost()
        server.readConnectionLost()
        client.connectionLost(DONE)
        server.connectionLost(DONE)
    assert len(relay.sink.lines) == 1


def test_kill_closes_both_sides_with_the_given_state() -> None:
    """kill() aborts both legs and logs the state it was given; the server
    forgets the session."""
    relay = Relay()
    client, ct = relay.accept()
    server, st = relay.complete()
    srv = relay.backend.servers[0]
    assert srv.sessions == {client.session}
    client.session.kill("KD")
    assert ct.aborted and st.aborted
    client.connectionLost(DONE)
    server.connectionLost(DONE)
    assert fields(relay.sink.lines[0])[6] == "KD"
    assert srv.sessions == set()


def test_kill_while_connecting_cancels_the_attempt() -> None:
    """kill() during connect stops the attempt."""
    relay = Relay()
    client, ct = relay.accept()
    client.session.kill("DC")
    assert relay.reactor.connectors[0].stoppedConnecting and ct.aborted


def test_server_not_reading_is_blamed_sD() -> None:
    """
    A server that does not read what it is sent (its buffer is full and the
    client is paused) is waited for `timeout server`, not `timeout client`,
    and logged sD, as HAProxy does.
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=10, server=20))
    client, ct = relay.accept()
    server, st = relay.complete()
    client.dataReceived(b"x" * 1000)
    # The server transport's buffer is full: it pauses the client.
    st.producer.pauseProducing()
    assert ct.producerState == "paused"
    relay.reactor.advance(19.9)
    assert not ct.aborted
    relay.reactor.advance(0.1)
    assert ct.aborted and st.aborted
    client.connectionLost(DONE)
    server.connectionLost(DONE)
    assert fields(relay.sink.lines[0])[6] == "sD"


def test_server_not_reading_blamed_sD_even_with_a_longer_client_timeout() -> None:
    """
    With the server's timeout the shorter one, a server that does not read
    is still blamed (sD), at `timeout server`.
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=20, server=10))
    client, ct = relay.accept()
    server, st = relay.complete()
    client.dataReceived(b"x")
    st.producer.pauseProducing()
    relay.reactor.advance(10)
    assert ct.aborted
    assert relay.session_of().termination == "sD"


def test_client_not_reading_is_blamed_cD() -> None:
    """
    A client that does not read what it is sent (the server is paused) is
    waited for `timeout client`, not `timeout server`, and logged cD.
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=20, server=10))
    client, ct = relay.accept()
    server, st = relay.complete()
    server.dataReceived(b"y" * 1000)
    ct.producer.pauseProducing()
    assert st.producerState == "paused"
    relay.reactor.advance(19.9)
    assert not ct.aborted
    relay.reactor.advance(0.1)
    assert ct.aborted
    assert relay.session_of().termination == "cD"


def test_tunnel_timeout_blames_the_side_that_does_not_read() -> None:
    """
    Under `timeout tunnel` both sides have the same limit; a server that
    does not read is still the one blamed (sD).
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=1, server=1, tunnel=30))
    client, ct = relay.accept()
    server, st = relay.complete()
    client.dataReceived(b"x")
    st.producer.pauseProducing()
    relay.reactor.advance(30)
    assert ct.aborted
    assert relay.session_of().termination == "sD"


def test_server_reading_again_counts_as_activity() -> None:
    """
    Once a stalled server takes its data the client is read again and the
    idle time starts anew: the client is not blamed for the server's stall.
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=2, server=4))
    client, ct = relay.accept()
    server, st = relay.complete()
    client.dataReceived(b"x")
    st.producer.pauseProducing()
    relay.reactor.advance(3)
    assert not ct.aborted
    st.producer.resumeProducing()
    assert ct.producerState == "producing"
    relay.reactor.advance(1.9)
    assert not ct.aborted
    relay.reactor.advance(0.1)
    assert ct.aborted
    assert relay.session_of().termination == "cD"


def test_idle_without_a_stalled_side_keeps_the_shortest_timeout() -> None:
    """
    Nothing waiting either way: the shorter of `timeout client` and
    `timeout server` applies, with its side's code (cD on a tie).
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=7, server=7))
    client, ct = relay.accept()
    relay.complete()
    relay.reactor.advance(7)
    assert ct.aborted
    assert relay.session_of().termination == "cD"
