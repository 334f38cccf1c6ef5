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

#: The name of l4lb's reactor (L{l4lb.reactor}), as twistd's C{--reactor}
#: takes it; a worker runs on it when its main process does.  (Before the
#: import below: the pool reads it.)
REACTOR_NAME = "l4lb-epoll"

from l4lb.workers.pool import WorkerPool  # noqa: E402

__all__ = ["REACTOR_NAME", "WorkerPool"]
