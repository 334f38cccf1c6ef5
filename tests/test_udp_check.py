"""
Health checks of UDP servers: the ICMP-only probe, send/expect, the DNS
check, time limits and socket hygiene.
"""

from __future__ import annotations

import random
from typing import List, Optional

from twisted.names import dns as tdns
from zope.interface.verify import verifyObject

from l4lb.config.model import UdpCheckSpec
from l4lb.health.status import CheckResult
from l4lb.interfaces import IHealthCheck
from l4lb.udp.check import UdpCheck
from l4lb.udp.dns import answers, build_query

from tests.udpkit import FakeUdpReactor, FakeUdpPort


def run(
    check: UdpCheck, reactor: FakeUdpReactor, results: Optional[List[CheckResult]] = None
) -> List[CheckResult]:
    """
    Start one check; its result is appended to C{results} (a new list by
    default), which is returned.
    """
    if results is None:
        results = []
    check.run().addCallback(results.append)
    return results


def make(spec: Optional[UdpCheckSpec] = None, **kwargs: object) -> tuple:
    reactor = FakeUdpReactor()
    check = UdpCheck(
        reactor, lambda: "127.0.10.1", 53, 2.0, spec, rng=random.Random(7), **kwargs  # type: ignore[arg-type]
    )
    return check, reactor


def probe(reactor: FakeUdpReactor) -> FakeUdpPort:
    return reactor.ports[-1]


def test_provides_the_interface() -> None:
    """A UDP check is an IHealthCheck of kind 'check'."""
    check, _ = make()
    assert verifyObject(IHealthCheck, check)
    assert check.kind == "check"


def test_icmp_only_probe_fails_on_port_unreachable() -> None:
    """Without send/expect, an ICMP port unreachable answer fails the check (L4CON)."""
    check, reactor = make()
    results = run(check, reactor)
    port = probe(reactor)
    assert port.written == [(b"", None)]
    assert port.connected_to == ("127.0.10.1", 53)
    port.protocol.connectionRefused()
    assert results[0].status == "L4CON"
    assert "ICMP" in results[0].description
    assert port.closed
    assert reactor.getDelayedCalls() == []


def test_icmp_only_probe_passes_on_silence() -> None:
    """Without send/expect, silence until the time limit passes (L4OK) and waits at most a second."""
    check, reactor = make()
    results = run(check, reactor)
    reactor.advance(0.99)
    assert results == []
    reactor.advance(0.01)
    assert results[0].status == "L4OK"
    assert probe(reactor).closed


def test_send_expect_any_reply() -> None:
    """With udp-check send and no expect, any reply passes (L7OK)."""
    check, reactor = make(UdpCheckSpec(send=b"ping"))
    results = run(check, reactor)
    port = probe(reactor)
    assert port.written == [(b"ping", None)]
    port.reply(b"whatever")
    assert results[0].status == "L7OK"
    assert port.closed


def test_expect_string_mismatch_fails() -> None:
    """A reply without the expected bytes fails (L7RSP); one with them passes."""
    spec = UdpCheckSpec(send=b"ping", expect="string", pattern=b"PONG")
    check, reactor = make(spec)
    results = run(check, reactor)
    probe(reactor).reply(b"nope")
    run(check, reactor, results)
    probe(reactor).reply(b"+PONG\n")
    assert [r.status for r in results] == ["L7RSP", "L7OK"]


def test_no_reply_times_out_after_inter() -> None:
    """With send/expect, no reply within inter fails (L7TOUT) and closes the socket."""
    check, reactor = make(UdpCheckSpec(send=b"ping"))
    results = run(check, reactor)
    reactor.advance(1.9)
    assert results == []
    reactor.advance(0.1)
    assert results[0].status == "L7TOUT"
    assert results[0].duration == 2.0
    assert probe(reactor).closed


def test_timeout_check_bounds_the_wait() -> None:
    """timeout check, when set, replaces inter as the time limit."""
    check, reactor = make(UdpCheckSpec(send=b"ping"), timeout_check=0.5)
    results = run(check, reactor)
    reactor.advance(0.5)
    assert results[0].status == "L7TOUT"


def test_refused_fails_a_send_expect_check() -> None:
    """ICMP port unreachable fails a send/expect check too."""
    check, reactor = make(UdpCheckSpec(send=b"ping"))
    results = run(check, reactor)
    probe(reactor).protocol.connectionRefused()
    assert results[0].status == "L4CON"


def test_dns_check_passes_on_a_response_to_its_query() -> None:
    """The DNS check sends a query for the name and passes on any response with its id."""
    check, reactor = make(UdpCheckSpec(dns_name="example.com", dns_type="A"))
    results = run(check, reactor)
    port = probe(reactor)
    sent = tdns.Message()
    sent.fromStr(port.written[0][0])
    assert sent.queries[0].name.name == b"example.com"
    reply = tdns.Message(id=sent.id, answer=1, rCode=tdns.ENAME)
    reply.queries = sent.queries
    port.reply(reply.toStr())
    assert results[0].status == "L7OK"


def test_dns_check_rejects_a_stray_datagram() -> None:
    """A reply with another id, or not DNS at all, fails the DNS check (L7RSP)."""
    check, reactor = make(UdpCheckSpec(dns_name="example.com"))
    results = run(check, reactor)
    port = probe(reactor)
    sent = tdns.Message()
    sent.fromStr(port.written[0][0])
    port.reply(tdns.Message(id=(sent.id + 1) % 65536, answer=1).toStr())
    run(check, reactor, results)
    probe(reactor).reply(b"\x00")
    assert [r.status for r in results] == ["L7RSP", "L7RSP"]


def test_cancel_closes_the_socket() -> None:
    """Cancelling a running check closes its socket and stops its timer."""
    check, reactor = make(UdpCheckSpec(send=b"ping"))
    d = check.run()
    d.addErrback(lambda f: None)
    d.cancel()
    assert probe(reactor).closed
    assert reactor.getDelayedCalls() == []


def test_socket_error_is_a_result() -> None:
    """A socket that cannot be opened gives SOCKERR, not an exception."""
    check, reactor = make()
    reactor.fail_listen = OSError(24, "Too many open files")
    results = run(check, reactor)
    assert results[0].status == "SOCKERR"


def test_query_helpers_round_trip() -> None:
    """A built query parses back, and only a response with its id answers it."""
    query = build_query(1234, "example.org", "AAAA")
    assert not answers(query, 1234)  # a query is not a response
    message = tdns.Message()
    message.fromStr(query)
    assert message.queries[0].type == tdns.AAAA and message.recDes
    assert answers(tdns.Message(id=1234, answer=1).toStr(), 1234)
