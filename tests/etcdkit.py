"""
Stand-ins for the tests of servers from etcd: a runtime that records the
changes asked of it (L{RecordingRuntime}) and a gateway whose answers the
test gives (L{ScriptedGateway}).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import attr
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from l4lb.config.servers import parse_address
from l4lb.etcd import IEtcdGateway, IWatchStream, WatchMessage


@attr.s(auto_attribs=True, eq=False)
class FakeServer:
    """
    A server as the sync sees it: name, address, state, connections.
    """

    name: str
    address: str
    port: int
    line: str
    admin: str = "ready"
    current: int = 0
    sessions: set = attr.Factory(set)
    weight: Optional[int] = None

    def set_weight(self, weight: int) -> None:
        """
        Record a weight change (C{set server ... weight}).
        """
        self.weight = weight


@attr.s(auto_attribs=True)
class FakeBackend:
    """
    A backend's name, its file's servers (C{spec.servers}) and its servers.
    """

    name: str
    file_servers: Tuple[str, ...] = ()

    @property
    def spec(self) -> Any:
        """
        What the configuration file says of it: its server names.
        """
        return attr.make_class("Spec", ["servers"])(
            tuple(attr.make_class("S", ["name"])(n) for n in self.file_servers)
        )


class RecordingRuntime:
    """
    The four runtime methods the sync calls, recorded in L{calls}, with the
    servers kept in L{servers} by C{(backend, name)}.

    @ivar refuse_add: When set, C{add_server} raises it.
    """

    def __init__(self, backend: str = "web", file_servers: Tuple[str, ...] = ()) -> None:
        self.backends = {backend: FakeBackend(backend, file_servers)}
        self.servers: Dict[Tuple[str, str], FakeServer] = {}
        self.calls: List[Tuple[Any, ...]] = []
        self.refuse_add: Optional[Exception] = None

    def find_server(self, backend: str, name: str) -> FakeServer:
        """
        The server, or C{KeyError}.
        """
        return self.servers[(backend, name)]

    def add_server(self, backend: str, name: str, line: str, enabled: bool = False) -> FakeServer:
        """
        Make a server from a server line's text.
        """
        self.calls.append(("add", backend, name, line, enabled))
        if self.refuse_add is not None:
            raise self.refuse_add
        host, port = parse_address(line.split()[0])
        server = FakeServer(name, host, port, line, "ready" if enabled else "maint")
        self.servers[(backend, name)] = server
        return server

    def remove_server(self, backend: str, name: str) -> None:
        """
        Remove a server in maintenance without connections, as HAProxy's
        C{del server} requires.
        """
        server = self.servers[(backend, name)]
        if server.admin != "maint" or server.current:
            raise ValueError("Only servers in maintenance mode without connections can be deleted.")
        self.calls.append(("remove", backend, name))
        del self.servers[(backend, name)]

    def set_server_address(self, server: FakeServer, host: str, port: Optional[int] = None, cause: str = "runtime") -> None:
        """
        Move a server.
        """
        self.calls.append(("address", server.name, host, port, cause))
        server.address = host
        if port is not None:
            server.port = port

    def set_server_admin(self, server: FakeServer, admin: str, cause: str = "runtime") -> None:
        """
        Set a server's administrative state.
        """
        self.calls.append(("admin", server.name, admin, cause))
        server.admin = admin


@implementer(IWatchStream)
class ScriptedStream:
    """
    A watch the test feeds: L{send} a message, L{fail} or L{close} it.
    """

    def __init__(self, start_revision: int, receive: Callable[[WatchMessage], None]) -> None:
        self.start_revision = start_revision
        self.receive = receive
        self._ended: Deferred[None] = Deferred()
        self.stopped = False

    def send(self, message: WatchMessage) -> None:
        """
        Deliver one message of the stream.
        """
        self.receive(message)

    def fail(self, error: Exception) -> None:
        """
        End the stream as a lost connection does.
        """
        self._ended.errback(error)

    def stop(self) -> None:
        """
        End the stream on request.
        """
        self.stopped = True
        if not self._ended.called:
            self._ended.callback(None)

    def ended(self) -> "Deferred[None]":
        """
        Fires once the stream is over.
        """
        return self._ended


@implementer(IEtcdGateway)
class ScriptedGateway:
    """
    A gateway whose listings are L{listing} (or L{down}: every call fails)
    and whose watches are kept in L{streams}.
    """

    def __init__(self, endpoint: str = "http://127.0.0.1:2379") -> None:
        self.endpoint = endpoint
        self.listing: Tuple[int, Dict[str, str]] = (1, {})
        self.down: Optional[Exception] = None
        self.lists = 0
        self.streams: List[ScriptedStream] = []

    def list_prefix(self, prefix: str) -> "Deferred[Tuple[int, Dict[str, str]]]":
        """
        The listing, or the failure of L{down}.
        """
        self.lists += 1
        if self.down is not None:
            return fail(self.down)
        return succeed(self.listing)

    def watch_prefix(
        self, prefix: str, start_revision: int, receive: Callable[[WatchMessage], None]
    ) -> ScriptedStream:
        """
        A stream the test feeds; it fails at once while L{down}.
        """
        stream = ScriptedStream(start_revision, receive)
        self.streams.append(stream)
        if self.down is not None:
            stream.fail(self.down)
        return stream
