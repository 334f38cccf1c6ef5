"""
The process's file-descriptor limit (C{RLIMIT_NOFILE}).

Each relayed TCP connection holds two sockets, so a balancer runs out of
descriptors long before it runs out of anything else.  At start l4lb raises
the soft limit to the hard limit (never lowering it) and warns when even
that is too small for the configured C{maxconn}.

The functions take C{getrlimit}/C{setrlimit} as arguments so that they can
be tested without touching the process; L{l4lb.tap} passes the real ones.
"""

from __future__ import annotations

import resource
from typing import Callable, Optional, Sequence, Tuple

import attr

#: Descriptors kept for everything that is not a relayed connection:
#: listeners, log files, health checks, the resolver, and one connection
#: to each of l4lb's own listeners when the limit leaves them no more
#: (L{own_listener_caps}).
FD_RESERVE = 64

#: C{getrlimit(RLIMIT_NOFILE)}: the current C{(soft, hard)} limits.
GetLimit = Callable[[int], Tuple[int, int]]
#: C{setrlimit(RLIMIT_NOFILE, (soft, hard))}.
SetLimit = Callable[[int, Tuple[int, int]], None]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class NofileLimit:
    """
    The file-descriptor limit before and after raising it.

    @ivar before: The soft limit found at start.
    @ivar soft: The soft limit now (C{resource.RLIM_INFINITY} for none).
    @ivar hard: The hard limit.
    @ivar error: Why raising failed, or C{None}.
    """

    before: int
    soft: int
    hard: int
    error: Optional[str] = None


def _larger(a: int, b: int) -> int:
    """
    The larger of two limits, where C{RLIM_INFINITY} is the largest.
    """
    if resource.RLIM_INFINITY in (a, b):
        return resource.RLIM_INFINITY
    return max(a, b)


def raise_nofile_limit(getrlimit: GetLimit, setrlimit: SetLimit) -> NofileLimit:
    """
    Raise the soft C{RLIMIT_NOFILE} to the hard limit; never lower it.

    @param getrlimit: Reads a limit (L{resource.getrlimit}).
    @param setrlimit: Sets a limit (L{resource.setrlimit}).
    @return: The limits before and after; when the kernel refuses (for an
        infinite hard limit above C{fs.nr_open}, say), the soft limit is
        left as it was and C{error} says why.
    """
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    target = _larger(soft, hard)
    if target == soft:
        return NofileLimit(soft, soft, hard)
    try:
        setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as e:
        return NofileLimit(soft, soft, hard, str(e))
    return NofileLimit(soft, target, hard)


def needed_descriptors(maxconn: int) -> int:
    """
    The descriptors C{maxconn} relayed connections need: two sockets each,
    plus L{FD_RESERVE}.
    """
    return 2 * maxconn + FD_RESERVE


def traffic_maxconn(soft: int, own: int) -> int:
    """
    The global C{maxconn} when the configuration sets none: what the soft
    limit holds after L{FD_RESERVE} and the connections of l4lb's own
    listeners, two descriptors per relayed connection.

    @param soft: The soft C{RLIMIT_NOFILE} (C{RLIM_INFINITY} for none).
    @param own: The caps of l4lb's own listeners, added up.
    """
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, (soft - FD_RESERVE - own) // 2)


def own_listener_caps(soft: int, maxconn: int, wanted: Sequence[int]) -> Tuple[int, ...]:
    """
    The connection caps of l4lb's own listeners (runtime API, statistics
    pages), taken only from what the descriptor limit leaves once the
    traffic's C{maxconn} and L{FD_RESERVE} are counted.

    When everything wanted fits, each listener gets its cap.  Otherwise
    what is left is shared evenly, and each listener keeps at least one
    connection, counted in L{FD_RESERVE}, so that an operator can always
    get in.

    @param soft: The soft C{RLIMIT_NOFILE} (C{RLIM_INFINITY} for none).
    @param maxconn: The traffic's global C{maxconn}.
    @param wanted: Each listener's configured cap.
    @return: Each listener's cap, in the order of C{wanted}.
    """
    if soft == resource.RLIM_INFINITY or not wanted:
        return tuple(wanted)
    left = soft - needed_descriptors(maxconn)
    if left >= sum(wanted):
        return tuple(wanted)
    share = max(0, left) // len(wanted)
    return tuple(max(1, min(cap, share)) for cap in wanted)


def shortage_warning(limit: NofileLimit, maxconn: int) -> Optional[str]:
    """
    A warning when the soft limit cannot hold C{maxconn} connections.

    @param limit: The limits after L{raise_nofile_limit}.
    @param maxconn: The configured global C{maxconn}.
    @return: The message, or C{None} when the limit is large enough.
    """
    needed = needed_descriptors(maxconn)
    if limit.soft == resource.RLIM_INFINITY or limit.soft >= needed:
        return None
    return (
        f"maxconn {maxconn} needs {needed} file descriptors (2 per connection"
        f" + {FD_RESERVE} reserved) but the limit is {limit.soft} (hard limit"
        f" {_show(limit.hard)}); connections beyond about"
        f" {max(0, (limit.soft - FD_RESERVE) // 2)} will fail to open. Raise"
        " the hard limit (systemd: LimitNOFILE=; shell: ulimit -Hn) or lower"
        " maxconn."
    )


def _show(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)
