"""
Adopting a descriptor that another process shares (a listening socket
passed to a worker or to the process an upgrade starts) without changing
its mode for that other process.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator


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
    wrapping leave the descriptor non-blocking on both interpreters; a
    worker changes it while it starts, before any other thread runs.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.0)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
