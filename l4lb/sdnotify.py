"""
systemd's readiness protocol (C{sd_notify}): a datagram of C{KEY=VALUE}
lines to the socket named by C{NOTIFY_SOCKET}, when systemd set it.

l4lb sends C{READY=1} once its frontends accept connections
(C{Type=notify}), and a process that took over from another (an upgrade,
L{l4lb.handover}) sends C{MAINPID=} with its own pid first, so that
systemd follows it (C{NotifyAccess=all} in the unit).
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, Optional

from twisted.logger import Logger

_log = Logger(namespace="l4lb")


def notify(message: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """
    Send C{message} (lines of C{KEY=VALUE}) to systemd.

    @return: Whether it was sent: C{False} when not run by systemd
        (C{NOTIFY_SOCKET} unset) or when sending failed (logged).
    """
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        # An abstract socket.
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(message.encode("utf-8"))
    except OSError as e:
        _log.warn(
            "Cannot notify systemd on {path}: {error}",
            path=path.replace("\0", "@"),
            error=e.strerror or str(e),
        )
        return False
    return True
