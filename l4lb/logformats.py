"""
The layouts of connection and UDP session logs (C{log-format}).

C{tcplog} is HAProxy's line (L{l4lb.logs.format_tcplog},
L{l4lb.udp.log.format_udplog}); C{json} writes the same fields as one JSON
object per line, named as HAProxy's documentation names the fields of its
C{tcplog} line.  A line is formatted once, when its session ends.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Callable, Dict

from l4lb.logs import ConnectionRecord, format_date, format_tcplog
from l4lb.udp.log import UdpRecord, format_udplog

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_quote = encode_basestring_ascii
_SNI_KEY = ',"sni":'


def _millis(seconds: Any) -> int:
    return -1 if seconds is None else round(seconds * 1000)


def json_tcplog(r: ConnectionRecord) -> str:
    """
    A TCP connection as one JSON object, its keys in the order of the
    C{tcplog} line; C{sni} is present where the line has its capture.

    Written out by hand rather than through a dictionary and the encoder,
    which costs four times as much per line; every string goes through
    the encoder's own escaping, so the text is what C{json.dumps} with
    compact separators writes (a test compares the two).
    """
    sni = r.sni
    queue_time = r.queue_time
    connect_time = r.connect_time
    return (
        f'{{"mode":"tcp","client_ip":{_quote(r.client_host)},"client_port":{r.client_port:d}'
        f',"accept_date":"{format_date(r.accepted)}","accept_ts":{round(r.accepted, 3)!r}'
        f',"frontend_name":{_quote(r.frontend)},"backend_name":{_quote(r.backend)}'
        f',"server_name":{_quote(r.server or "<NOSRV>")}'
        f',"Tw":{-1 if queue_time is None else round(queue_time * 1000)}'
        f',"Tc":{-1 if connect_time is None else round(connect_time * 1000)}'
        f',"Tt":{round(r.total_time * 1000)}'
        f',"bytes_read":{r.bytes_out:d},"termination_state":{_quote(r.termination)}'
        f',"actconn":{r.actconn:d},"feconn":{r.feconn:d},"beconn":{r.beconn:d}'
        f',"srv_conn":{r.srvconn:d},"retries":{r.retries:d}'
        f',"redispatched":{"true" if r.redispatched else "false"}'
        f',"srv_queue":{r.srv_queue:d},"backend_queue":{r.backend_queue:d}'
        f'{"" if sni is None else _SNI_KEY + _quote(sni)}}}'
    )


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
