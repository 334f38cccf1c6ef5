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
    connect_time = None
    if session.connected_at is not None:
        started = session.dequeued_at if session.dequeued_at is not None else accepted
        connect_time = session.connected_at - started
    queue_time: Optional[float] = None
    if session.queued_at is not None:
        left = session.dequeued_at if session.dequeued_at is not None else session.seconds()
        queue_time = left - session.queued_at
    elif server is not None:
        queue_time = 0.0
    sni = session.sni
    if sni is None and session.spec.sni_routes:
        sni = ""
    return ConnectionRecord(
        client_host=session.client_host,
        client_port=session.client_port,
        accepted=accepted,
        frontend=session.frontend.name,
        backend=session.backend.name,
        server=server.name if server is not None else None,
        queue_time=queue_time,
        connect_time=connect_time,
        total_time=session.seconds() - accepted,
        bytes_out=session.bytes_out,
        termination=session.termination or "--",
        actconn=session.frontend.gate.limiter.current,
        feconn=session.frontend.gate.current,
        # HAProxy releases the stream's backend and server slots before it
        # logs, so its %bc and %sc leave out the connection being logged
        # (while %ac and %fc still count it).
        beconn=session.backend.current - (1 if session.dispatched else 0),
        srvconn=server.current - 1 if server is not None else 0,
        retries=session.retries,
        redispatched=session.redispatched,
        backend_queue=session.queue_passed,
        sni=sni,
    )
