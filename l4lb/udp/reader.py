"""
Reading a UDP frontend's port and a session's socket into one reused buffer.

Twisted's UDP port reads each datagram with C{recvfrom(65535)}, which makes
a 64 KiB string and shrinks it, and checks on every C{write} that the
address is numeric by parsing it.  On the datagram path of a busy frontend
that is a large share of the work per datagram.

L{read_directly} makes a frontend's port read with C{recvfrom_into} into a
buffer shared by every port and session socket (the reactor runs in one
thread, and each datagram is sent on before the next is read), and makes
its sessions answer clients with the socket's own C{sendto}.  A datagram is
copied out of the buffer only when it must outlive the read: the first
datagrams of a session, kept until the server replies so that they can be
sent to another server on a refusal.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IReactorFDSet
from twisted.logger import Logger

from l4lb._twistedcompat import datagram_port_socket, set_do_read
from l4lb.udp.sockets import BUFFER, READS_PER_WAKEUP, VIEW

__all__ = ["read_directly"]

_log = Logger(namespace="l4lb")


def read_directly(port: Any, listener: Any, reactor: Any) -> bool:
    """
    Make a frontend's bound port read its datagrams into the shared buffer
    and hand them to C{listener}'s frontend, where the reactor and the port
    allow it.

    @param port: The port C{listenUDP} made for C{listener}.
    @param listener: The frontend's L{l4lb.udp.frontend.Listener}.
    @param reactor: The reactor the port runs on.
    @return: Whether the port reads directly from now on.
    """
    if not sys.platform.startswith("linux") or not IReactorFDSet.providedBy(reactor):
        return False
    sock = datagram_port_socket(port)
    if sock is None:
        return False
    listener.reply = sock.sendto
    set_do_read(port, _reader(sock, listener))
    return True


def _reader(sock: socket.socket, listener: Any) -> Callable[[], Optional[object]]:
    recvfrom_into = sock.recvfrom_into
    buffer = BUFFER
    view = VIEW
    ipv6 = sock.family == socket.AF_INET6
    frontend = listener.frontend

    def doRead() -> Optional[object]:
        for _ in range(READS_PER_WAKEUP):
            try:
                n, addr = recvfrom_into(buffer)
            except OSError:
                # Nothing waiting, or an error queued on the socket (ICMP
                # about an earlier reply), which the read cleared.
                return None
            if ipv6:
                addr = addr[:2]
            try:
                frontend.datagram(listener, view[:n], addr)
            except Exception:
                # One client's datagram must not stop the port.
                _log.failure("l4lb: cannot relay a datagram from {addr}", addr=addr)
        return None

    return doRead
