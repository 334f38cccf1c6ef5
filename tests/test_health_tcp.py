"""
TCP checks in memory: plain connects, tcp-check sequences against fake
Redis, SMTP and banner servers, agent conversations, and the time limits
of C{inter} and C{timeout check}.
"""

from __future__ import annotations

from typing import Any, List, Optional

import pytest
from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect
from zope.interface.verify import verifyObject

from l4lb.config.tcpcheck import parse_rule
from l4lb.health.agent import AgentCheck
from l4lb.health.status import CheckResult
from l4lb.health.tcp import TcpCheck
from l4lb.interfaces import IHealthCheck


class FakeRedis(Protocol):
    """Answers each PING line with +PONG, or with C{error} when set; never closes."""

    def __init__(self, error_reply: Optional[bytes] = None) -> None:
        self.error_reply = error_reply
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            if line.upper() == b"PING":
                self.transport.write(self.error_reply or b"+PONG\r\n")
            elif line.upper() == b"QUIT":
                self.transport.write(b"+OK\r\n")
                self.transport.loseConnection()


class FakeSmtp(Protocol):
    """Sends a 220 banner (or C{banner}); answers QUIT with 221 and closes."""

    def __init__(self, banner: bytes = b"220 mail.example ESMTP ready\r\n") -> None:
        self.banner = banner

    def connectionMade(self) -> None:
        self.transport.write(self.banner)

    def dataReceived(self, data: bytes) -> None:
        if data.upper().startswith(b"QUIT"):
            self.transport.write(b"221 bye\r\n")
            self.transport.loseConnection()


class Banner(Protocol):
    """Sends C{text} on connect, then closes (a generic banner protocol)."""

    def __init__(self, text: bytes, close: bool = True) -> None:
        self.text = text
        self.close = close

    def connectionMade(self) -> None:
        self.transport.write(self.text)
        if self.close:
            self.transport.loseConnection()


class Agent(Protocol):
    """Waits for C{expect} (if any), then answers C{reply} and closes."""

    def __init__(self, reply: bytes, expect: bytes = b"") -> None:
        self.reply = reply
        self.expect = expect
        self.got = b""

    def connectionMade(self) -> None:
        if not self.expect:
            self.transport.write(self.reply)
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.got += data
        if self.expect and self.expect in self.got:
            self.transport.write(self.reply)
            self.transport.loseConnection()


class Lab:
    """A check on a memory reactor, with helpers to let its connection succeed or fail."""

    def __init__(self, check_factory: Any = TcpCheck, **options: Any) -> None:
        self.reactor = MemoryReactorClock()
        options.setdefault("inter", 2.0)
        self.check = check_factory(self.reactor, lambda: "127.0.10.1", 80, **options)
        self.results: List[CheckResult] = []
        self.pump: Optional[IOPump] = None

    def run(self) -> None:
        self.check.run().addCallback(self.results.append)

    def attempt(self, index: int = -1) -> Any:
        return self.reactor.tcpClients[index]

    def accept(self, server: Protocol, index: int = -1) -> IOPump:
        host, port, factory = self.attempt(index)[:3]
        client = factory.buildProtocol(IPv4Address("TCP", host, port))
        assert client is not None
        self.pump = connect(
            server,
            FakeTransport(server, isServer=True),
            client,
            FakeTransport(client, isServer=False),
            greet=False,
        )
        self.pump.flush()
        return self.pump

    def refuse(self, reason: BaseException = error.ConnectionRefusedError(), index: int = -1) -> None:
        factory = self.attempt(index)[2]
        factory.clientConnectionFailed(self.reactor.connectors[index], Failure(reason))

    def result(self) -> CheckResult:
        assert len(self.results) == 1, self.results
        return self.results[0]


def rules(*lines: str) -> List[Any]:
    return [parse_rule(line) for line in lines]


REDIS = ("connect", "send PING\\r\\n", "expect string +PONG")


