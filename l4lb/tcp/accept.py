"""
Accepting plain TCP connections without Twisted's per-connection transport.

A frontend bind without TLS and without stages (no PROXY header to read, no
rule that inspects the client's first bytes) hands each new connection
straight to the lean data path.  L{accept_directly} makes such a listening
port accept its connections itself: each accepted socket goes to a new
session inside a L{l4lb.tcp.raw.RawTransport}, with no Twisted transport,
address object or log prefix built for it.

The port stays Twisted's: it binds, listens, stops and is paused by the
frontend's connection limits as before.  Whenever a connection cannot take
the lean path (the frontend has stages, C{tune.relay = classic}) and on any
C{accept} error other than "nothing waiting", the port's own C{doRead}
does the accepting, so Twisted's handling of those errors (running out of
descriptors included) is kept.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, Callable, Optional, Tuple

from twisted.internet.interfaces import IReactorFDSet
from twisted.logger import Logger

from l4lb._twistedcompat import (
    accepts_per_event,
    set_accepts_per_event,
    set_do_read,
    stream_port_socket,
)
from l4lb.tcp.raw import RawTransport
from l4lb.tcp.legs import ClientLeg

__all__ = ["accept_directly", "ACCEPTS_PER_EVENT"]

#: The most connections accepted per readable event of a listening socket.
ACCEPTS_PER_EVENT = 64

_log = Logger(namespace="l4lb")


def accept_directly(port: Any, factory: Any, reactor: Any) -> bool:
    """
    Make C{port} accept its connections for the lean data path where it
    can.  Call it before the frontend's gate takes the port (the gate
    wraps the port's C{doRead}).

    @param port: A listening port from C{listenTCP}, C{adoptStreamPort} or
        a TCP server endpoint.
    @param factory: The L{l4lb.tcp.frontend.FrontendFactory} the port
        listens with (not a TLS factory wrapping one).
    @param reactor: The reactor of the sessions.
    @return: Whether the port accepts directly from now on.
    """
    if not sys.platform.startswith("linux") or not IReactorFDSet.providedBy(reactor):
        return False
    if getattr(factory, "first", None):
        return False
    listener = stream_port_socket(port)
    if listener is None:
        return False
    set_do_read(port, _direct_reader(port, listener, factory, reactor))
    return True


def _direct_reader(
    port: Any, listener: socket.socket, factory: Any, reactor: Any
) -> Callable[[], Optional[object]]:
    twisted_read = port.doRead
    # socket.accept() converts the family and type to enums for every new
    # socket; the private _accept() returns the bare descriptor.
    raw_accept = getattr(listener, "_accept", None)
    family = int(listener.family)
    ipv6 = family == socket.AF_INET6
    stream = int(socket.SOCK_STREAM)

    def accept() -> Tuple[socket.socket, Any]:
        if raw_accept is None:
            return listener.accept()
        fd, peer = raw_accept()
        return socket.socket(family, stream, 0, fd), peer

    def doRead() -> Optional[object]:
        # Read at each event: a reload hands the port to a new frontend.
        frontend = factory.frontend
        if frontend.stages or not frontend.lean:
            return twisted_read()
        count = min(accepts_per_event(port), ACCEPTS_PER_EVENT)
        for _ in range(count):
            try:
                sock, peer = accept()
            except BlockingIOError:
                break
            except OSError:
                return twisted_read()
            transport = None
            try:
                sock.setblocking(False)
                if ipv6 and peer[3]:
                    # A link-local peer: its host carries the zone, as
                    # Twisted's transports give it.
                    host = socket.getnameinfo(peer, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)[0]
                    peer = (host,) + peer[1:]
                leg = ClientLeg()
                leg.frontend = frontend
                leg.peer = peer
                transport = RawTransport(sock, leg, peer, reactor)
                leg.makeConnection(transport)
            except Exception:
                # One connection's failure must not stop the port.
                _log.failure("l4lb: cannot start a session for {peer}", peer=peer)
                if transport is None:
                    sock.close()
                else:
                    transport.abortConnection()
        # The frontend's gate lowers it again when fewer slots are free.
        set_accepts_per_event(port, ACCEPTS_PER_EVENT)
        return None

    return doRead
