"""
Statistics read from a running L{l4lb.service.BalancerService}: one row
per frontend, backend and server, keyed by HAProxy's C{show stat} column
names, every value already a string.  Columns l4lb does not fill are
absent (rendered empty).  Rows of C{mode udp} proxies also carry their
UDP counters as C{udp_*} keys (C{udp_datagrams_in}, ...), which the CSV
leaves out and the JSON and Prometheus outputs include.  Server rows also
carry C{admin_cause} (who set a C{DRAIN} or C{MAINT} state; see
L{l4lb.pool.Server.admin_cause}) and C{unresolved} (C{"1"} while the
server's host name has no address), which only the HTML page shows.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional

from l4lb.admin.fields import TYPE_BACKEND, TYPE_FRONTEND, TYPE_SERVER
from l4lb.interfaces import IBalancerRuntime
from l4lb.udp.counters import live

Row = Dict[str, str]


def _live_bytes(sessions: Iterable[Any]) -> "tuple[int, int]":
    bytes_in = bytes_out = 0
    for session in sessions:
        bytes_in += session.bytes_in
        bytes_out += session.bytes_out
    return bytes_in, bytes_out


def _ms(seconds: Optional[float]) -> str:
    return "" if seconds is None else str(int(round(seconds * 1000)))


def _rates(counted: Any, now: Optional[float]) -> Row:
    """
    The C{rate}, C{rate_max} and C{smax} columns of anything that counts
    its new sessions (C{session_rate}) and its most open ones
    (C{max_current}).
    """
    rate = counted.session_rate
    return {
        "rate": str(rate.rate(now)) if now is not None else "",
        "rate_max": str(rate.max),
        "smax": str(counted.max_current),
    }


def frontend_row(
    frontend: Any,
    iid: int,
    pid: int,
    backends: Optional[Dict[str, Any]] = None,
    now: Optional[float] = None,
) -> Row:
    """
    The row of a TCP frontend (C{svname} C{FRONTEND}, C{type} 0).

    @param backends: Every backend by name, to count the open sessions its
        C{use_backend} rules sent to other backends than its default one.
    @param now: The clock's time, for the session rate (left empty
        without it).
    """
    gate = frontend.gate
    used = [frontend.backend]
    for route in frontend.spec.sni_routes:
        other = (backends or {}).get(route.backend)
        if other is not None and other not in used:
            used.append(other)
    live = [
        s
        for backend in used
        for srv in backend.servers
        for s in srv.sessions
        if s.frontend is frontend
    ]
    live_in, live_out = _live_bytes(live)
    limit = gate.maxconn or gate.limiter.maxconn
    row = {
        "pxname": frontend.name,
        "svname": "FRONTEND",
        "scur": str(gate.current),
        "slim": str(limit) if limit else "",
        "stot": str(frontend.total),
        "bin": str(frontend.bytes_in + live_in),
        "bout": str(frontend.bytes_out + live_out),
        "status": "OPEN",
        "pid": str(pid),
        "iid": str(iid),
        "sid": "0",
        "type": str(TYPE_FRONTEND),
        "mode": "tcp",
        "conn_tot": str(frontend.total),
        "dcon": str(frontend.denied),
        "rate_lim": str(frontend.spec.rate_limit_sessions) if frontend.spec.rate_limit_sessions else "",
    }
    row.update(_rates(frontend, now))
    return row


def _udp_columns(counters: Any, frontend: bool) -> Row:
    """
    The columns of a C{mode udp} row taken from its L{UdpCounters}:
    sessions as HAProxy's sessions, datagrams from clients as requests
    (C{req_tot}), datagrams dropped as request errors on a frontend
    (C{ereq}) and response errors on a backend or server (C{eresp}); and
    every counter again under its own name (C{udp_*}) for the JSON and
    Prometheus outputs.
    """
    row = {
        "stot": str(counters.sessions),
        "bin": str(counters.bytes_in),
        "bout": str(counters.bytes_out),
        "req_tot": str(counters.datagrams_in),
        ("ereq" if frontend else "eresp"): str(counters.dropped),
    }
    for name, value in counters.as_dict().items():
        row["udp_" + name] = str(value)
    return row


def udp_frontend_row(frontend: Any, iid: int, pid: int, now: Optional[float] = None) -> Row:
    """
    The row of a C{mode udp} frontend (C{svname} C{FRONTEND}, C{type} 0):
    its sessions, datagrams and bytes, those of running sessions included.
    """
    row = {
        "pxname": frontend.name,
        "svname": "FRONTEND",
        "scur": str(frontend.current),
        "slim": str(frontend.table.capacity),
        "status": "OPEN",
        "pid": str(pid),
        "iid": str(iid),
        "sid": "0",
        "type": str(TYPE_FRONTEND),
        "mode": "udp",
    }
    row.update(_udp_columns(frontend.snapshot(), True))
    row["conn_tot"] = row["stot"]
    row.update(_rates(frontend, now))
    return row


def server_row(backend: Any, server: Any, iid: int, sid: int, pid: int, now: float) -> Row:
    """
    The row of a server (C{type} 2).
    """
    live_in, live_out = _live_bytes(server.sessions)
    since = max(0, int(now - server.last_change)) if server.last_change else 0
    down = server.down_time + (
        now - server.last_change if not server.up and server.last_change else 0.0
    )
    spec = server.spec
    checked = bool(spec.check)
    address = server.address if server.address is not None else spec.host
    host = f"[{address}]" if ":" in address else address
    row = {
        "pxname": backend.name,
        "svname": server.name,
        "qcur": "0",
        "scur": str(server.current),
        "slim": str(server.maxconn) if server.maxconn else "",
        "stot": str(server.total),
        "bin": str(server.bytes_in + live_in),
        "bout": str(server.bytes_out + live_out),
        "econ": str(server.failed_connects),
        "eresp": str(server.failed_responses),
        "wretr": str(server.retries),
        "wredis": str(server.redispatches),
        "status": server.status,
        "weight": str(server.weight),
        "act": "0" if spec.backup else "1",
        "bck": "1" if spec.backup else "0",
        "chkfail": str(server.failed_checks) if checked else "",
        "chkdown": str(server.down_transitions) if checked else "",
        "lastchg": str(since),
        "downtime": str(int(down)) if checked else "",
        "pid": str(pid),
        "iid": str(iid),
        "sid": str(sid),
        # Below 100 only while the server warms up (slowstart).
        "throttle": str(server.throttle) if server.throttle < 100 else "",
        "lbtot": str(server.total),
        "type": str(TYPE_SERVER),
        "check_status": server.check_status,
        "check_duration": _ms(server.check_duration),
        "hanafail": str(server.failed_hana),
        "agent_status": server.agent_status,
        "agent_duration": _ms(server.agent_duration),
        "check_desc": server.check_desc,
        "agent_desc": server.agent_desc,
        "check_rise": str(spec.rise) if checked else "",
        "check_fall": str(spec.fall) if checked else "",
        "addr": f"{host}:{server.port}",
        "mode": backend.spec.mode,
        "uweight": str(server.user_weight),
        "admin_cause": server.admin_cause if server.admin != "ready" else "",
        "unresolved": "1" if server.address is None else "",
    }
    row.update(_rates(server, now))
    if backend.spec.mode == "udp":
        row.update(_udp_columns(live(server.udp, server.sessions), False))
    return row


def backend_row(backend: Any, iid: int, pid: int, now: float) -> Row:
    """
    The row of a backend (C{svname} C{BACKEND}, C{type} 1).
    """
    servers = backend.servers
    bytes_in = bytes_out = 0
    for server in servers:
        live_in, live_out = _live_bytes(server.sessions)
        bytes_in += server.bytes_in + live_in
        bytes_out += server.bytes_out + live_out
    usable = [s for s in servers if s.eligible]
    last = max((s.last_change for s in servers), default=0.0)
    row = {
        "pxname": backend.name,
        "svname": "BACKEND",
        "qcur": str(backend.queue.current),
        "qmax": str(backend.queue.max),
        "scur": str(backend.current),
        "stot": str(backend.total),
        "bin": str(bytes_in),
        "bout": str(bytes_out),
        "econ": str(sum(s.failed_connects for s in servers)),
        "eresp": str(backend.failed_responses),
        "wretr": str(backend.retries),
        "wredis": str(backend.redispatches),
        "status": "UP" if usable else "DOWN",
        "weight": str(sum(s.weight for s in usable)),
        "act": str(sum(1 for s in usable if not s.spec.backup)),
        "bck": str(sum(1 for s in usable if s.spec.backup)),
        "lastchg": str(max(0, int(now - last))) if last else "0",
        "chkdown": str(backend.downtime.spells),
        "downtime": str(int(backend.downtime.seconds(now))),
        "pid": str(pid),
        "iid": str(iid),
        "sid": "0",
        "lbtot": str(backend.total),
        "type": str(TYPE_BACKEND),
        "mode": backend.spec.mode,
        "algo": backend.spec.balance,
    }
    row.update(_rates(backend, now))
    if backend.spec.mode == "udp":
        udp = live(backend.udp, [s for server in servers for s in server.sessions])
        row.update(_udp_columns(udp, False))
    return row


def stat_rows(service: IBalancerRuntime, now: float, pid: Optional[int] = None) -> List[Row]:
    """
    Every row, as C{show stat} lists them: each proxy's frontend, then its
    servers, then its backend, proxies in configuration order.

    @param service: A L{l4lb.service.BalancerService} (its C{config},
        C{frontends} and C{backends}).
    @param now: The reactor's current time.
    @param pid: The process id to show; this process's by default.
    """
    pid = os.getpid() if pid is None else pid
    names: List[str] = []
    for spec in service.config.frontends:
        names.append(spec.name)
    for spec in service.config.backends:
        if spec.name not in names:
            names.append(spec.name)
    rows: List[Row] = []
    for iid, name in enumerate(names, start=1):
        frontend = service.frontends.get(name)
        if frontend is not None:
            rows.append(frontend_row(frontend, iid, pid, service.backends, now))
        udp_frontend = service.udp_frontends.get(name)
        if udp_frontend is not None:
            rows.append(udp_frontend_row(udp_frontend, iid, pid, now))
        backend = service.backends.get(name)
        if backend is not None:
            for sid, server in enumerate(backend.servers, start=1):
                rows.append(server_row(backend, server, iid, sid, pid, now))
            rows.append(backend_row(backend, iid, pid, now))
    workers = service.workers
    if workers is not None:
        # nbproc: the worker processes' counters (l4lb.workers.counters).
        workers.merge(rows)
    return rows
