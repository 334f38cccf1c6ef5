"""
Stages: what a frontend does with a new connection before it chooses a
server (L{l4lb.interfaces.IClientStage}), driven in memory.
"""

from __future__ import annotations

from typing import List, Optional

from zope.interface import implementer
from zope.interface.verify import verifyObject

from l4lb.interfaces import IClientStage
from l4lb.tcp.relay import Session
from l4lb.tcp.stages import MAX_INSPECT, StageRejected
from tests.relaykit import Relay, Wire


@implementer(IClientStage)
class LineStage:
    """
    Waits for a line, consumes it, and routes by it: C{b"deny"} refuses the
    connection, anything else becomes the session's C{sni}.  On expiry it
    lets the connection through untouched when C{lenient}.
    """

    def __init__(self, lenient: bool = False) -> None:
        self.lenient = lenient
        self.seen: List[bytes] = []

    def inspect(self, session: Session, data: bytearray) -> Optional[int]:
        self.seen.append(bytes(data))
        end = data.find(b"\n")
        if end < 0:
            return None
        line = bytes(data[:end])
        if line == b"deny":
            raise StageRejected("PR", "denied by line")
        session.sni = line.decode()
        return end + 1

    def expired(self, session: Session, data: bytearray) -> Optional[int]:
        return 0 if self.lenient else None


@implementer(IClientStage)
class SourceStage:
    """
    Decides on the address alone, without reading: refuses 127.0.0.1 when
    C{deny}, and counts the sessions it let through until they end.
    """

    def __init__(self, deny: bool = False) -> None:
        self.deny = deny
        self.open = 0

    def inspect(self, session: Session, data: bytearray) -> Optional[int]:
        if self.deny:
            raise StageRejected("PR")
        self.open += 1
        session.on_end = self._ended
        return 0

    def expired(self, session: Session, data: bytearray) -> Optional[int]:
        raise AssertionError("never waits")

    def _ended(self, session: Session) -> None:
        self.open -= 1


def test_stages_provide_the_interface() -> None:
    """The stages used here implement IClientStage fully."""
    assert verifyObject(IClientStage, LineStage())
    assert verifyObject(IClientStage, SourceStage())


def test_stage_reads_then_server_gets_the_rest_first(data_path: str) -> None:
    """
    The client is read while a stage inspects, no server is tried before it
    decides, and what it did not consume reaches the server before any later
    byte, on either data path.
    """
    relay = Relay(path=data_path)
    stage = LineStage()
    relay.frontend.stages = [stage]
    leg, client = relay.accept()
    relay.client_sends(leg, b"db.example")
    assert leg.session.state == "inspecting"
    relay.client_sends(leg, b"\nhello ")
    # Dispatched: a real loopback server (the lean path's) may have accepted
    # already.
    assert leg.session.state in ("connecting", "established")
    if data_path == "classic":
        assert relay.attempts() == [("127.0.10.1", 80)]
        assert client.producerState == "paused"
    server, st = relay.complete()
    wire = Wire(relay, leg, client, server, st)
    wire.send("client", b"world")
    assert wire.received("server") == b"hello world"
    assert leg.session.sni == "db.example"
    assert relay.backend.current == 1


def test_refused_connection_is_closed_logged_and_counted() -> None:
    """A refusal closes the client at once, logs PR and <NOSRV>, and counts."""
    relay = Relay()
    relay.frontend.stages = [LineStage()]
    leg, client = relay.accept()
    leg.dataReceived(b"deny\n")
    assert client.aborted
    leg.connectionLost()
    assert relay.attempts() == []
    assert relay.frontend.denied == 1
    assert relay.backend.current == 0 and relay.backend.total == 0
    assert relay.gate.current == 0
    (line,) = relay.sink.lines
    assert " fe be/<NOSRV> " in line and " PR " in line


def test_stage_without_reading_decides_at_accept() -> None:
    """A stage that needs no bytes refuses before anything is read."""
    relay = Relay()
    relay.frontend.stages = [SourceStage(deny=True)]
    leg, client = relay.accept()
    assert client.aborted
    leg.connectionLost()
    assert relay.frontend.denied == 1
    assert " PR " in relay.sink.lines[0]


