"""
The relay's state machine, driven with a clock: connecting, retries,
relaying, half-close, timeouts and the log line.

Every test of an established session takes the C{data_path} fixture and
runs twice through the real session: on the classic data path (in-memory
transports) and on the lean one (real loopback sockets, a recording
reactor).  Tests of connecting run in memory only: no data path exists
yet.  Tests specific to one path say so.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.python.failure import Failure

from l4lb.config.model import Timeouts
from tests.relaykit import Relay, Wire, servers

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


def test_relays_both_ways_and_counts(data_path: str) -> None:
    """Bytes go through unchanged in both directions and are counted."""
    relay = Relay(path=data_path)
    wire = relay.connect()
    wire.send("client", b"hello ")
    wire.send("client", b"server")
    wire.send("server", b"hi client")
    assert wire.received("server") == b"hello server"
    assert wire.received("client") == b"hi client"
    assert (wire.session.bytes_in, wire.session.bytes_out) == (12, 9)


def test_each_transport_produces_for_the_other() -> None:
    """Flow control on the classic data path (specific to it): each
    transport is the streaming producer of the other."""
    relay = Relay()
    client, ct = relay.accept()
    server, st = relay.complete()
    assert ct.producer.source is st and ct.streaming
    assert st.producer.source is ct and st.streaming


def test_half_close_client_first(data_path: str) -> None:
    """A client EOF shuts the server's write half; the reply still flows."""
    relay = Relay(path=data_path)
    wire = relay.connect()
    wire.send("client", b"request")
    wire.shut("client")
    assert wire.write_shut("server") and not wire.write_shut("client")
    assert wire.received("server") == b"request"
    wire.send("server", b"reply")
    assert wire.received("client") == b"reply"
    assert not wire.closing("client")
    wire.shut("server")
    assert wire.write_shut("client")
    assert wire.closing("client") and wire.closing("server")
    wire.finish()
    (line,) = relay.sink.lines
    assert fields(line)[5] == "5" and fields(line)[6] == "--"


def test_half_close_server_first(data_path: str) -> None:
    """A server EOF shuts the client's write half; the client may still send."""
    relay = Relay(path=data_path)
    wire = relay.connect()
    wire.send("server", b"banner")
    wire.shut("server")
    assert wire.write_shut("client") and not wire.write_shut("server")
    wire.send("client", b"more")
    assert wire.received("server") == b"more"
    wire.shut("client")
    assert wire.closing("client") and wire.closing("server")


def test_repeated_eof_is_ignored(data_path: str) -> None:
    """A second end-of-stream notice from one side changes nothing."""
    relay = Relay(path=data_path)
    wire = relay.connect()
    wire.shut("client")
    wire.session.client_eof()
    assert not wire.closing("client") and not wire.closing("server")


def test_client_reset_closes_server_after_flush(data_path: str) -> None:
    """A client reset during data closes the server side, logged CD."""
    relay = Relay(path=data_path)
    wire = relay.connect()
    wire.send("client", b"x")
    wire.reset("client")
    assert wire.closing("server") and not wire.aborted("server")
    assert wire.received("server") == b"x"
    wire.finish()
    (line,) = relay.sink.lines
    assert fields(line)[6] == "CD"


def test_server_reset_closes_client(data_path: str) -> None:
    """A server reset during data closes the client side, logged SD."""
    relay = Relay(path=data_path)
    wire = relay.connect()
    wire.reset("server")
    assert wire.closing("client")
    wire.finish()
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


def test_error_and_retry_counters_as_haproxy() -> None:
    """A connection refused three times counts one connection error (econ)
    and two retries (wretr) on its server; one refused once and then
    redispatched counts a redispatch (wredis) only, no error nor retry."""
    relay = Relay(backend_servers=servers(("s1", 1)), retries=2, redispatch=0)
    client, _ = relay.accept()
    for _ in range(3):
        relay.fail(error.ConnectionRefusedError())
        relay.reactor.advance(1.0)
    client.connectionLost(DONE)
    s1 = relay.backend.servers[0]
    assert (s1.failed_connects, s1.retries, s1.redispatches) == (1, 2, 0)
    assert fields(relay.sink.lines[0])[6] == "SC"

    relay = Relay(retries=1, redispatch=-1)
    relay.accept()
    relay.fail(error.ConnectionRefusedError())
    assert relay.attempts()[-1] == ("127.0.10.2", 80)
    s1, s2 = relay.backend.servers
    assert (s1.failed_connects, s1.retries, s1.redispatches) == (0, 0, 1)
    assert (relay.backend.retries, relay.backend.redispatches) == (0, 1)


