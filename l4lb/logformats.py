"""
The layouts of connection and UDP session logs (C{log-format}).

C{tcplog} is HAProxy's line (L{l4lb.logs.format_tcplog},
L{l4lb.udp.log.format_udplog}); C{json} writes the same fields as one JSON
object per line, named as HAProxy's documentation names the fields of its
C{tcplog} line.  A line is formatted once, when its session ends.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict

from l4lb.logs import ConnectionRecord, format_date, format_tcplog
from l4lb.udp.log import UdpRecord, format_udplog

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _millis(seconds: Any) -> int:
    return -1 if seconds is None else int(round(seconds * 1000))


def json_tcplog(r: ConnectionRecord) -> str:
    """
    A TCP connection as one JSON object, its keys in the order of the
    C{tcplog} line; C{sni} is present where the line has its capture.
    """
    fields: Dict[str, Any] = {
        "mode": "tcp",
        "client_ip": r.client_host,
        "client_port": r.client_port,
        "accept_date": format_date(r.accepted),
        "accept_ts": round(r.accepted, 3),
        "frontend_name": r.frontend,
        "backend_name": r.backend,
        "server_name": r.server or "<NOSRV>",
        "Tw": _millis(r.queue_time),
        "Tc": _millis(r.connect_time),
        "Tt": _millis(r.total_time),
        "bytes_read": r.bytes_out,
        "termination_state": r.termination,
        "actconn": r.actconn,
        "feconn": r.feconn,
        "beconn": r.beconn,
        "srv_conn": r.srvconn,
        "retries": r.retries,
        "redispatched": r.redispatched,
        "srv_queue": r.srv_queue,
        "backend_queue": r.backend_queue,
    }
    if r.sni is not None:
        # Only on frontends that route by TLS server name, as on the
        # tcplog line's trailing capture.
        fields["sni"] = r.sni
    return _dumps(fields)


def json_udplog(r: UdpRecord) -> str:
    """
    A UDP session as one JSON object, its keys in the order of the UDP
    session line.
    """
    fields: Dict[str, Any] = {
        "mode": "udp",
        "client_ip": r.client_host,
        "client_port": r.client_port,
        "accept_date": format_date(r.started),
        "accept_ts": round(r.started, 3),
        "frontend_name": r.frontend,
        "backend_name": r.backend,
        "server_name": r.server,
        "Tt": _millis(r.duration),
        "datagrams_in": r.datagrams_in,
        "bytes_uploaded": r.bytes_in,
        "datagrams_out": r.datagrams_out,
        "bytes_read": r.bytes_out,
        "dropped": r.dropped,
        "termination_state": r.termination,
        "reason": r.reason,
        "feconn": r.fe_sessions,
        "beconn": r.be_sessions,
        "srv_conn": r.srv_sessions,
    }
    return _dumps(fields)


#: The TCP connection formatters by C{log-format} value.
TCP_FORMATS: Dict[str, Callable[[ConnectionRecord], str]] = {
    "tcplog": format_tcplog,
    "json": json_tcplog,
}

#: The UDP session formatters by C{log-format} value.
UDP_FORMATS: Dict[str, Callable[[UdpRecord], str]] = {
    "tcplog": format_udplog,
    "json": json_udplog,
}


def format_connection(style: str, record: ConnectionRecord) -> str:
    """
    Format a TCP connection's record in the layout C{style} names.
    """
    return TCP_FORMATS[style](record)


def format_udp_session(style: str, record: UdpRecord) -> str:
    """
    Format a UDP session's record in the layout C{style} names.
    """
    return UDP_FORMATS[style](record)
