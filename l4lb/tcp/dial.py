"""
Connecting to a server without Twisted's connector.

C{reactor.connectTCP} makes a connector, a client transport, a Deferred for
an address that is already numeric and a zero-delay call to look it up:
several times the work of the C{connect} itself.  For a server reached over
plain TCP by a session that will use the lean data path, L{Dialer} opens a
non-blocking socket, starts the connection and waits for the socket to
become writable, then hands the connected socket to its session (or tells
it the attempt failed).  Its session keeps the connect timeout, as it does
for C{connectTCP}.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any, Dict, Optional

from twisted.internet.interfaces import IWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["Dialer"]

_STARTED = (0, errno.EINPROGRESS, errno.EWOULDBLOCK)
_NONBLOCKING: int = getattr(socket, "SOCK_NONBLOCK", 0)
# Made non-blocking (and close-on-exec) by the one system call where the
# platform allows.
_TYPE = socket.SOCK_STREAM | _NONBLOCKING | getattr(socket, "SOCK_CLOEXEC", 0)

# Reactor classes that report a failed connect as an error event (epoll's
# EPOLLERR, which they turn into connectionLost) and call doWrite only for
# a socket that connected: there, doWrite need not ask the socket.
_SAYS_FAILED: Dict[type, bool] = {}


def reports_failed_connects(reactor: Any) -> bool:
    """
    Whether C{reactor} calls a dialer's C{doWrite} only once the
    connection is made, a failed attempt going to C{connectionLost}: true
    of epoll reactors (Twisted's and l4lb's); a C{select()} reactor marks
    a failed socket writable like a connected one.
    """
    kind = type(reactor)
    known = _SAYS_FAILED.get(kind)
    if known is None:
        try:
            from twisted.internet.epollreactor import EPollReactor
        except ImportError:
            known = False
        else:
            known = isinstance(reactor, EPollReactor)
        _SAYS_FAILED[kind] = known
    return known


@implementer(IWriteDescriptor)
class Dialer:
    """
    One connection attempt to a server.

    The session is told exactly once, unless it abandons the attempt
    first: C{dial_succeeded(dialer, sock)} with the connected socket, which
    it then owns, or C{dial_failed(dialer, reason)} with a C{strerror}-like
    text.

    @ivar session: The L{l4lb.tcp.session.Session} it connects for.
    @ivar host: The server's numeric address.
    @ivar port: The server's port.
    @ivar registered: Whether it is registered with the reactor.
    """

    __slots__ = ("session", "reactor", "host", "port", "sock", "fd", "registered", "ask")

    def __init__(self, session: Any, host: str, port: int, reactor: Any) -> None:
        """
        Start connecting.
        """
        self.session = session
        self.reactor = reactor
        self.host = host
        self.port = port
        self.sock: Optional[socket.socket] = None
        self.fd = -1
        self.registered = False
        # Whether doWrite must ask the socket how the connect went.
        self.ask = not reports_failed_connects(reactor)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.socket(family, _TYPE)
        except OSError as e:
            # Out of descriptors, most likely: fail as a refusal would,
            # but not from within the caller.
            reactor.callLater(0, self._fail, e.strerror or str(e))
            return
        if not _NONBLOCKING:
            sock.setblocking(False)
        code = sock.connect_ex((host, port))
        if code not in _STARTED:
            sock.close()
            reactor.callLater(0, self._fail, os.strerror(code))
            return
        self.sock = sock
        self.fd = sock.fileno()
        self.registered = True
        reactor.addWriter(self)

    def fileno(self) -> int:
        """
        The connecting socket's descriptor.
        """
        return self.fd

    def logPrefix(self) -> str:
        """
        How the reactor names it in its logs.
        """
        return "l4lb-dial"

    def doWrite(self) -> None:
        """
        The connection is made or failed: tell the session.  A session
        that relays the connection leanly takes over the registration
        (L{release}); otherwise it is dropped once the session knows.
        """
        sock, self.sock = self.sock, None
        if sock is None:
            self.drop()
            return None
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if self.ask else 0
        if code:
            self.drop()
            sock.close()
            self.session.dial_failed(self, os.strerror(code))
        else:
            self.session.dial_succeeded(self, sock)
            self.drop()
        return None

    def connectionLost(self, reason: Failure) -> None:
        """
        The reactor saw the socket fail (a refused connection, on some
        reactors) and dropped it.
        """
        self.registered = False
        sock, self.sock = self.sock, None
        if sock is None:
            return
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        sock.close()
        self.session.dial_failed(self, os.strerror(code) if code else reason.getErrorMessage())

    def stopConnecting(self) -> None:
        """
        Abandon the attempt; the session hears nothing more of it.
        """
        self.drop()
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
        self.session = None

    def drop(self) -> None:
        """
        Stop watching the socket, if it still does.
        """
        if self.registered:
            self.registered = False
            self.reactor.removeWriter(self)

    def release(self) -> None:
        """
        Forget the registration: another descriptor of the socket took it
        over (the reactor's C{hand_over}).
        """
        self.registered = False

    def _fail(self, reason: str) -> None:
        if self.session is not None:
            self.session.dial_failed(self, reason)
