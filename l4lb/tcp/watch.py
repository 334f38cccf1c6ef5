"""
Noticing that a client went away while its transport is paused.

While l4lb connects to a server, the accepted connection is paused: nothing
is read from the client.  A paused socket is not watched by the reactor at
all, so a client that resets its connection meanwhile would go unnoticed
until the server answered.  L{HangupWatcher} watches the socket in the
transport's place and peeks at it with C{MSG_PEEK}, which consumes nothing:
data and a clean end of stream stay in the kernel for the relay to read
later, and only a reset or a hang-up is reported.
"""

from __future__ import annotations

import socket
from typing import Callable

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IReadDescriptor)
class HangupWatcher:
    """
    Watch a paused socket for a reset or hang-up.

    Once data or an end of stream is waiting, the watcher stops: from then
    on the relay learns of it when it resumes reading.
    """

    __slots__ = ("_socket", "_fileno", "_reactor", "_on_hangup", "_watching")

    def __init__(
        self,
        sock: socket.socket,
        reactor: IReactorFDSet,
        on_hangup: Callable[[], None],
    ) -> None:
        """
        @param sock: The paused connection's socket.
        @param reactor: The reactor to watch it with.
        @param on_hangup: Called once when the client reset or hung up.
        """
        self._socket = sock
        self._fileno = sock.fileno()
        self._reactor = reactor
        self._on_hangup = on_hangup
        self._watching = False

    def start(self) -> None:
        """
        Begin watching.  The socket's transport must not be reading.
        """
        if not self._watching:
            self._watching = True
            self._reactor.addReader(self)

    def stop(self) -> None:
        """
        Stop watching; safe to call more than once.
        """
        if self._watching:
            self._watching = False
            self._reactor.removeReader(self)

    def fileno(self) -> int:
        """
        The watched socket's descriptor.
        """
        return self._fileno

    def logPrefix(self) -> str:
        """
        Name log messages about this watcher.
        """
        return "HangupWatcher"

    def doRead(self) -> None:
        """
        Peek at the socket: stop on data or end of stream, report an error.
        """
        try:
            self._socket.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return None
        except OSError:
            self._hangup()
            return None
        self.stop()
        return None

    def connectionLost(self, reason: Failure) -> None:
        """
        The reactor saw the socket hang up.
        """
        self._hangup()

    def _hangup(self) -> None:
        self.stop()
        on_hangup, self._on_hangup = self._on_hangup, _ignore
        on_hangup()


def _ignore() -> None:
    pass
