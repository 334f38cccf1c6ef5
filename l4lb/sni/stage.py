"""
The stage that routes a connection by the server name of its TLS
ClientHello, without terminating TLS.

It waits for the whole hello (bounded by the frontend's C{tcp-request
inspect-delay} and the size cap), sets the session's C{sni} and, when a
C{use_backend} rule matches, its C{backend}.  It consumes nothing: the hello
is relayed to the chosen server, which does the handshake.  A client that
does not send a readable hello in time goes to the default backend, or is
closed with C{sni-fallback = reject}.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple
from weakref import WeakKeyDictionary

from zope.interface import implementer

from l4lb.interfaces import IClientStage
from l4lb.sni.clienthello import DEFAULT_MAX_HELLO, NEED_MORE, ClientHello, HelloReader
from l4lb.sni.routes import SniRoutes
from l4lb.tcp.stages import StageRejected

#: Send clients without a readable hello to the default backend.
FALLBACK_DEFAULT = "default"
#: Close clients without a readable hello.
FALLBACK_REJECT = "reject"
FALLBACKS = (FALLBACK_DEFAULT, FALLBACK_REJECT)


@implementer(IClientStage)
class SniStage:
    """
    Routes each connection of a frontend by its TLS server name.

    @ivar routes: The backends by server name.
    @ivar fallback: L{FALLBACK_DEFAULT} or L{FALLBACK_REJECT}.
    @ivar max_hello: The largest hello read, in bytes.
    """

    def __init__(
        self,
        routes: SniRoutes[Any],
        fallback: str = FALLBACK_DEFAULT,
        max_hello: int = DEFAULT_MAX_HELLO,
    ) -> None:
        """
        @param routes: Maps server names to L{l4lb.pool.BackendState}s.
        """
        self.routes = routes
        self.fallback = fallback
        self.max_hello = max_hello
        # Weak, so that a client gone while its hello was read leaves nothing.
        self._readers: "WeakKeyDictionary[Any, HelloReader]" = WeakKeyDictionary()

    def inspect(self, session: Any, data: bytearray) -> Optional[int]:
        """
        Read the hello so far; decide once it is whole or cannot be one.
        """
        reader = self._readers.get(session)
        if reader is None:
            if not data:
                return None
            reader = self._readers[session] = HelloReader(self.max_hello)
        outcome = reader.feed(data)
        if outcome is NEED_MORE:
            return None
        del self._readers[session]
        if isinstance(outcome, ClientHello):
            name = outcome.server_name
            if name is not None:
                session.sni = name
                backend = self.routes.lookup(name)
                if backend is not None:
                    session.backend = backend
            return 0
        return self._fall_back(reader.reason)

    def expired(self, session: Any, data: bytearray) -> Optional[int]:
        """
        No whole hello came within C{inspect-delay}: the default backend, or
        the connection is closed (C{PR}, as HAProxy logs its C{tcp-request
        content reject} at the end of the delay).
        """
        self._readers.pop(session, None)
        if self.fallback == FALLBACK_REJECT:
            raise StageRejected(
                "PR", "SNI routing: no complete ClientHello within tcp-request inspect-delay"
            )
        return 0

    def _fall_back(self, reason: str) -> int:
        if self.fallback == FALLBACK_REJECT:
            raise StageRejected("PR", f"SNI routing: {reason}")
        return 0


def build_sni_stage(spec: Any, backends: Mapping[str, Any]) -> Optional[SniStage]:
    """
    The SNI stage of a frontend, or C{None} when it has no C{use_backend}
    rule.

    @param spec: The L{l4lb.config.model.Frontend}.
    @param backends: Its possible backends by name.
    """
    rules: Sequence[Tuple[str, Sequence[str]]] = [
        (route.backend, route.names) for route in spec.sni_routes
    ]
    if not rules:
        return None
    routes = SniRoutes((backends[name], names) for name, names in rules)
    return SniStage(routes, spec.sni_fallback, spec.sni_max_hello)
