"""
The UDP side of DNS discovery's queries (L{l4lb.dns._udp},
L{l4lb.dns.client}): C{accepted_payload_size} announced in an EDNS0 OPT
record, longer datagrams dropped, and the name server's OPT record left
out of the answer's records; on a fake UDP reactor.
"""

from __future__ import annotations

import struct
from typing import Any, List

import pytest
from twisted.names import dns

from l4lb.config import parse_config
from l4lb.config.dns import Nameserver, ResolversSpec
from l4lb.config.errors import ConfigError
from l4lb.dns import NamesQuerier, Record
from l4lb.dns._udp import build_query
from tests.udpkit import FakeUdpReactor

NAME = "many.example.test"
SRV = "_app._tcp.example.test"

RESOLVERS = """\
[resolvers dns]
nameserver ns1 = 127.0.0.1:5353
{line}

[backend be]
timeout connect = 1s
timeout server = 5s
server web = web.example.test:80 resolvers dns init-addr none
"""


def querier(payload_size: int) -> "tuple[NamesQuerier, FakeUdpReactor]":
    """
    A L{NamesQuerier} of one UDP name server announcing C{payload_size}.
    """
    reactor = FakeUdpReactor()
    spec = ResolversSpec(
        "dns", (Nameserver("ns1", "127.0.0.1", 5353),), accepted_payload_size=payload_size,
        resolve_retries=1,
    )
    return NamesQuerier(spec, reactor), reactor


def answer(question: bytes, count: int, opt: bool = False) -> bytes:
    """
    A reply to C{question} with C{count} A records (16 bytes each after
    the first name), and the server's own OPT record when C{opt}.
    """
    asked = dns.Message()
    asked.fromStr(question)
    reply = dns.Message(id=asked.id, answer=1, recAv=1, maxSize=65535)
    reply.queries = asked.queries
    reply.answers = [
        dns.RRHeader(NAME, dns.A, payload=dns.Record_A(f"127.0.{i // 250}.{i % 250 + 1}"))
        for i in range(count)
    ]
    if opt:
        reply.additional = [dns.RRHeader(b"", dns.OPT, cls=4096, ttl=0)]
    return bytes(reply.toStr())


@pytest.mark.parametrize("size", [512, 1232, 4096, 65535])
def test_every_udp_query_announces_the_payload_size(size: int) -> None:
    """Each UDP query ends with one EDNS0 OPT record (ARCOUNT 1): the root
    name, type 41, the accepted_payload_size as its CLASS, TTL 0 and no
    data, as RFC 6891 lays it out."""
    names, reactor = querier(size)
    names.records(NAME, False, "ipv4")
    port = reactor.port_to("127.0.0.1", 5353)
    datagram = port.written[-1][0]
    assert struct.unpack("!H", datagram[10:12]) == (1,)
    assert datagram[-11:] == b"\x00" + struct.pack("!HHIH", 41, size, 0, 0)
    assert port.max_packet_size >= size


def test_query_bytes_are_a_plain_question_plus_opt() -> None:
    """The query is the recursive question twisted.names would send, with
    only ARCOUNT and the 11-byte OPT record added."""
    query = dns.Query(NAME, dns.A, dns.IN)
    plain = dns.Message(id=7, recDes=1)
    plain.queries = [query]
    data = build_query(query, 7, 4096)
    bare = bytes(plain.toStr())
    assert data[:10] == bare[:10] and data[12:-11] == bare[12:]


def test_an_answer_longer_than_the_payload_size_is_dropped() -> None:
    """A UDP answer longer than accepted_payload_size is ignored (HAProxy
    counts it 'too big'); within the size it is taken, so that 40
    addresses (over 512 bytes) come in one datagram once 4096 is
    announced."""
    small, reactor = querier(512)
    results: List[Any] = []
    small.records(NAME, False, "ipv4").addBoth(results.append)
    port = reactor.port_to("127.0.0.1", 5353)
    reply = answer(port.written[-1][0], 40)
    assert len(reply) > 512
    port.reply(reply)
    assert results == []
    reactor.advance(1.0)
    assert results[0].value.kind == "timeout"

    large, reactor = querier(4096)
    results = []
    large.records(NAME, False, "ipv4").addBoth(results.append)
    port = reactor.port_to("127.0.0.1", 5353)
    port.reply(answer(port.written[-1][0], 40))
    assert len(results[0]) == 40 and results[0][0] == Record("127.0.0.1")
    assert reactor.open_ports() == []


def test_the_name_servers_opt_record_is_not_a_record() -> None:
    """An OPT record in the answer's additional section is skipped: an SRV
    answer's targets take their addresses from the A records beside it,
    and nothing else is asked."""
    names, reactor = querier(4096)
    results: List[Any] = []
    names.records(SRV, True, "ipv4").addBoth(results.append)
    port = reactor.port_to("127.0.0.1", 5353)
    asked = dns.Message()
    asked.fromStr(port.written[-1][0])
    reply = dns.Message(id=asked.id, answer=1)
    reply.queries = asked.queries
    reply.answers = [dns.RRHeader(SRV, dns.SRV, payload=dns.Record_SRV(0, 0, 8001, "t1.example.test"))]
    reply.additional = [
        dns.RRHeader(b"", dns.OPT, cls=1232, ttl=0),
        dns.RRHeader("t1.example.test", dns.A, payload=dns.Record_A("127.0.0.1")),
    ]
    port.reply(bytes(reply.toStr()))
    assert results == [[Record("127.0.0.1", 8001, 0, "t1.example.test")]]
    assert len(reactor.ports) == 1


@pytest.mark.parametrize(
    "line, size",
    [("", 512), ("accepted_payload_size = 12", 12), ("accepted_payload_size = 65535", 65535)],
)
def test_payload_size_range_and_default(line: str, size: int) -> None:
    """accepted_payload_size defaults to 512 and takes HAProxy's range,
    12 (a DNS header) to 65535."""
    config = parse_config(RESOLVERS.format(line=line))
    assert config.resolvers[0].accepted_payload_size == size


@pytest.mark.parametrize("value", ["11", "65536"])
def test_payload_size_out_of_range(value: str) -> None:
    """Sizes outside 12-65535 are errors naming the range."""
    with pytest.raises(ConfigError) as raised:
        parse_config(RESOLVERS.format(line=f"accepted_payload_size = {value}"))
    assert "12 to 65535" in str(raised.value)
