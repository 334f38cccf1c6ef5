"""
The classic data path (L{l4lb.tcp.datapath.IDataPath}): Twisted's
transports as streaming producers of each other.

When a transport's write buffer towards its peer is full, it pauses the
other leg's transport (through a L{Flow}, which remembers it for the idle
timeouts), and resumes it once drained, so memory stays bounded.  An end of
stream from one leg (C{IHalfCloseableProtocol}) half-closes the other
transport, and data keeps flowing the other way.  TLS legs are always
carried here, and so is every leg where the lean path cannot run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple

from zope.interface import implementer

from l4lb.tcp.datapath import IDataPath
from l4lb.tcp.flow import Flow
from l4lb.tcp.legs import abort_legs, unregister
from l4lb.tcp.raw import RawTransport

if TYPE_CHECKING:
    from l4lb.tcp.session import Session


@implementer(IDataPath)
class ClassicPath:
    """
    The classic data path: Twisted's transports as streaming producers of
    each other (L{Flow}), half-closed through their legs.

    @ivar flows: The client's producer (paused while the server does not
        read) and the server's, once started.
    """

    __slots__ = ("session", "flows")

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.flows: Optional[Tuple[Flow, Flow]] = None

    def _transports(self) -> Tuple[Any, Any]:
        session = self.session
        leg = session.server_leg
        assert leg is not None
        return session.client.transport, leg.transport

    def start(self, first: bytes, watcher: Any, dialer: Any) -> None:
        """
        Wire the transports to each other and resume the client.
        """
        if dialer is not None:
            dialer.drop()
        session = self.session
        client_transport, server_transport = self._transports()
        # This path needs Twisted's transports.
        if isinstance(client_transport, RawTransport):
            client_transport = client_transport.upgrade()
        if isinstance(server_transport, RawTransport):
            server_transport = server_transport.upgrade()
        if first:
            server_transport.write(first)
        session.server_write = server_transport.write
        session.client_write = client_transport.write
        from_client, from_server = Flow(client_transport, session), Flow(server_transport, session)
        self.flows = (from_client, from_server)
        client_transport.registerProducer(from_server, True)
        server_transport.registerProducer(from_client, True)
        if watcher is not None:
            watcher.stop()
        client_transport.resumeProducing()

    def shut_write(self, to_server: bool) -> None:
        """
        Half-close the other transport (it sends what it buffered first).
        """
        transport = self._transports()[1 if to_server else 0]
        unregister(transport)
        transport.loseWriteConnection()

    def held_up(self) -> Tuple[bool, bool]:
        """
        Which producer a full transport paused.
        """
        flows = self.flows
        if flows is None:
            return False, False
        return flows[0].paused, flows[1].paused

    def close(self) -> None:
        """
        Let both transports send what they buffered, then close.
        """
        client_transport, server_transport = self._transports()
        unregister(client_transport)
        unregister(server_transport)
        client_transport.loseConnection()
        server_transport.loseConnection()

    def abort(self) -> None:
        """
        Abort both transports.
        """
        abort_legs(self.session)
