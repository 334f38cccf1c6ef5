"""
C{splice(2)} for the lean relay: C{os.splice} where Python has it (3.10
and later on Linux), else the C library's through C{ctypes} (PyPy 3.9), else
nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any, Callable, Optional

__all__ = ["splice", "FLAGS"]

#: Move pages rather than copy, and never block on the pipe (Linux's values
#: where C{os} does not name them).
FLAGS: int = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


def _from_libc() -> Optional[Callable[..., int]]:
    """
    C{splice} from the C library, called as C{os.splice} is (no offsets),
    or C{None} where there is none.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Any = ctypes.CDLL(None, use_errno=True).splice
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_ssize_t

    def libc_splice(src: int, dst: int, count: int, flags: int = 0) -> int:
        moved: int = function(src, None, dst, None, count, flags)
        if moved < 0:
            code = ctypes.get_errno()
            # OSError picks the subclass (BlockingIOError for EAGAIN).
            raise OSError(code, os.strerror(code))
        return moved

    return libc_splice


#: C{splice(src, dst, count, flags=...)}, or C{None}: the relay copies.
splice: Optional[Callable[..., int]] = getattr(os, "splice", None) or _from_libc()
