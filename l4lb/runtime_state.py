"""
The runtime state a reload carries from one runtime to the next.

A reload builds a fresh runtime from the new configuration, through the
same constructors as a start (L{l4lb.reload}); what the file does not say
and the running process learnt is named here, once, so that it can be
captured from a live runtime and applied to a freshly built one.

L{ServerState} holds the columns of HAProxy's C{show servers state}
(format version 1, as l4lb's runtime API prints them) and what l4lb needs
beyond them: the health machine's position, the agent's verdict, the
counters.  Its fields are plain values (the counters of rates and of UDP
traffic are small counter objects), so that it can be written to a file or
sent to another process.

The rule for a setting that both the file and the runtime can set
(weight, C{disabled} against C{set server ... state}, C{maxconn}): when the
file's value changed, the file wins; when it did not, the runtime value is
kept.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Tuple

import attr

from l4lb.pool import Server

#: Counters of a L{Server} carried by a reload (missing ones are skipped).
SERVER_COUNTERS = (
    "total",
    "failed_connects",
    "failed_checks",
    "down_transitions",
    "failed_hana",
    "down_time",
    "udp",
    "bytes_in",
    "bytes_out",
    "session_rate",
    "max_current",
    "retries",
    "redispatches",
    "failed_responses",
)

#: Counters of a L{l4lb.pool.BackendState} carried by a reload.
BACKEND_COUNTERS = (
    "current",
    "total",
    "downtime",
    "udp",
    "session_rate",
    "max_current",
    "retries",
    "redispatches",
    "failed_responses",
)

#: Counters of a TCP L{l4lb.tcp.frontend.FrontendState} carried by a reload.
FRONTEND_COUNTERS = ("total", "bytes_in", "bytes_out", "denied", "session_rate", "max_current")

#: Counters of a L{l4lb.udp.frontend.UdpFrontend} carried by a reload.
UDP_FRONTEND_COUNTERS = ("counters", "session_rate", "max_current")

#: Server settings that do not change its health checks.
NOT_CHECK = frozenset({"weight", "maxconn", "maxqueue", "disabled", "backup", "line", "options"})

#: Backend settings that change the health checks of all its servers.
BACKEND_CHECK = ("tcp_check", "tcp_check_rules", "udp_check", "log_health_checks", "mode")

#: C{srv_admin_state} of C{show servers state}.
ADMIN_CODES = {"ready": 0, "maint": 1, "drain": 8}


def plain(value: Any, skip: frozenset = frozenset({"line"})) -> Any:
    """
    C{value} (a configuration object) as nested tuples, without the fields
    in C{skip} (line numbers by default), so that two configurations
    compare equal when they differ only where things are written.
    """
    if attr.has(type(value)):
        return tuple(
            (f.name, plain(getattr(value, f.name)))
            for f in attr.fields(type(value))
            if f.name not in skip
        )
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


def check_definition(backend_spec: Any, server_spec: Any) -> Any:
    """
    What a server's checks are made of: when it differs between two
    runtimes, the checks restart from C{init-state}.
    """
    timeouts = backend_spec.timeouts
    return (
        plain(server_spec, NOT_CHECK),
        tuple(plain(getattr(backend_spec, name)) for name in BACKEND_CHECK),
        timeouts.check,
        timeouts.connect,
    )


@attr.s(auto_attribs=True)
class ServerState:
    """
    One server's runtime state.

    The first fields are the columns of C{show servers state} (format 1);
    C{srv_time_since_last_change} is kept as L{last_change} (a time) so
    that it stays true after the state is applied.

    @ivar be_name: Its backend's name.
    @ivar srv_name: Its name.
    @ivar srv_addr: The address it was given (C{None}: not resolved).
    @ivar srv_op_state: 2 when UP, 0 when DOWN.
    @ivar srv_admin_state: 0 ready, 1 maint, 8 drain.
    @ivar srv_uweight: The weight asked for (file, API or agent).
    @ivar srv_iweight: The weight the file gave it.
    @ivar srv_check_status: The last check's status code (C{""}: none).
    @ivar srv_port: Its port.
    @ivar last_change: When its health last changed (reactor seconds).
    @ivar admin_cause: Who set the administrative state.
    @ivar user_maxconn: The C{maxconn} asked for (file or agent).
    @ivar imaxconn: The C{maxconn} the file gave it.
    @ivar disabled: Whether the file said C{disabled}.
    @ivar health_text: The health as the stats show it.
    @ivar health: The health machine's position (L{l4lb.health.state}),
        or C{None} without a health check.
    @ivar agent_up: The agent's verdict.
    @ivar check_enabled: Whether its health check runs (C{disable health}
        stops it until C{enable health}; HAProxy's C{srv_check_state}
        keeps that over a reload too).
    @ivar checks: What its checks were made of (L{check_definition}).
    @ivar check_details: The last check's and agent's details, by field.
    @ivar counters: Its counters, by attribute name.
    """

    be_name: str
    srv_name: str
    srv_addr: Optional[str]
    srv_op_state: int
    srv_admin_state: int
    srv_uweight: int
    srv_iweight: int
    srv_check_status: str
    srv_port: int
    last_change: float
    admin_cause: str
    user_maxconn: int
    imaxconn: int
    disabled: bool
    health_text: str
    health: Optional[int]
    agent_up: bool
    checks: Any
    check_details: Dict[str, Any] = attr.Factory(dict)
    counters: Dict[str, Any] = attr.Factory(dict)
    check_enabled: bool = True

    @property
    def admin(self) -> str:
        """
        The administrative state by name.
        """
        return {code: name for name, code in ADMIN_CODES.items()}[self.srv_admin_state]


def capture_server(server: Server, health: Any = None) -> ServerState:
    """
    The runtime state of a live C{server}, with its L{ServerHealth
    <l4lb.health.server.ServerHealth>} (or C{None} when it has no checks).
    """
    backend = server.backend
    assert backend is not None
    machine = getattr(health, "state", None)
    return ServerState(
        be_name=backend.name,
        srv_name=server.name,
        srv_addr=server.address,
        srv_op_state=2 if server.up else 0,
        srv_admin_state=ADMIN_CODES[server.admin],
        srv_uweight=server.user_weight,
        srv_iweight=server.spec.weight,
        srv_check_status=server.check_status,
        srv_port=server.port,
        last_change=server.last_change,
        admin_cause=getattr(server, "admin_cause", ""),
        user_maxconn=server.user_maxconn,
        imaxconn=server.spec.maxconn,
        disabled=server.spec.disabled,
        health_text=server.health_text,
        health=None if machine is None else machine.health,
        agent_up=getattr(health, "agent_up", True),
        check_enabled=getattr(health, "check_enabled", True),
        checks=check_definition(backend.spec, server.spec),
        check_details={
            name: getattr(server, name)
            for name in (
                "check_duration",
                "check_desc",
                "agent_status",
                "agent_duration",
                "agent_desc",
            )
        },
        counters={
            name: copy.copy(getattr(server, name))
            for name in SERVER_COUNTERS
            if hasattr(server, name)
        },
    )


def apply_server(state: ServerState, server: Server, health: Any = None, added: bool = False) -> None:
    """
    Give a freshly built C{server} (and its fresh L{ServerHealth
    <l4lb.health.server.ServerHealth>}, or C{None}) the runtime state it
    had: runtime settings where the file did not change them, the health
    and check history where its checks are still made the same way, and
    its counters.

    @param added: Whether C{server} was added at run time: it has no
        address in the file, so the one it had (C{set server ... addr})
        stays.
    """
    spec = server.spec
    backend = server.backend
    assert backend is not None
    for name, value in state.counters.items():
        if hasattr(server, name):
            setattr(server, name, value)
    if (state.srv_addr, state.srv_port) != (spec.address, spec.port) and (
        state.srv_port == spec.port and spec.address is None
    ):
        # The same host name, resolved before: no need to wait for it.
        server.address = state.srv_addr
    elif added and state.srv_addr is not None:
        balancer = backend.balancer
        eligible = server.eligible
        if eligible:
            balancer.server_down(server)
        server.address, server.port = state.srv_addr, state.srv_port
        if eligible:
            # Back under its address's hash key.
            balancer.server_up(server)
    if state.srv_iweight == spec.weight and state.srv_uweight != server.user_weight:
        server.set_weight(state.srv_uweight)
    if state.imaxconn == spec.maxconn and state.user_maxconn != server.user_maxconn:
        server.set_maxconn(state.user_maxconn)
    if state.disabled == spec.disabled and state.admin != server.admin:
        server.set_admin(state.admin, state.admin_cause or "runtime")
    if state.checks != check_definition(backend.spec, spec):
        return
    for name, value in state.check_details.items():
        setattr(server, name, value)
    server.check_status = state.srv_check_status
    server.last_change = state.last_change
    if health is not None:
        prepare_health(state, health)
    server.health_text = state.health_text
    up = state.srv_op_state == 2
    if server.up != up:
        server.set_health(up)


def prepare_health(state: ServerState, health: Any) -> None:
    """
    Give a fresh L{ServerHealth <l4lb.health.server.ServerHealth>} the
    health machine's position and the agent's verdict of C{state}, when
    its checks are made as before; call it before the checks begin, so
    that a server UP stays UP without passing through its C{init-state}
    (no warm-up, no log line), and one DOWN stays DOWN.
    """
    server = health.server
    if state.checks != check_definition(server.backend.spec, server.spec):
        return
    machine = health.state
    if machine is not None and state.health is not None:
        machine.health = state.health
    health.agent_up = state.agent_up
    # Stopped by the runtime API: its checks stay stopped (not started).
    health.check_enabled = state.check_enabled


def capture_servers(service: Any) -> Dict[Tuple[str, str], ServerState]:
    """
    The L{ServerState} of every server of a running service, by
    C{(backend, server)}.
    """
    healths = {id(h.server): h for h in service.monitor.servers}
    return {
        (backend.name, server.name): capture_server(server, healths.get(id(server)))
        for backend in service.backends.values()
        for server in backend.servers
    }


def carry_counters(old: Any, new: Any, names: Tuple[str, ...]) -> None:
    """
    Hand the counters C{names} of C{old} (a runtime object being replaced)
    to C{new}, its replacement; counter objects are handed over, not
    copied, so that what still counts into them is seen by both.
    """
    for name in names:
        if hasattr(old, name) and hasattr(new, name):
            setattr(new, name, getattr(old, name))
