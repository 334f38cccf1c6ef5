"""
The AMP commands between the main process and its workers.

Main process to worker: L{SetServer}, L{Begin}, L{ShutdownSessions},
L{SetFrontendMaxconn}, L{ClearCounters}, L{Counters}, L{ReopenLogs},
L{Stop}.  Worker to
main process: L{Log}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.protocols import amp
from twisted.python.failure import Failure

#: The most characters of counters one L{Counters} answer carries (AMP
#: values are limited to 65535 bytes; the text is ASCII JSON).
PAGE_SIZE = 60000


class QuietAMP(amp.AMP):
    """
    AMP without its log lines at each connection and disconnection (one
    per worker start would only be noise).
    """

    def makeConnection(self, transport: Any) -> None:
        """
        Connect without logging.
        """
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Fail the pending calls, without logging.
        """
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None


class SetServer(amp.Command):
    """
    A server's state as the main process knows it (health checks, runtime
    API, agent): the worker applies it to its own copy of the server.
    C{known} is false when the worker has no such server.
    """

    arguments = [
        (b"backend", amp.Unicode()),
        (b"server", amp.Unicode()),
        (b"up", amp.Boolean()),
        (b"admin", amp.Unicode()),
        (b"weight", amp.Integer()),
        (b"maxconn", amp.Integer()),
    ]
    response = [(b"known", amp.Boolean())]


class Begin(amp.Command):
    """
    Every server's state has been sent: the worker may start accepting.
    """


class ShutdownSessions(amp.Command):
    """
    Close every connection of a server (C{shutdown sessions server}).
    """

    arguments = [(b"backend", amp.Unicode()), (b"server", amp.Unicode())]
    response = [(b"killed", amp.Integer())]


class SetFrontendMaxconn(amp.Command):
    """
    Change a frontend's connection limit (C{set maxconn frontend}).
    """

    arguments = [(b"frontend", amp.Unicode()), (b"maxconn", amp.Integer())]
    response = [(b"known", amp.Boolean())]


class ClearCounters(amp.Command):
    """
    Reset the cumulative counters (C{clear counters}).
    """


class Counters(amp.Command):
    """
    One page of the worker's counters (L{l4lb.workers.counters}) as JSON
    text.  Page 0 takes a new reading; later pages continue that reading;
    C{pages} says how many there are.
    """

    arguments = [(b"page", amp.Integer())]
    response = [(b"data", amp.Unicode()), (b"pages", amp.Integer())]


class ReopenLogs(amp.Command):
    """
    Re-open the connection log's file (after log rotation; SIGUSR1 to the
    main process).
    """


class Stop(amp.Command):
    """
    Stop gracefully: close the listeners at once, let established
    connections finish for up to C{hard-stop-after}, then exit 0.
    """


class Log(amp.Command):
    """
    A message of the worker's log, for the main process's log.
    """

    arguments = [(b"level", amp.Unicode()), (b"text", amp.Unicode())]
    requiresAnswer = False
