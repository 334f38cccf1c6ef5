"""
Several processes for one balancer: C{nbproc N} in C{[global]}.

The main process (twistd) binds every listening socket, runs the health
checks, the runtime API and the statistics pages, and starts C{N} worker
processes (C{python -m l4lb.workers}) that share its TCP listening sockets
and accept and relay the connections with the same relay code.  The two
sides talk AMP over a UNIX socket pair:

 - L{l4lb.workers.commands}: the AMP commands;
 - L{l4lb.workers.pool}: the main side (spawns, restarts, stops and
   informs the workers, collects their counters);
 - L{l4lb.workers.child}: the worker side;
 - L{l4lb.workers.counters}: what a worker reports and how the reports
   are added to the main process's statistics.
"""

import socket
from contextlib import contextmanager
from typing import Iterator

#: The name of l4lb's reactor (L{l4lb.reactor}), as twistd's C{--reactor}
#: takes it; a worker runs on it when its main process does.  (Before the
#: import below, as is L{nonblocking_adoption}: the pool reads them.)
REACTOR_NAME = "l4lb-epoll"


@contextmanager
def nonblocking_adoption() -> Iterator[None]:
    """
    Adopt descriptors into the reactor inside this block: socket objects
    made in it wrap their descriptor in non-blocking mode.

    Twisted's C{adoptStreamPort} and C{adoptStreamConnection} expect a
    non-blocking descriptor and wrap it in a new C{socket.socket}.  Where
    the default timeout is C{None}, PyPy's socket objects (unlike
    CPython's) set what they wrap to blocking mode.  The mode belongs to
    the open file, which the main process and every worker share: a
    listener left blocking, even for a moment, can stop a worker in
    C{accept} once the queue is empty.  A default timeout of 0 makes the
    wrapping leave the descriptor non-blocking on both interpreters.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.0)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


from l4lb.workers.pool import WorkerPool  # noqa: E402

__all__ = ["REACTOR_NAME", "WorkerPool", "nonblocking_adoption"]
