"""
Equivalent configurations for every contestant: two backends, round robin,
the same timeouts and connection limit, all on 127.0.0.1; either no
per-connection logging, or (C{logging=True}) one line per connection as
each logs by default: HAProxy's C{option tcplog} on its standard output,
nginx's stream C{access_log} to a file, l4lb's tcplog line on its standard
output (C{log = stdout}, as C{etc/lb.ini} has it).  The benchmark sends
the standard output of each proxy to a file.  Pure functions from ports to text, so they can be checked
without starting anything.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import attr

CONNECT_TIMEOUT = "5s"
IDLE_TIMEOUT = "50s"
UDP_SESSION_TIMEOUT = "10s"

HOST = "127.0.0.1"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Backends:
    """
    The ports of the servers every proxy balances over.

    @ivar http: The two ports of the HTTP server (new connections,
        keep-alive requests, idle connections).
    @ivar sink: The two ports of the byte sink (bulk throughput).
    @ivar udp: The two ports of the UDP echo server.
    """

    http: Tuple[int, int]
    sink: Tuple[int, int]
    udp: Tuple[int, int]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Frontends:
    """
    The ports a proxy listens on; C{udp} is C{None} for a proxy without
    UDP.
    """

    http: int
    sink: int
    udp: Optional[int] = None


def _pairs(frontends: Frontends, backends: Backends) -> List[Tuple[str, int, Tuple[int, int]]]:
    return [("http", frontends.http, backends.http), ("sink", frontends.sink, backends.sink)]


def haproxy_config(frontends: Frontends, backends: Backends, maxconn: int, logging: bool = False) -> str:
    """
    HAProxy in C{mode tcp} with one thread; with C{logging}, a tcplog line
    per connection on its standard output.
    """
    lines = [
        "global",
        "    nbthread 1",
        f"    maxconn {maxconn}",
    ]
    if logging:
        lines.append("    log stdout format raw local0")
    lines += [
        "",
        "defaults",
        "    mode tcp",
    ]
    if logging:
        lines += ["    log global", "    option tcplog"]
    lines += [
        f"    timeout connect {CONNECT_TIMEOUT}",
        f"    timeout client {IDLE_TIMEOUT}",
        f"    timeout server {IDLE_TIMEOUT}",
        "",
    ]
    for name, port, (s1, s2) in _pairs(frontends, backends):
        lines += [
            f"frontend {name}",
            f"    bind {HOST}:{port}",
            f"    maxconn {maxconn}",
            f"    default_backend {name}_servers",
            "",
            f"backend {name}_servers",
            "    balance roundrobin",
            f"    server s1 {HOST}:{s1}",
            f"    server s2 {HOST}:{s2}",
            "",
        ]
    return "\n".join(lines)


def _nginx_main(workdir: str, name: str, maxconn: int, module: Optional[str]) -> List[str]:
    lines = [f"load_module {module};"] if module else []
    return lines + [
        "worker_processes 1;",
        f"worker_rlimit_nofile {2 * maxconn + 64};",
        "daemon off;",
        "master_process on;",
        f"pid {workdir}/{name}.pid;",
        f"error_log {workdir}/{name}.error.log warn;",
        "events {",
        f"    worker_connections {2 * maxconn + 32};",
        "}",
    ]


def nginx_stream_config(
    frontends: Frontends,
    backends: Backends,
    maxconn: int,
    workdir: str,
    module: Optional[str],
    half_close: bool = True,
    logging: bool = False,
) -> str:
    """
    nginx's stream module with one worker process.

    @param module: The path of C{ngx_stream_module.so} to load, or C{None}
        when the module is built in.
    @param half_close: Relay a half-close as HAProxy and l4lb do
        (C{proxy_half_close}, nginx 1.21.4 and later); without it nginx ends
        the session when the client shuts its write half.
    @param logging: Write a line per session to C{nginx-access.log}, with
        about the fields of HAProxy's tcplog line (nginx's stream module
        logs nothing unless told).
    """
    lines = _nginx_main(workdir, "nginx-proxy", maxconn, module)
    lines.append("stream {")
    if logging:
        lines += [
            "    log_format tcplog '$remote_addr:$remote_port [$time_local] $server_port"
            " $upstream_addr $upstream_connect_time/$session_time $bytes_sent $bytes_received $status';",
            f"    access_log {workdir}/nginx-access.log tcplog;",
        ]
    for name, port, (s1, s2) in _pairs(frontends, backends):
        lines += [
            f"    upstream {name}_servers {{",
            f"        server {HOST}:{s1};",
            f"        server {HOST}:{s2};",
            "    }",
            "    server {",
            f"        listen {HOST}:{port} backlog=4096;",
            f"        proxy_pass {name}_servers;",
            f"        proxy_connect_timeout {CONNECT_TIMEOUT};",
            f"        proxy_timeout {IDLE_TIMEOUT};",
        ]
        if half_close:
            lines.append("        proxy_half_close on;")
        lines.append("    }")
    if frontends.udp is not None:
        u1, u2 = backends.udp
        lines += [
            "    upstream udp_servers {",
            f"        server {HOST}:{u1};",
            f"        server {HOST}:{u2};",
            "    }",
            "    server {",
            f"        listen {HOST}:{frontends.udp} udp;",
            "        proxy_pass udp_servers;",
            f"        proxy_timeout {UDP_SESSION_TIMEOUT};",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def nginx_backend_config(ports: Sequence[int], docroot: str, maxconn: int, workdir: str) -> str:
    """
    The HTTP backend: nginx serving a small file on two ports, keeping
    idle and keep-alive connections open for the whole run.
    """
    lines = _nginx_main(workdir, "nginx-backend", maxconn, None)
    lines += [
        "http {",
        "    access_log off;",
        "    keepalive_requests 100000000;",
        "    keepalive_timeout 300s;",
        "    client_header_timeout 300s;",
        "    server {",
    ]
    lines += [f"        listen {HOST}:{port} backlog=4096;" for port in ports]
    lines += [
        f"        root {docroot};",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def l4lb_config(
    frontends: Frontends, backends: Backends, maxconn: int, relay: str = "lean", logging: bool = False
) -> str:
    """
    l4lb's lb.ini: C{log = none}, or with C{logging} its documented
    C{log = stdout} (a tcplog line per connection).

    @param relay: Its C{tune.relay}.
    """
    lines = [
        "[global]",
        f"maxconn = {maxconn}",
        "log = stdout" if logging else "log = none",
        f"tune.relay = {relay}",
        "",
        "[defaults]",
        "mode = tcp",
        f"timeout connect = {CONNECT_TIMEOUT}",
        f"timeout client = {IDLE_TIMEOUT}",
        f"timeout server = {IDLE_TIMEOUT}",
        "",
    ]
    for name, port, (s1, s2) in _pairs(frontends, backends):
        lines += [
            f"[frontend {name}]",
            f"bind = {HOST}:{port}",
            f"default_backend = {name}_servers",
            "",
            f"[backend {name}_servers]",
            "balance = roundrobin",
            f"server s1 = {HOST}:{s1}",
            f"server s2 = {HOST}:{s2}",
            "",
        ]
    if frontends.udp is not None:
        u1, u2 = backends.udp
        lines += [
            "[frontend udp]",
            "mode = udp",
            f"bind = {HOST}:{frontends.udp}",
            f"timeout udp = {UDP_SESSION_TIMEOUT}",
            "default_backend = udp_servers",
            "",
            "[backend udp_servers]",
            "mode = udp",
            "balance = roundrobin",
            f"server s1 = {HOST}:{u1}",
            f"server s2 = {HOST}:{u2}",
            "",
        ]
    return "\n".join(lines)
