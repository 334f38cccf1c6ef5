"""
Which checks a TCP server gets, from its configuration.

The monitor calls a builder like L{tcp_checks} for each server; the UDP
relay brings its own builder, and the monitor does not change.
"""

from __future__ import annotations

from typing import Any, List, Optional

from l4lb.health.agent import AgentCheck
from l4lb.health.tcp import TcpCheck
from l4lb.pool import BackendState, Server
from l4lb.proxyproto import check_header


def check_preamble(spec: Any) -> bytes:
    """
    The PROXY header a server's TCP check sends first, as in HAProxy: with
    C{check-send-proxy}, or when the server has C{send-proxy[-v2]} and the
    check goes to the server itself (no C{port} or C{addr}); the version is
    the server's (2 with C{send-proxy-v2}, else 1).
    """
    version = spec.send_proxy
    same_place = spec.check_port is None and spec.check_addr is None
    if spec.check_send_proxy or (version and same_place):
        return check_header(version or 1)
    return b""


def tcp_checks(backend: BackendState, server: Server, reactor: Any) -> List[Any]:
    """
    The L{l4lb.interfaces.IHealthCheck}s of a server of a TCP backend: a
    TCP check with C{check} (a C{tcp-check} sequence with C{option
    tcp-check} and rules, else a plain connect) on C{addr}/C{port} when
    given, and an agent check with C{agent-check}.
    """
    spec = server.spec
    backend_spec = backend.spec
    timeouts = backend_spec.timeouts
    checks: List[Any] = []
    if spec.check:

        def check_address() -> Optional[str]:
            return spec.check_addr or server.address

        rules = None
        if backend_spec.tcp_check and backend_spec.tcp_check_rules:
            rules = backend_spec.tcp_check_rules
        checks.append(
            TcpCheck(
                reactor,
                check_address,
                spec.check_port or server.port,
                spec.inter,
                rules,
                timeouts.check,
                timeouts.connect,
                check_preamble(spec),
                tls=_check_tls(spec),
            )
        )
    if spec.agent_check and spec.agent_port is not None:

        def agent_address() -> Optional[str]:
            return spec.agent_addr or server.address

        checks.append(
            AgentCheck(
                reactor,
                agent_address,
                spec.agent_port,
                spec.agent_inter or spec.inter,
                spec.agent_send,
                timeouts.check,
                timeouts.connect,
            )
        )
    return checks


def _check_tls(spec: Any) -> Any:
    """
    The TLS settings of a server's health checks (C{check-ssl}), or C{None}.
    """
    if not spec.check_ssl:
        return None
    # Only then: it imports pyOpenSSL.
    from l4lb.tcp.tls import client_creator

    return client_creator(spec)
