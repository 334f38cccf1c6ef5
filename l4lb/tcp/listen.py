"""
Server endpoints for binds, without C{twisted.internet.endpoints} for plain
TCP.

C{twisted.internet.endpoints} imports pyOpenSSL (for its TLS endpoints)
whether TLS is used or not (see L{l4lb.lazytls}).  The descriptions l4lb
writes for C{ADDRESS:PORT} binds, C{tcp:PORT:interface=HOST:backlog=N} and
their C{tcp6:} forms, are listened on here the way Twisted's
C{TCP4ServerEndpoint} and C{TCP6ServerEndpoint} do; any other description
is Twisted's C{serverFromString}'s.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.internet.defer import Deferred, execute

from l4lb.tcp.backlog import _arguments

__all__ = ["TCPServerEndpoint", "listening_factory", "server_endpoint"]

#: The default listening interface of each plain TCP type, as Twisted's.
_INTERFACES = {"tcp": "", "tcp6": "::"}

#: The arguments of a plain TCP description, in positional order.
_TCP_ARGUMENTS = ("port", "interface", "backlog")


class TCPServerEndpoint:
    """
    Listen on a TCP port with C{reactor.listenTCP}, as Twisted's
    C{TCP4ServerEndpoint} and C{TCP6ServerEndpoint} do.
    """

    __slots__ = ("reactor", "port", "interface", "backlog")

    def __init__(self, reactor: Any, port: int, interface: str, backlog: int) -> None:
        """
        @param port: The port number (0: any free port).
        @param interface: The address to listen on (C{""}: every IPv4
            address, C{"::"}: every address).
        @param backlog: The listen backlog.
        """
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.backlog = backlog

    def listen(self, factory: Any) -> "Deferred[Any]":
        """
        Listen with C{factory}.

        @return: A L{Deferred} that has the listening port already, or the
            failure to bind.
        """
        return execute(
            self.reactor.listenTCP,
            self.port,
            factory,
            backlog=self.backlog,
            interface=self.interface,
        )


def _unescape(text: str) -> str:
    """
    A description's argument without its backslash escapes.
    """
    out = []
    escaped = False
    for char in text:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def plain_tcp(description: str) -> Optional[Dict[str, Any]]:
    """
    The port, interface and backlog of a plain TCP server endpoint
    description (C{tcp:} or C{tcp6:} with no other argument), or C{None}
    for any other description, or one Twisted should judge.
    """
    parts = _arguments(description)
    kind = parts[0].lower()
    if kind not in _INTERFACES:
        return None
    given: Dict[str, str] = {}
    for index, part in enumerate(parts[1:]):
        key, equals, value = part.partition("=")
        if not equals:
            if index >= len(_TCP_ARGUMENTS) or given:
                return None
            key, value = _TCP_ARGUMENTS[index], part
        if key not in _TCP_ARGUMENTS or key in given:
            return None
        given[key] = _unescape(value)
    port, backlog = given.get("port", ""), given.get("backlog", "50")
    if not (port.isdigit() and port.isascii() and backlog.isdigit() and backlog.isascii()):
        return None
    return {
        "port": int(port),
        "interface": given.get("interface", _INTERFACES[kind]),
        "backlog": int(backlog),
    }


def server_endpoint(reactor: Any, description: str) -> Any:
    """
    The server endpoint of a description: a L{TCPServerEndpoint} for plain
    TCP (L{plain_tcp}), else Twisted's.
    """
    plain = plain_tcp(description)
    if plain is not None:
        return TCPServerEndpoint(reactor, **plain)
    from twisted.internet.endpoints import serverFromString

    return serverFromString(reactor, description)


def listening_factory(bind: Any, factory: Any, reactor: Any) -> Any:
    """
    The factory a bind listens with: C{factory} itself, or for a bind with
    C{ssl crt} one that terminates TLS in front of it
    (L{l4lb.tcp.tls.listening_factory}, imported only then).

    @param bind: The bind's L{l4lb.config.model.BindSpec}.
    """
    if bind.crt is None:
        return factory
    from l4lb.tcp.tls import listening_factory as tls_listening_factory

    return tls_listening_factory(bind, factory, reactor)