def test_retry_pause_is_capped_by_connect_timeout() -> None:
    """The pause before retrying the same server is min(timeout connect, 1s)."""
    relay = Relay(timeouts=Timeouts(connect=0.2), redispatch=0)
    relay.accept()
    relay.fail(error.ConnectionRefusedError())
    relay.reactor.advance(0.19)
    assert len(relay.attempts()) == 1
    relay.reactor.advance(0.01)
    assert len(relay.attempts()) == 2


def test_retry_after_connect_timeout_is_immediate() -> None:
    """After an attempt that timed out, the retry to the same server starts
    at once (HAProxy pauses only after an attempt refused early), so that
    C{retries 1} with C{timeout connect 300ms} ends after 600 ms, not 900."""
    relay = Relay(timeouts=Timeouts(connect=0.3), retries=1, redispatch=0)
    client, ct = relay.accept()
    relay.reactor.advance(0.3)
    assert len(relay.attempts()) == 2
    relay.reactor.advance(0.3)
    assert ct.aborted
    client.connectionLost(DONE)
    f = fields(relay.sink.lines[0])
    assert f[6] == "sC" and f[4] == "0/-1/600"


def test_log_counts_leave_out_the_logged_connection(data_path: str) -> None:
    """With two connections open on one server, the first one's line counts
    two in the process and the frontend but only the other one in the
    backend and on the server (HAProxy's %ac/%fc/%bc/%sc)."""
    relay = Relay(backend_servers=servers(("s1", 1)), path=data_path)
    client, ct = relay.accept()
    server, st = relay.complete()
    wire = Wire(relay, client, ct, server, st)
    relay.accept()
    relay.complete()
    wire.shut("client")
    wire.shut("server")
    wire.finish()
    assert fields(relay.sink.lines[0])[7] == "2/2/1/1/0"


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


def test_client_timeout_in_data(data_path: str) -> None:
    """An idle connection is closed after `timeout client`: cD."""
    relay = Relay(timeouts=Timeouts(connect=5, client=10, server=20), path=data_path)
    wire = relay.connect()
    relay.reactor.advance(6)
    wire.send("client", b"x")
    relay.reactor.advance(9.9)
    assert not wire.aborted("client")
    relay.reactor.advance(0.1)
    assert wire.aborted("client") and wire.aborted("server")
    wire.finish()
    assert fields(relay.sink.lines[0])[6] == "cD"


def test_server_timeout_in_data(data_path: str) -> None:
    """With the shorter server timeout, idleness is logged sD."""
    relay = Relay(timeouts=Timeouts(connect=5, client=20, server=10), path=data_path)
    wire = relay.connect()
    relay.reactor.advance(10)
    assert wire.aborted("client")
    assert wire.session.termination == "sD"


def test_tunnel_replaces_client_and_server(data_path: str) -> None:
    """`timeout tunnel` applies instead of client/server once established."""
    relay = Relay(timeouts=Timeouts(connect=5, client=1, server=1, tunnel=30), path=data_path)
    wire = relay.connect()
    relay.reactor.advance(29)
    assert not wire.aborted("client")
    relay.reactor.advance(1)
    assert wire.aborted("client")


def test_client_fin_applies_after_client_half_close(data_path: str) -> None:
    """After the client half-closes, its side may idle only `client-fin`."""
    relay = Relay(
        timeouts=Timeouts(connect=5, client=50, server=50, client_fin=3), path=data_path
    )
    wire = relay.connect()
    relay.reactor.advance(10)
    wire.shut("client")
    relay.reactor.advance(2.9)
    assert not wire.aborted("client")
    relay.reactor.advance(0.1)
    assert wire.aborted("client")
    assert wire.session.termination == "cD"


def test_server_fin_applies_after_server_half_close(data_path: str) -> None:
    """After the server half-closes, its side may idle only `server-fin`."""
    relay = Relay(
        timeouts=Timeouts(connect=5, client=50, server=50, server_fin=2), path=data_path
    )
    wire = relay.connect()
    wire.shut("server")
    relay.reactor.advance(2)
    assert wire.aborted("server")
    assert wire.session.termination == "sD"