def test_stages_run_in_order_and_see_what_is_left(data_path: str) -> None:
    """Each stage sees only what the stages before it did not consume, and
    the server gets the rest first, on either data path."""
    relay = Relay(path=data_path)
    first, second = LineStage(), LineStage()
    relay.frontend.stages = [first, second]
    leg, client = relay.accept()
    relay.client_sends(leg, b"one\ntwo\nrest")
    assert leg.session.sni == "two"
    assert second.seen == [b"two\nrest"]
    server, st = relay.complete()
    assert Wire(relay, leg, client, server, st).received("server") == b"rest"


def test_end_hook_runs_once_when_done() -> None:
    """A stage's C{on_end} runs once, when both sockets are closed (the
    classic path's legs are told by hand when each socket closes)."""
    relay = Relay()
    stage = SourceStage()
    relay.frontend.stages = [stage]
    leg, _ = relay.accept()
    assert stage.open == 1
    server_leg, _ = relay.complete()
    assert server_leg is not None
    leg.connectionLost()
    assert stage.open == 1
    server_leg.connectionLost()
    assert stage.open == 0


def test_end_hook_runs_when_the_session_ends(data_path: str) -> None:
    """A stage's C{on_end} runs once the session ended, on either data path."""
    relay = Relay(path=data_path)
    stage = SourceStage()
    relay.frontend.stages = [stage]
    wire = relay.connect()
    assert stage.open == 1
    wire.shut("client")
    assert stage.open == 1
    wire.shut("server")
    wire.finish()
    assert stage.open == 0


def test_inspect_delay_expiry_closes_or_lets_through() -> None:
    """
    When C{inspect-delay} passes, a strict stage's connection is closed with
    cR, and a lenient stage's goes on with what was read.
    """
    relay = Relay()
    relay.frontend.stages = [LineStage()]
    relay.frontend.inspect_delay = 5.0
    leg, client = relay.accept()
    leg.dataReceived(b"partial")
    relay.reactor.advance(4.9)
    assert not client.aborted
    relay.reactor.advance(0.2)
    assert client.aborted
    leg.connectionLost()
    assert " cR " in relay.sink.lines[0]

    relay.frontend.stages = [LineStage(lenient=True)]
    leg, client = relay.accept()
    leg.dataReceived(b"partial")
    relay.reactor.advance(5.1)
    assert not client.aborted
    _, server = relay.complete()
    assert server.value() == b"partial"


def test_client_leaving_while_inspected_logs_CR() -> None:
    """A client that closes before its stages decide is logged CR."""
    relay = Relay()
    relay.frontend.stages = [LineStage()]
    relay.frontend.inspect_delay = 5.0
    leg, _ = relay.accept()
    leg.dataReceived(b"x")
    leg.connectionLost()
    assert " CR " in relay.sink.lines[0]
    assert relay.reactor.getDelayedCalls() == []
    assert relay.gate.current == 0


def test_too_much_before_a_decision_is_refused() -> None:
    """A client cannot make a stage buffer more than MAX_INSPECT bytes."""
    relay = Relay()
    relay.frontend.stages = [LineStage()]
    leg, client = relay.accept()
    leg.dataReceived(b"x" * MAX_INSPECT)
    assert not client.aborted
    leg.dataReceived(b"x")
    assert client.aborted


def test_server_preamble_comes_first_on_every_attempt(data_path: str) -> None:
    """
    A server's preamble is made for each connection that succeeds, and is
    written before the bytes read while inspecting and everything relayed,
    on either data path.
    """
    relay = Relay(path=data_path)
    relay.frontend.stages = [LineStage()]
    for server in relay.backend.servers:
        server.preamble = lambda session: f"HDR {session.client_host}\n".encode()
    leg, client = relay.accept()
    relay.client_sends(leg, b"name\nearly ")
    server_leg, st = relay.complete()
    wire = Wire(relay, leg, client, server_leg, st)
    wire.send("client", b"late")
    assert wire.received("server") == b"HDR 127.0.0.1\nearly late"
