"""
The listen backlog of a TCP bind: how many connections the kernel holds,
handshake done, until l4lb accepts them.

As in HAProxy, a bind's C{backlog} option wins, then the frontend's
C{backlog} key, then the frontend's C{maxconn}, then the global one.
Twisted's own default (50) is far too small for a balancer: a burst of new
connections, or a frontend at its C{maxconn} (which stops accepting and
leaves new connections in the backlog), would see SYNs dropped.  The kernel
caps the value at C{net.core.somaxconn}.
"""

from __future__ import annotations

from typing import List

from l4lb.config.binds import MAX_BACKLOG

#: Endpoint types whose Twisted descriptions take C{backlog=}.  A
#: C{systemd:} socket is already listening: its backlog is systemd's.
BACKLOG_PREFIXES = ("ssl", "tcp", "tcp6", "unix")

#: The backlog when no limit at all is known: Linux's default
#: C{net.core.somaxconn} since 5.4.
FALLBACK_BACKLOG = 4096


def effective_backlog(
    bind_backlog: int, frontend_backlog: int, frontend_maxconn: int, global_maxconn: int
) -> int:
    """
    The backlog a bind listens with: the first of its arguments that is
    set (non-zero), in order.

    @param bind_backlog: The bind's C{backlog} option; 0 when not given.
    @param frontend_backlog: The frontend's C{backlog} key; 0 when not set.
    @param frontend_maxconn: The frontend's C{maxconn}; 0 when not set.
    @param global_maxconn: The process's C{maxconn} (as configured or
        derived from the file-descriptor limit); 0 for none.
    @return: The backlog; L{FALLBACK_BACKLOG} when nothing is set.
    """
    for value in (bind_backlog, frontend_backlog, frontend_maxconn, global_maxconn):
        if value > 0:
            return min(value, MAX_BACKLOG)
    return FALLBACK_BACKLOG


def _arguments(description: str) -> List[str]:
    """
    The colon-separated parts of an endpoint description, escapes kept.
    """
    parts: List[str] = []
    current: List[str] = []
    escaped = False
    for char in description:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def with_backlog(description: str, backlog: int) -> str:
    """
    A server endpoint description that listens with C{backlog}.

    @param description: A Twisted server endpoint description.
    @return: C{description} with C{:backlog=N} added, unchanged when it
        already names a backlog or its type takes none (C{systemd:}).
    """
    parts = _arguments(description)
    if parts[0].lower() not in BACKLOG_PREFIXES:
        return description
    if any(part.lower().startswith("backlog=") for part in parts[1:]):
        return description
    return f"{description}:backlog={backlog}"
