"""
Noticing that a client went away while its transport is paused.

While l4lb connects to a server, the accepted connection is paused: the
relay does not read from the client yet.  A paused socket is not watched by
the reactor at all, so a client that resets its connection meanwhile would
go unnoticed until the server answered.  L{HangupWatcher} watches the
socket in the transport's place and reports a reset or a hang-up.

What the client sends meanwhile is either left in the kernel (the watcher
peeks with C{MSG_PEEK} and steps aside) or, when the session asks for it,
read and handed to the session, up to a limit, to be sent to the server
first once it is connected: that spares the relay a wake-up and two changes
of registration per connection.  A clean end of stream always stays in the
kernel: reading a closed socket again gives it again.
"""

from __future__ import annotations

import socket
from typing import Callable, Optional

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

    __slots__ = ("_socket", "_fileno", "_reactor", "_on_hangup", "_on_data", "_limit", "_watching")

    def __init__(
        self,
        sock: socket.socket,
        reactor: IReactorFDSet,
        on_hangup: Callable[[], None],
        on_data: Optional[Callable[[bytes], None]] = None,
        limit: int = 65536,
    ) -> None:
        """
        @param sock: The paused connection's socket.
        @param reactor: The reactor to watch it with.
        @param on_hangup: Called once when the client reset or hung up.
        @param on_data: Called with the client's bytes as they come, if
            given: the watcher then reads them (at most C{limit} in all,
            after which it stops).  Without it, it only peeks.
        @param limit: The most bytes read for C{on_data}.
        """
        self._on_data = on_data
        self._limit = limit
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

    def drop(self) -> None:
        """
        As L{stop}.
        """
        self.stop()

    def release(self) -> None:
        """
        Stop watching without unregistering: another descriptor of the
        socket took the registration over (the reactor's C{hand_over}).
        """
        self._watching = False

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
        Read what the client sent (or peek, without C{on_data}): stop at
        an end of stream or at the limit, report an error.
        """
        on_data = self._on_data
        try:
            if on_data is None:
                data = self._socket.recv(1, socket.MSG_PEEK)
            else:
                data = self._socket.recv(self._limit)
        except BlockingIOError:
            return None
        except OSError:
            self._hangup()
            return None
        if on_data is None or not data:
            # The end of stream stays: reading it again gives it again.
            self.stop()
            return None
        self._limit -= len(data)
        if self._limit <= 0:
            self.stop()
        on_data(data)
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