def test_checks_provide_the_interface() -> None:
    """TcpCheck and AgentCheck provide IHealthCheck."""
    lab = Lab()
    verifyObject(IHealthCheck, lab.check)
    verifyObject(IHealthCheck, AgentCheck(lab.reactor, lambda: "127.0.10.1", 9, 2.0))


def test_plain_connect_passes_with_L4OK() -> None:
    """A plain check passes (L4OK) once the server accepts, with its duration, and closes the connection."""
    lab = Lab()
    lab.run()
    assert lab.attempt()[:2] == ("127.0.10.1", 80)
    lab.reactor.advance(0.003)
    server = Protocol()
    lab.accept(server)
    result = lab.result()
    assert (result.status, result.description) == ("L4OK", "")
    assert result.duration == pytest.approx(0.003)
    assert server.transport.disconnecting


def test_refused_is_L4CON_connection_refused() -> None:
    """A refused connection is L4CON with the system's words."""
    lab = Lab()
    lab.run()
    lab.refuse()
    assert (lab.result().status, lab.result().description) == ("L4CON", "Connection refused")


def test_unreachable_uses_the_system_words() -> None:
    """Other connection errors are L4CON with their reason."""
    lab = Lab()
    lab.run()
    lab.refuse(error.NoRouteError())
    assert lab.result().status == "L4CON"
    assert lab.result().description


def test_connect_timeout_is_L4TOUT_after_inter() -> None:
    """Without timeout check, a connect that does not finish within inter is L4TOUT, and the attempt is abandoned."""
    lab = Lab(inter=0.2)
    lab.run()
    lab.reactor.advance(0.19)
    assert lab.results == []
    lab.reactor.advance(0.01)
    assert lab.result().status == "L4TOUT"
    assert lab.result().duration == pytest.approx(0.2)
    assert lab.reactor.connectors[0].stoppedConnecting


def test_timeout_check_bounds_connect_by_timeout_connect() -> None:
    """With timeout check, the connect is bounded by min(inter, timeout connect)."""
    lab = Lab(inter=2.0, timeout_check=5.0, timeout_connect=0.5)
    lab.run()
    lab.reactor.advance(0.5)
    assert lab.result().status == "L4TOUT"


def test_redis_ping_pong_passes() -> None:
    """The Redis sequence (PING / +PONG) passes with L7OK against a Redis-like server."""
    lab = Lab(rules=rules(*REDIS))
    lab.run()
    lab.accept(FakeRedis())
    assert (lab.result().status, lab.result().description) == ("L7OK", "(tcp-check)")


def test_redis_error_times_out_as_L7TOUT() -> None:
    """A Redis that answers -ERR and keeps the connection open fails with L7TOUT once inter has passed."""
    lab = Lab(rules=rules(*REDIS), inter=0.2)
    lab.run()
    lab.accept(FakeRedis(b"-ERR unknown command\r\n"))
    assert lab.results == []
    lab.reactor.advance(0.2)
    result = lab.result()
    assert result.status == "L7TOUT"
    assert result.description == "at step 3 of tcp-check (expect string '+PONG')"


def test_redis_error_with_close_is_L7RSP() -> None:
    """An answer that does not match, followed by a close, fails at once with L7RSP."""
    lab = Lab(rules=rules(*REDIS))
    lab.run()
    lab.accept(Banner(b"-ERR go away\r\n"))
    result = lab.result()
    assert (result.status, result.description) == (
        "L7RSP",
        "TCPCHK did not match content '+PONG' at step 3",
    )


def test_timeout_check_bounds_the_reading() -> None:
    """With timeout check, once connected the rest of the check has timeout check, not inter."""
    lab = Lab(rules=rules(*REDIS), inter=0.2, timeout_check=1.0)
    lab.run()
    lab.accept(FakeRedis(b"-ERR\r\n"))
    lab.reactor.advance(0.9)
    assert lab.results == []
    lab.reactor.advance(0.1)
    assert lab.result().status == "L7TOUT"


