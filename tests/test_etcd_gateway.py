"""
etcd's JSON gateway as l4lb reads it (L{l4lb.etcd._gateway}): base64 keys,
the range end of a prefix, the lines of a watch stream, the requests sent.
"""

from __future__ import annotations

import base64
import json
from typing import Any, List, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from l4lb.etcd import EtcdGateway, WatchMessage, parse_message
from l4lb.etcd._gateway import TIMEOUT, encode, prefix_end


def b64(text: str) -> str:
    """
    C{text} in base64, as the gateway writes keys and values.
    """
    return base64.b64encode(text.encode()).decode()


def test_prefix_end_is_the_next_key_after_the_prefix() -> None:
    """The range end of a prefix increments its last byte, as etcdctl --prefix does."""
    assert base64.b64decode(prefix_end("/l4lb/web/")) == b"/l4lb/web0"
    assert base64.b64decode(prefix_end("a\xff")) == "a\xff".encode()[:-1] + b"\xc0"
    assert encode("/k") == "L2s="


def test_watch_message_with_put_and_delete() -> None:
    """A watch line's events are decoded; a put has no type field, a delete has one."""
    line = {
        "result": {
            "header": {"revision": "7"},
            "events": [
                {"kv": {"key": b64("/p/s1"), "value": b64("127.0.0.1:80"), "mod_revision": "6"}},
                {"type": "DELETE", "kv": {"key": b64("/p/s2"), "mod_revision": "7"}},
            ],
        }
    }
    message = parse_message(line)
    assert message.revision == 7
    assert [(e.kind, e.key, e.value, e.revision) for e in message.events] == [
        ("PUT", "/p/s1", "127.0.0.1:80", 6),
        ("DELETE", "/p/s2", "", 7),
    ]


def test_watch_message_of_a_compaction() -> None:
    """A watch refused after a compaction says so and how far it went."""
    message = parse_message({"result": {"header": {}, "canceled": True, "compact_revision": "4"}})
    assert (message.canceled, message.compacted) == (True, 4)


class FakeTransport:
    """
    The producer of a response body: records that it was stopped.
    """

    stopped = False

    def stopProducing(self) -> None:
        """
        The reader closes the connection.
        """
        self.stopped = True

    def abortConnection(self) -> None:
        """
        What C{readBody} may call on a failed body.
        """
        self.stopped = True


class FakeResponse:
    """
    A response whose body is given in chunks, then ended with C{end}.
    """

    def __init__(self, code: int, chunks: List[bytes], end: Optional[Failure] = None) -> None:
        self.code = code
        self.phrase = b"OK"
        self.chunks = chunks
        self.end = end
        self.transport = FakeTransport()
        self.protocol: Any = None

    def deliverBody(self, protocol: Any) -> None:
        """
        Hand the chunks to C{protocol}, then end it when asked.
        """
        self.protocol = protocol
        protocol.makeConnection(self.transport)
        for chunk in self.chunks:
            protocol.dataReceived(chunk)
        if self.end is not None:
            protocol.connectionLost(self.end)


class FakeAgent:
    """
    Answers every request with one response, and records the requests.
    """

    def __init__(self, response: FakeResponse) -> None:
        self.response = response
        self.requests: List[Any] = []

    def request(self, method: bytes, uri: bytes, headers: Any, body: Any) -> Any:
        """
        Record the request and its JSON body.
        """
        written: List[bytes] = []
        body.startProducing(type("C", (), {"write": staticmethod(written.append)})())
        self.requests.append((method, uri, json.loads(b"".join(written))))
        return succeed(self.response)


def test_watch_reads_lines_split_across_chunks() -> None:
    """A watch stream's lines reach the receiver whole, however the bytes arrive."""
    lines = [
        json.dumps({"result": {"header": {"revision": "3"}, "created": True}}),
        json.dumps(
            {
                "result": {
                    "header": {"revision": "4"},
                    "events": [{"kv": {"key": b64("/p/a"), "value": b64("127.0.0.1:1"), "mod_revision": "4"}}],
                }
            }
        ),
    ]
    data = ("\n".join(lines) + "\n").encode()
    response = FakeResponse(200, [data[:17], data[17:90], data[90:]])
    agent = FakeAgent(response)
    received: List[WatchMessage] = []
    stream = EtcdGateway(Clock(), "http://127.0.0.1:2379", agent).watch_prefix("/p/", 3, received.append)
    method, uri, body = agent.requests[0]
    assert (method, uri) == (b"POST", b"http://127.0.0.1:2379/v3/watch")
    assert body["create_request"]["start_revision"] == 3
    assert base64.b64decode(body["create_request"]["key"]) == b"/p/"
    assert [m.created for m in received] == [True, False]
    assert received[1].events[0].key == "/p/a"
    ended: List[Any] = []
    stream.ended().addBoth(ended.append)
    assert ended == []
    stream.stop()
    assert response.transport.stopped
    response.protocol.connectionLost(Failure(ResponseDone()))
    assert ended == [None]


def test_watch_end_by_etcd_is_a_failure() -> None:
    """A stream that etcd closes ends the watch with a failure."""
    response = FakeResponse(200, [], end=Failure(ResponseDone()))
    stream = EtcdGateway(Clock(), "http://127.0.0.1:2379", FakeAgent(response)).watch_prefix(
        "/p/", 1, lambda m: None
    )
    failures: List[Failure] = []
    stream.ended().addErrback(failures.append)
    assert len(failures) == 1


def test_list_prefix_decodes_the_range() -> None:
    """A listing gives the revision and each key's value."""
    document = {
        "header": {"revision": "9"},
        "kvs": [{"key": b64("/p/s1"), "value": b64("127.0.0.1:80 drain")}],
    }
    response = FakeResponse(200, [json.dumps(document).encode()], end=Failure(ResponseDone()))
    agent = FakeAgent(response)
    result: List[Any] = []
    EtcdGateway(Clock(), "http://127.0.0.1:2379", agent).list_prefix("/p/").addCallback(result.append)
    assert result == [(9, {"/p/s1": "127.0.0.1:80 drain"})]
    assert agent.requests[0][1] == b"http://127.0.0.1:2379/v3/kv/range"


def test_watch_without_an_answer_times_out() -> None:
    """A watch whose response never begins ends in failure after the timeout."""

    class SilentAgent:
        """
        Takes requests and never answers.
        """

        def request(self, *args: Any) -> Any:
            return Deferred()

    clock = Clock()
    stream = EtcdGateway(clock, "http://127.0.0.1:2379", SilentAgent()).watch_prefix(
        "/p/", 1, lambda m: None
    )
    failures: List[Failure] = []
    stream.ended().addErrback(failures.append)
    clock.advance(TIMEOUT - 0.1)
    assert failures == []
    clock.advance(0.2)
    assert len(failures) == 1