def test_graceful_close_that_never_flushes_is_aborted(data_path: str) -> None:
    """A peer that never reads cannot hold a closing session forever: what
    is left for a server that does not read is dropped after the timeout."""
    relay = Relay(timeouts=Timeouts(connect=5, client=10, server=10), path=data_path)
    wire = relay.connect()
    wire.stall("server")
    wire.fail("client")
    assert wire.closing("server") and not wire.aborted("server")
    relay.reactor.advance(10)
    assert wire.aborted("server")


def test_log_line_layout(data_path: str) -> None:
    """The log line follows HAProxy's tcplog layout field by field."""
    relay = Relay(path=data_path)
    relay.reactor.advance(1234567890.5)
    client, ct = relay.accept()
    relay.reactor.advance(0.003)
    server, st = relay.complete()
    wire = Wire(relay, client, ct, server, st)
    wire.send("server", b"x" * 212)
    relay.reactor.advance(5.004)
    wire.shut("client")
    wire.shut("server")
    wire.finish()
    f = fields(relay.sink.lines[0])
    assert f[0] == "127.0.0.1:40001"
    assert f[1].startswith("[") and f[1].endswith("]") and ":" in f[1]
    assert f[2:5] == ["fe", "be/s1", "0/3/5007"]
    assert f[5:7] == ["212", "--"]
    # As HAProxy, the backend and server counts leave out the connection
    # being logged; the process and frontend counts include it.
    assert f[7] == "1/1/0/0/0" and f[8] == "0/0"


def test_counters_return_to_zero(data_path: str) -> None:
    """Connection counts on frontend, backend, server and process go back
    to zero once sessions end, whatever way they end."""
    relay = Relay(path=data_path)
    wires = [relay.connect() for _ in range(3)]
    assert relay.limiter.current == 3 and relay.backend.current == 3
    wires[0].reset("client")
    wires[0].finish()
    wires[1].shut("client")
    wires[1].shut("server")
    wires[1].finish()
    relay.reactor.advance(50)
    wires[2].finish()
    assert relay.limiter.current == 0 and relay.gate.current == 0
    assert relay.backend.current == 0
    assert [srv.current for srv in relay.backend.servers] == [0, 0]
    assert len(relay.sink.lines) == 3


def test_dontlognull_skips_connections_without_data(data_path: str) -> None:
    """With `option dontlognull`, a connection that carried no byte is not
    logged, and one that did is."""
    relay = Relay(dontlognull=True, path=data_path)
    for payload in (b"", b"x"):
        wire = relay.connect()
        if payload:
            wire.send("client", payload)
        wire.shut("client")
        wire.shut("server")
        wire.finish()
    assert len(relay.sink.lines) == 1


def test_kill_closes_both_sides_with_the_given_state(data_path: str) -> None:
    """kill() aborts both legs and logs the state it was given; the server
    forgets the session."""
    relay = Relay(path=data_path)
    wire = relay.connect()
    srv = relay.backend.servers[0]
    assert srv.sessions == {wire.session}
    wire.session.kill("KD")
    assert wire.aborted("client") and wire.aborted("server")
    wire.finish()
    assert fields(relay.sink.lines[0])[6] == "KD"
    assert srv.sessions == set()


def test_kill_while_connecting_cancels_the_attempt() -> None:
    """kill() during connect stops the attempt."""
    relay = Relay()
    client, ct = relay.accept()
    client.session.kill("DC")
    assert relay.reactor.connectors[0].stoppedConnecting and ct.aborted


def test_server_not_reading_is_blamed_sD(data_path: str) -> None:
    """
    A server that does not read what it is sent (the relay holds data for
    it and stops reading the client) is waited for `timeout server`, not
    `timeout client`, and logged sD, as HAProxy does.
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=10, server=20), path=data_path)
    wire = relay.connect()
    wire.stall("server")
    assert wire.held_up() == (True, False)
    relay.reactor.advance(19.9)
    assert not wire.aborted("client")
    relay.reactor.advance(0.1)
    assert wire.aborted("client") and wire.aborted("server")
    wire.finish()
    assert fields(relay.sink.lines[0])[6] == "sD"


def test_server_not_reading_blamed_sD_even_with_a_longer_client_timeout(
    data_path: str,
) -> None:
    """
    With the server's timeout the shorter one, a server that does not read
    is still blamed (sD), at `timeout server`.
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=20, server=10), path=data_path)
    wire = relay.connect()
    wire.stall("server")
    relay.reactor.advance(10)
    assert wire.aborted("client")
    assert wire.session.termination == "sD"


