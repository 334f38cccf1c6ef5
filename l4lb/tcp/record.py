"""
The log line of a TCP session that ended, written once to the sink the
session started with, in the format it started with (the frontend's
C{log-format}), unless C{option dontlognull} skips a session that carried
no byte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from twisted.python import log

from l4lb.logformats import format_connection
from l4lb.logs import ConnectionRecord

if TYPE_CHECKING:
    from l4lb.tcp.session import Session


def log_session(session: "Session") -> None:
    """
    Write C{session}'s log line to its sink, if it has one and the line is
    not skipped; an error writing it is logged, never raised.
    """
    sink = session.sink
    spec = session.spec
    if sink is None or (spec.dontlognull and session.bytes_in == 0 and session.bytes_out == 0):
        return
    try:
        sink.write(format_connection(spec.log_format, connection_record(session)))
    except Exception:
        log.err(None, "l4lb: cannot log a connection")


def connection_record(session: "Session") -> ConnectionRecord:
    """
    The log record of a session that ended: its addresses, names, times,
    bytes, termination state and the connection counts at its end.
    """
    server = session.server
    accepted = session.accepted
    connected_at = session.connected_at
    dequeued_at = session.dequeued_at
    connect_time = None
    if connected_at is not None:
        connect_time = connected_at - (accepted if dequeued_at is None else dequeued_at)
    queue_time: Optional[float] = None
    queued_at = session.queued_at
    if queued_at is not None:
        queue_time = (session.seconds() if dequeued_at is None else dequeued_at) - queued_at
    elif server is not None:
        queue_time = 0.0
    sni = session.sni
    if sni is None and session.spec.sni_routes:
        sni = ""
    frontend = session.frontend
    gate = frontend.gate
    backend = session.backend
    # Positional, in the order of the record's fields.
    return ConnectionRecord(
        session.client_host,
        session.client_port,
        accepted,
        frontend.name,
        backend.name,
        None if server is None else server.name,
        queue_time,
        connect_time,
        session.seconds() - accepted,
        session.bytes_out,
        session.termination or "--",
        gate.limiter.current,
        gate.current,
        # HAProxy releases the stream's backend and server slots before it
        # logs, so its %bc and %sc leave out the connection being logged
        # (while %ac and %fc still count it).
        backend.current - (1 if session.dispatched else 0),
        0 if server is None else server.current - 1,
        session.retries,
        session.redispatched,
        0,
        session.queue_passed,
        sni,
    )