SMTP = ("connect", "expect string 220", "send QUIT\\r\\n", "expect string 221")


def test_smtp_banner_passes() -> None:
    """The SMTP sequence passes against a server sending a 220 banner."""
    lab = Lab(rules=rules(*SMTP))
    lab.run()
    lab.accept(FakeSmtp())
    assert lab.result().status == "L7OK"


def test_smtp_busy_banner_fails() -> None:
    """A 421 banner followed by a close fails the SMTP sequence at step 2."""
    lab = Lab(rules=rules(*SMTP))
    lab.run()
    lab.accept(Banner(b"421 too busy\r\n"))
    assert lab.result().status == "L7RSP"
    assert "at step 2" in lab.result().description


@pytest.mark.parametrize(
    "rule, banner, status",
    [
        ('expect rstring "^OK [0-9]+"', b"OK 42 ready\n", "L7OK"),
        ('expect rstring "^OK [0-9]+"', b"NOK\n", "L7RSP"),
        ("expect ! string ERROR", b"all good\n", "L7OK"),
        ("expect ! string ERROR", b"ERROR disk\n", "L7RSP"),
        ("expect binary 4f4b", b"OK", "L7OK"),
        ("expect rbinary ^4F4B", b"OK!", "L7OK"),
        ("expect rbinary ^4F4B", b"KO!", "L7RSP"),
    ],
)
def test_generic_banner_matches(rule: str, banner: bytes, status: str) -> None:
    """A banner protocol checked with each kind of expect: string, negated string, regex, binary and regex on hex."""
    lab = Lab(rules=rules(rule))
    lab.run()
    lab.accept(Banner(banner))
    assert lab.result().status == status


def test_expect_waits_for_more_data() -> None:
    """An expect is not decided on a partial answer while the connection is open."""
    lab = Lab(rules=rules("expect string HELLO"), inter=1.0)
    lab.run()
    server = Banner(b"HEL", close=False)
    pump = lab.accept(server)
    assert lab.results == []
    server.transport.write(b"LO")
    pump.flush()
    assert lab.result().status == "L7OK"


def test_send_binary_sends_bytes() -> None:
    """send-binary sends the bytes its hex digits stand for."""
    received: List[bytes] = []

    class Recorder(Protocol):
        def dataReceived(self, data: bytes) -> None:
            received.append(data)
            self.transport.write(b"\x00ok")

    lab = Lab(rules=rules("send-binary 0001ff", "expect binary 006f6b"))
    lab.run()
    lab.accept(Recorder())
    assert b"".join(received) == b"\x00\x01\xff"
    assert lab.result().status == "L7OK"


def test_second_connect_opens_a_new_connection() -> None:
    """A later connect rule closes the first connection and opens another, on its own port."""
    lab = Lab(rules=rules("connect", "expect string A", "connect port 8080", "expect string B"))
    lab.run()
    lab.accept(Banner(b"A", close=False))
    assert lab.attempt()[:2] == ("127.0.10.1", 8080)
    lab.accept(Banner(b"B"))
    assert lab.result().status == "L7OK"


def test_refused_in_a_sequence_names_the_step() -> None:
    """A refused connect in a sequence says which step failed."""
    lab = Lab(rules=rules(*REDIS))
    lab.run()
    lab.refuse()
    assert lab.result().description == "Connection refused at step 1 of tcp-check (connect)"


def test_cancel_closes_the_attempt() -> None:
    """Cancelling a check abandons its connection attempt; it never reports."""
    lab = Lab()
    d = lab.check.run()
    d.addErrback(lambda f: None)
    d.cancel()
    assert lab.reactor.connectors[0].stoppedConnecting
    lab.reactor.advance(10)


def test_no_address_raises() -> None:
    """A check of a server without an address raises (the monitor skips such servers)."""
    reactor = MemoryReactorClock()
    with pytest.raises(ValueError):
        TcpCheck(reactor, lambda: None, 80, 1.0).run()