def test_client_not_reading_is_blamed_cD(data_path: str) -> None:
    """
    A client that does not read what it is sent (the server is not read
    meanwhile) is waited for `timeout client`, not `timeout server`, and
    logged cD.
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=20, server=10), path=data_path)
    wire = relay.connect()
    wire.stall("client")
    assert wire.held_up() == (False, True)
    relay.reactor.advance(19.9)
    assert not wire.aborted("client")
    relay.reactor.advance(0.1)
    assert wire.aborted("client")
    assert wire.session.termination == "cD"


def test_tunnel_timeout_blames_the_side_that_does_not_read(data_path: str) -> None:
    """
    Under `timeout tunnel` both sides have the same limit; a server that
    does not read is still the one blamed (sD).
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=1, server=1, tunnel=30), path=data_path)
    wire = relay.connect()
    wire.stall("server")
    relay.reactor.advance(30)
    assert wire.aborted("client")
    assert wire.session.termination == "sD"


def test_server_reading_again_counts_as_activity(data_path: str) -> None:
    """
    Once a stalled server takes its data the client is read again and the
    idle time starts anew: the client is not blamed for the server's stall.
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=2, server=4), path=data_path)
    wire = relay.connect()
    wire.stall("server")
    relay.reactor.advance(3)
    assert not wire.aborted("client")
    wire.unstall("server")
    assert wire.held_up() == (False, False)
    relay.reactor.advance(1.9)
    assert not wire.aborted("client")
    relay.reactor.advance(0.1)
    assert wire.aborted("client")
    assert wire.session.termination == "cD"


def test_idle_without_a_stalled_side_keeps_the_shortest_timeout(data_path: str) -> None:
    """
    Nothing waiting either way: the shorter of `timeout client` and
    `timeout server` applies, with its side's code (cD on a tie).
    """
    relay = Relay(timeouts=Timeouts(connect=5, client=7, server=7), path=data_path)
    wire = relay.connect()
    relay.reactor.advance(7)
    assert wire.aborted("client")
    assert wire.session.termination == "cD"


def test_killed_takes_the_phase_from_the_state() -> None:
    """A session ended from outside is logged with the cause, then the phase
    it was in: C while connecting, Q while queued, D once established."""
    from l4lb.tcp.phases import kill as kill_session

    relay = Relay(backend_servers=servers(("s1", 1)), maxconn=0)
    client, _ = relay.accept()
    assert client.session.killed("K") == "KC"
    kill_session(client.session, "K")
    client.connectionLost(DONE)
    relay.backend.servers[0].maxconn = 1
    first, _ = relay.accept()
    relay.complete()
    assert first.session.killed("D") == "DD"
    waiting, _ = relay.accept()
    assert waiting.session.state == "queued"
    waiting.session.kill_for("K")
    waiting.connectionLost(DONE)
    assert [fields(line)[6] for line in relay.sink.lines] == ["KC", "KQ"]


def test_killed_phase_for_every_state() -> None:
    """The phase letter follows HAProxy's: R while the client's first bytes
    are inspected, Q queued, C connecting, D in the data phase, and D for a
    UDP session, which has no state."""
    from l4lb.tcp.phases import killed

    states = ["inspecting", "queued", "connecting", "established", "closing", None]
    assert [killed(state, "K") for state in states] == ["KR", "KQ", "KC", "KD", "KD", "KD"]
    assert killed("connecting", "D") == "DC" and killed("established", "U") == "UD"


def test_session_keeps_the_log_settings_it_started_with() -> None:
    """A session logs to the sink it started with, in the format it started
    with, even when its frontend object is given others meanwhile."""
    from l4lb.logs import MemorySink

    relay = Relay()
    client, _ = relay.accept()
    server, _ = relay.complete()
    relay.frontend.sink = MemorySink()
    client.connectionLost(DONE)
    server.connectionLost(DONE)
    assert len(relay.sink.lines) == 1 and relay.frontend.sink.lines == []
