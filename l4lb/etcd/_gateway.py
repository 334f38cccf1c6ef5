"""
etcd's v3 API through its JSON gateway, on Twisted's HTTP client.

etcd serves its gRPC API as JSON too: C{POST /v3/kv/range} lists keys,
C{POST /v3/watch} streams changes, one JSON object a line, for as long as
the connection stays open.  Keys and values are base64 in both directions;
revisions are decimal strings.  No thread and no gRPC library are needed.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable, Dict, List, Optional, Tuple

import attr
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import Interface, implementer

#: Seconds to connect to etcd, and for a whole C{range} answer.
TIMEOUT = 5.0

#: The longest line of a watch stream kept while it is incomplete: far
#: above any real batch of events on one prefix, low enough that a
#: misbehaving peer cannot fill the memory.
MAX_LINE = 16 * 1024 * 1024


class EtcdError(Exception):
    """
    etcd answered, but not as expected (an HTTP error, bad JSON, an error
    object).
    """


def encode(text: str) -> str:
    """
    A key as the gateway takes it: base64 of its UTF-8 bytes.
    """
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode(text: str) -> str:
    """
    A key or value as the gateway gives it (base64), as text.
    """
    return base64.b64decode(text).decode("utf-8", "replace")


def prefix_end(prefix: str) -> str:
    """
    The C{range_end} that makes a range or watch cover every key starting
    with C{prefix}: the prefix with its last byte incremented (etcd's
    convention).
    """
    data = bytearray(prefix.encode("utf-8"))
    while data and data[-1] == 0xFF:
        data.pop()
    if not data:
        # Every key: etcd reads "\0" as "to the end".
        return base64.b64encode(b"\0").decode("ascii")
    data[-1] += 1
    return base64.b64encode(bytes(data)).decode("ascii")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Event:
    """
    One change of a key under a watched prefix.

    @ivar kind: C{"PUT"} or C{"DELETE"}.
    @ivar key: The whole key.
    @ivar value: Its new value (C{""} for a delete).
    @ivar revision: The revision of the change.
    """

    kind: str
    key: str
    value: str
    revision: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class WatchMessage:
    """
    One message of a watch stream.

    @ivar revision: The store's revision when it was sent (0: not given).
    @ivar events: Its changes, in order.
    @ivar created: Whether it confirms that the watch was created.
    @ivar compacted: The compaction revision when the watch was refused
        because its start revision is compacted away; else 0.
    @ivar canceled: Whether etcd ended the watch.
    """

    revision: int
    events: Tuple[Event, ...] = ()
    created: bool = False
    compacted: int = 0
    canceled: bool = False


def parse_message(data: Dict[str, Any]) -> WatchMessage:
    """
    Understand one line of C{/v3/watch}.

    @raise EtcdError: For an error object instead of a result.
    """
    if "result" not in data:
        error = data.get("error", data)
        raise EtcdError(f"etcd refused the watch: {error.get('message', error)}")
    result = data["result"]
    header = result.get("header", {})
    events = tuple(
        Event(
            kind=event.get("type", "PUT"),
            key=decode(event["kv"]["key"]),
            value=decode(event["kv"].get("value", "")),
            revision=int(event["kv"].get("mod_revision", 0)),
        )
        for event in result.get("events", ())
    )
    return WatchMessage(
        revision=int(header.get("revision", 0)),
        events=events,
        created=bool(result.get("created")),
        compacted=int(result.get("compact_revision", 0)),
        canceled=bool(result.get("canceled")),
    )


class IEtcdGateway(Interface):
    """
    What the watch of a prefix needs of etcd (L{EtcdGateway} over HTTP;
    tests give a fake).
    """

    def list_prefix(prefix: str) -> "Deferred[Tuple[int, Dict[str, str]]]":
        """
        Every key under C{prefix} with its value.

        @return: A L{Deferred} firing with the store's revision and the
            values by whole key, or failing when etcd cannot be reached or
            answers an error.
        """

    def watch_prefix(
        prefix: str, start_revision: int, receive: Callable[[WatchMessage], None]
    ) -> "IWatchStream":
        """
        Stream the changes under C{prefix} from C{start_revision} on,
        calling C{receive} with each message.
        """


class IWatchStream(Interface):
    """
    A watch in progress.
    """

    def stop() -> None:
        """
        End the watch; L{ended} fires soon after.
        """

    def ended() -> "Deferred[None]":
        """
        A L{Deferred} that fails (or fires, when stopped) when the watch
        ends: the connection failed, closed, or was stopped.
        """


@implementer(IBodyProducer)
class _JsonBody:
    """
    A request body that is one JSON document, written at once.
    """

    def __init__(self, document: Any) -> None:
        self._data = json.dumps(document).encode("utf-8")
        self.length = len(self._data)

    def startProducing(self, consumer: Any) -> "Deferred[None]":
        consumer.write(self._data)
        done: Deferred[None] = Deferred()
        done.callback(None)
        return done

    def pauseProducing(self) -> None:
        """Nothing to pause: the body is written at once."""

    def resumeProducing(self) -> None:
        """Nothing to resume: the body is written at once."""

    def stopProducing(self) -> None:
        """Nothing to stop: the body is written at once."""


class LineReader(Protocol):
    """
    Reads a watch response's body: one JSON object a line, each handed on
    as a L{WatchMessage}; a line that cannot be understood ends the watch.
    """

    def __init__(self, receive: Callable[[WatchMessage], None], ended: "Deferred[None]") -> None:
        self._receive = receive
        self._ended = ended
        self._buffer = b""
        self._stopping = False

    def dataReceived(self, data: bytes) -> None:
        """
        Hand on every complete line.
        """
        self._buffer += data
        while b"\n" in self._buffer and not self._stopping:
            line, _, self._buffer = self._buffer.partition(b"\n")
            if not line.strip():
                continue
            try:
                message = parse_message(json.loads(line))
            except (ValueError, KeyError, TypeError, EtcdError) as error:
                self._fail(EtcdError(f"unexpected watch answer: {error}"))
                return
            self._receive(message)
        if len(self._buffer) > MAX_LINE:
            self._fail(EtcdError("a watch message is too long"))

    def _fail(self, error: Exception) -> None:
        self._stopping = True
        if not self._ended.called:
            self._ended.errback(Failure(error))
        self.stop()

    def stop(self) -> None:
        """
        Close the connection (the gateway keeps a canceled watch's stream
        open, so the end is ours to make).
        """
        self._stopping = True
        # A response body's transport is the producer of that body.
        producer: Any = self.transport
        if producer is not None:
            producer.stopProducing()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """
        The stream ended: etcd went away, closed it, or it was stopped.
        """
        if self._ended.called:
            return
        if self._stopping:
            self._ended.callback(None)
        else:
            self._ended.errback(reason)


@implementer(IWatchStream)
class _Stream:
    """
    A watch request, then its response's body being read.
    """

    def __init__(self) -> None:
        self._ended: Deferred[None] = Deferred()
        self.reader: Optional[LineReader] = None
        self.request: Optional[Deferred[Any]] = None

    def stop(self) -> None:
        """
        End the watch, whether its response has come or not.
        """
        if self.reader is not None:
            self.reader.stop()
        elif self.request is not None:
            self.request.cancel()

    def ended(self) -> "Deferred[None]":
        """
        Fires or fails once the watch is over.
        """
        return self._ended


@implementer(IEtcdGateway)
class EtcdGateway:
    """
    One etcd client URL's JSON gateway, through a L{twisted.web.client.Agent}.

    @ivar endpoint: The client URL, e.g. C{http://127.0.0.1:2379}.
    """

    def __init__(self, reactor: Any, endpoint: str, agent: Optional[Any] = None) -> None:
        self.endpoint = endpoint
        self._reactor = reactor
        self._agent = agent if agent is not None else Agent(reactor, connectTimeout=TIMEOUT)

    def _post(self, path: str, document: Any) -> "Deferred[Any]":
        return self._agent.request(
            b"POST",
            (self.endpoint + path).encode("ascii"),
            Headers({b"Content-Type": [b"application/json"]}),
            _JsonBody(document),
        )

    def list_prefix(self, prefix: str) -> "Deferred[Tuple[int, Dict[str, str]]]":
        """
        Every key under C{prefix} with its value, and the revision.
        """
        d = self._post("/v3/kv/range", {"key": encode(prefix), "range_end": prefix_end(prefix)})

        def answered(response: Any) -> "Deferred[bytes]":
            body = readBody(response)
            if response.code != 200:
                body.addCallback(
                    lambda data: _raise(
                        EtcdError(f"HTTP {response.code} {data[:200].decode('utf-8', 'replace')}")
                    )
                )
            return body

        def parsed(data: bytes) -> Tuple[int, Dict[str, str]]:
            try:
                document = json.loads(data)
                revision = int(document["header"]["revision"])
                values = {
                    decode(kv["key"]): decode(kv.get("value", ""))
                    for kv in document.get("kvs", ())
                }
            except (ValueError, KeyError, TypeError) as error:
                raise EtcdError(f"unexpected range answer: {error}")
            return revision, values

        d.addCallback(answered)
        d.addCallback(parsed)
        d.addTimeout(TIMEOUT, self._reactor)
        return d

    def watch_prefix(
        self, prefix: str, start_revision: int, receive: Callable[[WatchMessage], None]
    ) -> IWatchStream:
        """
        Stream the changes under C{prefix} from C{start_revision} on.
        """
        stream = _Stream()
        request = {
            "create_request": {
                "key": encode(prefix),
                "range_end": prefix_end(prefix),
                "start_revision": start_revision,
                # etcd then says now and then how far it is, so that a
                # quiet prefix's revision keeps up with the store's.
                "progress_notify": True,
            }
        }
        stream.request = self._post("/v3/watch", request)

        def answered(response: Any) -> None:
            if response.code != 200:
                body = readBody(response)
                body.addCallback(
                    lambda data: _raise(
                        EtcdError(f"HTTP {response.code} {data[:200].decode('utf-8', 'replace')}")
                    )
                )
                body.addErrback(stream.ended().errback)
                return
            stream.reader = LineReader(receive, stream.ended())
            response.deliverBody(stream.reader)

        def failed(reason: Failure) -> None:
            if not stream.ended().called:
                stream.ended().errback(reason)

        # An etcd that accepts but never answers is as good as gone; once
        # the response has begun, the stream may stay quiet for ever.
        stream.request.addTimeout(TIMEOUT, self._reactor)
        stream.request.addCallbacks(answered, failed)
        return stream


def _raise(error: Exception) -> Any:
    raise error


__all__: List[str] = [
    "EtcdError",
    "EtcdGateway",
    "Event",
    "IEtcdGateway",
    "IWatchStream",
    "LineReader",
    "WatchMessage",
    "decode",
    "encode",
    "parse_message",
    "prefix_end",
]