# -- agent ------------------------------------------------------------------


def agent_lab(send: Optional[str] = None) -> Lab:
    return Lab(AgentCheck, send=send)


def test_agent_reply_is_read() -> None:
    """The agent's first line is read and understood."""
    lab = agent_lab()
    lab.run()
    lab.accept(Agent(b"75%,maxconn:30,drain\n"))
    result = lab.result()
    assert (result.status, result.description) == ("L7OK", "75%,maxconn:30,drain")
    assert result.agent is not None
    assert (result.agent.weight_percent, result.agent.maxconn, result.agent.admin) == (75, 30, "drain")


def test_agent_send_is_sent_first() -> None:
    """agent-send (with its escapes applied) is sent before the reply is read."""
    lab = agent_lab(send="hello\\n")
    lab.run()
    agent = Agent(b"up\r\n", expect=b"hello\n")
    lab.accept(agent)
    assert agent.got == b"hello\n"
    assert lab.result().status == "L7OK"


def test_agent_down_is_L7STS() -> None:
    """An agent saying down gives L7STS."""
    lab = agent_lab()
    lab.run()
    lab.accept(Agent(b"down # maintenance window\n"))
    assert lab.result().status == "L7STS"


def test_agent_reply_without_newline_ends_at_close() -> None:
    """A reply without a newline counts once the agent closes."""
    lab = agent_lab()
    lab.run()
    lab.accept(Agent(b"ready"))
    assert lab.result().agent is not None and lab.result().agent.admin == "ready"


def test_agent_unreachable_is_L4CON_without_reply() -> None:
    """An unreachable agent gives L4CON and no reply."""
    lab = agent_lab()
    lab.run()
    lab.refuse()
    assert lab.result().status == "L4CON" and lab.result().agent is None



# -- the examples of docs/health.md -------------------------------------------


def doc_backend(name: str) -> Any:
    """The backend C{name} of the ini examples in docs/health.md, parsed."""
    import re
    from pathlib import Path

    from l4lb.config import parse_config

    text = (Path(__file__).resolve().parent.parent / "docs" / "health.md").read_text()
    for block in re.findall(r"```ini\n(.*?)```", text, re.S):
        if f"[backend {name}]" in block:
            return parse_config(block).backends[0]
    raise AssertionError(f"no [backend {name}] example")


@pytest.mark.parametrize(
    "name, server, status",
    [
        ("redis", lambda: FakeRedis(), "L7OK"),
        ("redis", lambda: Banner(b"-ERR wrong\r\n"), "L7RSP"),
        ("smtp", lambda: FakeSmtp(), "L7OK"),
        ("smtp", lambda: FakeSmtp(b"220-mail.example first line\r\n"), "L7OK"),
        ("smtp", lambda: Banner(b"421 busy\r\n"), "L7RSP"),
        ("banner", lambda: Banner(b"OK 3 ready\n"), "L7OK"),
        ("banner", lambda: Banner(b"OK 3 ERROR disk\n"), "L7RSP"),
        ("banner", lambda: Banner(b"HELLO\n"), "L7RSP"),
    ],
)
def test_documented_examples(name: str, server: Any, status: str) -> None:
    """The Redis, SMTP and banner examples of docs/health.md pass against healthy fakes and fail against unhealthy ones."""
    backend = doc_backend(name)
    assert backend.tcp_check
    lab = Lab(rules=list(backend.tcp_check_rules))
    lab.run()
    lab.accept(server())
    assert lab.result().status == status


def test_documented_redis_error_kept_open_times_out() -> None:
    """The documented Redis example gives L7TOUT for a server answering -ERR on an open connection."""
    lab = Lab(rules=list(doc_backend("redis").tcp_check_rules), inter=1.0)
    lab.run()
    lab.accept(FakeRedis(b"-ERR no\r\n"))
    lab.reactor.advance(1.0)
    assert lab.result().status == "L7TOUT"
