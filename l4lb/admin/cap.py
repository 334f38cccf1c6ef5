"""
A cap on the connections of one of l4lb's own listeners (the runtime API's
socket, the statistics pages).

At the cap the listening socket stops accepting: further connections wait
in the kernel's listen backlog, holding no descriptor of the process, until
a connection ends (as HAProxy does with a bind's C{maxconn}).  Accepting
and then closing them instead would still cost a descriptor each, which is
what starves the traffic when a client opens many idle connections.  The
pausing is the frontends' own (L{l4lb.tcp.limits.Gate}), over a limit that
belongs to this listener alone, so these connections never count against
the traffic's C{maxconn}.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from l4lb.config.model import GlobalSettings
from l4lb.fdlimit import FD_RESERVE, own_listener_caps
from l4lb.tcp.limits import ConnectionLimiter, Gate

__all__ = ["CappedFactory", "caps_in_effect", "own_listeners"]

_log = Logger(namespace="l4lb")


def own_listeners(settings: GlobalSettings) -> Dict[str, int]:
    """
    The configured connection caps of l4lb's own listeners: the runtime
    API (C{stats socket}) and the statistics pages (C{stats bind}), each
    its own C{maxconn} option or else C{stats maxconn}.  A listener that is
    not configured is absent.
    """
    caps: Dict[str, int] = {}
    if settings.stats_socket is not None:
        caps["stats socket"] = settings.stats_socket.maxconn or settings.stats_maxconn
    if settings.stats_bind is not None:
        caps["stats bind"] = settings.stats_bind.maxconn or settings.stats_maxconn
    return caps


def caps_in_effect(settings: GlobalSettings, soft: int, maxconn: int) -> Dict[str, int]:
    """
    The own listeners' caps within what the descriptor limit leaves after
    the traffic's C{maxconn} (L{own_listener_caps}); each one lowered is
    logged as a warning.

    @param soft: The soft C{RLIMIT_NOFILE}.
    @param maxconn: The traffic's global C{maxconn}.
    """
    wanted = own_listeners(settings)
    given = dict(zip(wanted, own_listener_caps(soft, maxconn, list(wanted.values()))))
    for name, cap in given.items():
        if cap < wanted[name]:
            _log.warn(
                "{name}: serving at most {cap} connection(s) at once instead of"
                " {wanted}: the file-descriptor limit {soft} leaves no more once"
                " maxconn {maxconn} has its descriptors (2 per connection +"
                " {reserve} reserved). Raise the limit or lower maxconn.",
                name=name,
                cap=cap,
                wanted=wanted[name],
                soft=soft,
                maxconn=maxconn,
                reserve=FD_RESERVE,
            )
    return given


class CappedFactory(WrappingFactory):
    """
    Wraps the factory of one of l4lb's own listeners and counts its open
    connections against C{maxconn}.

    @ivar maxconn: The most connections open at once.
    @ivar gate: Pauses and resumes the watched listening ports.
    """

    noisy = False

    def __init__(self, wrappedFactory: Any, maxconn: int) -> None:
        """
        @param wrappedFactory: Builds the protocol of each connection.
        @param maxconn: The cap, at least 1.
        """
        super().__init__(wrappedFactory)
        self.maxconn = maxconn
        self.gate: Gate = ConnectionLimiter(maxconn).gate()

    def logPrefix(self) -> str:
        """
        The wrapped factory's prefix, so that log lines name the listener.
        """
        return str(getattr(self.wrappedFactory, "logPrefix", lambda: "-")())

    @property
    def current(self) -> int:
        """
        The connections open now.
        """
        return self.gate.current

    def watch(self, port: Any) -> Any:
        """
        Start accepting on C{port} (which listens with this factory), up to
        the cap.

        @param port: A Twisted stream listening port (TCP or UNIX).
        @return: C{port}.
        """
        self.gate.add_port(port)
        self.gate.open()
        return port

    def buildProtocol(  # type: ignore[override]
        self, addr: Optional[IAddress]
    ) -> Optional[Protocol]:
        """
        Wrap the wrapped factory's protocol, or refuse when it builds none.
        """
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return ProtocolWrapper(self, wrapped)

    def registerProtocol(self, p: Any) -> None:
        """
        Count a connection that started.
        """
        super().registerProtocol(p)
        self.gate.acquire()

    def unregisterProtocol(self, p: Any) -> None:
        """
        Count a connection that ended, once.
        """
        if p in self.protocols:
            super().unregisterProtocol(p)
            self.gate.release()
