"""
An epoll reactor that dispatches events without a log context per event.

Twisted's C{EPollReactor.doPoll} runs every read and write event through
C{twisted.python.log.callWithLogger}, which asks the selectable for its
C{logPrefix()}, copies the current log context, pushes the copy and pops it
again.  On a keep-alive relay that is about a quarter of the process's CPU.
L{L4lbEPollReactor} calls the handlers directly and keeps Twisted's error
handling: an exception from C{doRead}/C{doWrite} is logged (with
C{twisted.logger}, the selectable's C{logPrefix()} as its system) and that
selectable alone is disconnected with it; C{EPOLLHUP}/C{EPOLLERR} without
pending input end the connection as Twisted does.

What changes: messages logged through the legacy C{twisted.python.log} from
inside a handler no longer carry the selectable's C{logPrefix()} as their
C{system} (l4lb logs through C{twisted.logger} with its own namespaces, so its
output is the same).

Its main loop takes a short way through the usual turn of a busy relay
(nothing from threads, nothing newly scheduled, nothing due): it waits for
the next scheduled call directly instead of running Twisted's
C{runUntilCurrent} and C{timeout} for nothing.  For the lean relay it also
offers C{hand_over}, which saves C{epoll_ctl} calls when a socket changes
hands.

A socket is always taken out of epoll's set before it is closed, although
closing it would do so when no other process holds it: a child process
(a worker, the new process of an upgrade) can hold a copy of the descriptor
for a moment after C{fork}, and the registration of a closed socket still
open elsewhere stays in the set under its old number; once the number is
reused, its events would reach the new socket's handler.

Run it with C{twistd --reactor=l4lb-epoll -n l4lb --config lb.ini}; Linux
only (it needs C{select.epoll}).
"""

from __future__ import annotations

import errno
import select
import sys
from typing import Any, Dict, List, Optional, Set, Tuple

from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.logger import Logger

if not hasattr(select, "epoll"):
    raise ImportError(
        "the l4lb-epoll reactor needs epoll(7), which this system"
        f" ({sys.platform}) does not have; run twistd without --reactor"
    )

from l4lb._twistedcompat import (  # noqa: E402
    MAIN_LOOP_LOG,
    NO_FILEDESC,
    TOP_HANDLER,
    EPollInternals,
)

__all__ = ["L4lbEPollReactor", "install"]

_log = Logger(namespace="l4lb.reactor")

# epoll_wait takes its timeout in milliseconds as a C int.
_LONGEST_WAIT = 2147483

_EPOLLIN: int = select.EPOLLIN
_EPOLLOUT: int = select.EPOLLOUT
_DISCONNECTED: int = select.EPOLLHUP | select.EPOLLERR


class L4lbEPollReactor(EPollInternals):
    """
    C{EPollReactor} whose poll loop calls C{doRead}/C{doWrite} without
    wrapping each call in a log context.  What it reads of Twisted's
    internals it reads through L{l4lb._twistedcompat.EPollInternals}.
    """

    def doPoll(self, timeout: Optional[float]) -> None:
        """
        Wait up to C{timeout} seconds (C{None}: without limit) for events
        and dispatch each one.
        """
        if timeout is None:
            timeout = -1
        try:
            selectables: Dict[int, Any] = self.selectables
            events: List[Tuple[int, int]] = self.poller.poll(timeout, len(selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        reads: Set[int] = self.reading
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                # Removed by an earlier event of this same batch.
                continue
            why: Any = None
            in_read = False
            if event & _DISCONNECTED and not event & _EPOLLIN:
                # Hung up with no input left: a clean end when we were
                # reading (perhaps a half-close), an error otherwise.
                if fd in reads:
                    in_read = True
                    why = CONNECTION_DONE
                else:
                    why = CONNECTION_LOST
            else:
                try:
                    if selectable.fileno() == -1:
                        why = NO_FILEDESC
                    else:
                        if event & _EPOLLIN:
                            why = selectable.doRead()
                            in_read = True
                        if not why and event & _EPOLLOUT:
                            why = selectable.doWrite()
                            in_read = False
                except BaseException as e:
                    why = e
                    _log.failure(
                        "Unhandled error in {handler}; disconnecting it",
                        handler=selectable,
                        log_system=_log_prefix(selectable),
                    )
            if why:
                self._disconnect(selectable, why, in_read)

    # Twisted names its parameter "delay" here, and "timeout" in doPoll.
    doIteration = doPoll  # type: ignore[assignment]

    def mainLoop(self) -> None:
        """
        Twisted's main loop, with a short way through the usual turn:
        when no thread has queued a call, no call was scheduled since the
        last turn, none is due and no stop is pending, there is nothing
        for C{runUntilCurrent} to do, and the wait is the time to the
        next scheduled call.  Any other turn runs as in Twisted.
        """
        if TOP_HANDLER is None:
            super().mainLoop()
            return
        seconds = self.seconds
        started = self.loop_started
        next_due = self.next_due
        while started():
            with TOP_HANDLER:
                while started():
                    wait: Optional[float]
                    # -inf when the turn has more to run than due calls.
                    due = next_due()
                    if due is None:
                        wait = None
                    else:
                        wait = due - seconds()
                        if wait <= 0:
                            wait = self._run_due()
                        elif wait > _LONGEST_WAIT:
                            wait = _LONGEST_WAIT
                    self.doIteration(self.running and wait)
        MAIN_LOOP_LOG.info("Main loop terminated.")

    def _run_due(self) -> Optional[float]:
        """
        Run what is due, as Twisted's turn does, and return how long the
        next wait may be.
        """
        self.runUntilCurrent()
        return self.timeout()

    def hand_over(self, old: Any, new: Any, reading: bool, writing: bool) -> bool:
        """
        Give C{new} the registration of C{old}, another descriptor of the
        same socket that is done with it, watched for reading and writing
        as asked: at most one system call, where removing C{old} and adding
        C{new} would take two.

        @return: Whether C{old} was registered; if not, nothing changed
            and C{new} must be added the usual way.
        """
        fd = old.fileno()
        selectables = self.selectables
        if fd < 0 or selectables.get(fd) is not old:
            return False
        reads, writes = self.reading, self.writing
        if (fd in reads, fd in writes) != (reading, writing):
            if reading or writing:
                flags = (_EPOLLIN if reading else 0) | (_EPOLLOUT if writing else 0)
                self.poller.modify(fd, flags)
            else:
                self.poller.unregister(fd)
        for registered, wanted in ((reads, reading), (writes, writing)):
            if wanted:
                registered.add(fd)
            else:
                registered.discard(fd)
        if reading or writing:
            selectables[fd] = new
        else:
            del selectables[fd]
        return True

    def _disconnect(self, selectable: Any, why: Any, in_read: bool) -> None:
        """
        Disconnect C{selectable}; an exception from its C{connectionLost}
        is logged, and the loop goes on with the other events (what
        C{callWithLogger} did around the whole dispatch).
        """
        try:
            self.disconnect_selectable(selectable, why, in_read)
        except KeyboardInterrupt:
            raise
        except BaseException:
            _log.failure(
                "Unhandled error while disconnecting {handler}",
                handler=selectable,
                log_system=_log_prefix(selectable),
            )


def _log_prefix(selectable: Any) -> str:
    """
    The selectable's C{logPrefix()}, as Twisted's dispatch tags its
    messages, or a placeholder when that method fails too.
    """
    try:
        return str(selectable.logPrefix())
    except BaseException:
        return "(buggy logPrefix method)"


def install() -> L4lbEPollReactor:
    """
    Install L{L4lbEPollReactor} as the global reactor (before anything
    imports C{twisted.internet.reactor}).

    @return: The installed reactor.
    """
    from twisted.internet.main import installReactor

    reactor = L4lbEPollReactor()
    installReactor(reactor)
    return reactor
