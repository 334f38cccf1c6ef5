"""
What a running service does, setting by setting, read from its runtime
objects (not from its configuration).

L{describe} is how a reload is shown to equal a restart: a service
reloaded into a configuration and a service started from it must describe
the same.  It lists what each runtime object would act on for the next
connection or datagram: limits, rate limiters, the relay path, timeouts,
UDP table capacity and idle timeout, reply and request counts, retries,
the balancer and its inputs, the checks and their timing, log sinks and
formats, stick tables, the listening binds.  Counters and what changes by
itself over time (connections, health) are left out.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable

import attr

from l4lb.runtime_state import plain

__all__ = ["describe"]

#: Attributes that hold traffic or time, not settings.
_NOT_SETTINGS = frozenset(
    {
        "current",
        "total",
        "untracked",
        "evicted",
        "denied",
        "bytes_in",
        "bytes_out",
        "max_current",
        "retries_done",
    }
)

_PLAIN = (type(None), bool, int, float, str, bytes)


def _settings(obj: Any, depth: int = 2) -> Any:
    """
    The settings an object holds: its public attributes of plain types
    (and, C{depth} levels down, of objects it holds), as sorted pairs.
    Configuration objects are given as their plain tuples.
    """
    if isinstance(obj, _PLAIN):
        return obj
    if attr.has(type(obj)):
        return plain(obj)
    if isinstance(obj, (tuple, list)):
        return tuple(_settings(item, depth) for item in obj)
    if depth <= 0 or callable(obj) and not hasattr(obj, "__dict__"):
        return type(obj).__name__
    names: Iterable[str] = getattr(obj, "__dict__", {}).keys()
    slots = getattr(type(obj), "__slots__", ())
    pairs = []
    for name in sorted(set(names) | set(slots)):
        if name.startswith("_") or name in _NOT_SETTINGS or not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        if isinstance(value, (dict, set)) or callable(value) and not attr.has(type(value)):
            continue
        pairs.append((name, _settings(value, depth - 1)))
    return (type(obj).__name__, tuple(pairs))


def describe(service: Any) -> Dict[str, Any]:
    """
    Every effective setting of the running C{service}
    (a L{l4lb.service.BalancerService}), by a path such as
    C{"frontend fe: rate-limit sessions"}.
    """
    from l4lb.tcp import lean

    out: Dict[str, Any] = {}
    settings = service.config.global_settings
    out["global: maxconn"] = service.limiter.maxconn
    out["global: maxpipes"] = lean.PIPES.limit
    out["global: spread-checks"] = service.monitor.spread_checks
    out["global: hard-stop-after"] = settings.hard_stop_after
    out["global: grace"] = settings.grace
    out["global: log sink"] = type(service.sink).__name__
    out["global: workers"] = service.workers is not None
    for name, state in service.frontends.items():
        _tcp_frontend(out, service, f"frontend {name}", state)
    for name, udp in service.udp_frontends.items():
        _udp_frontend(out, service, f"frontend {name}", udp)
    for name, backend in service.backends.items():
        _backend(out, f"backend {name}", backend)
    for name, watch in service.etcd.watches.items():
        # What the running watch asks, not the file: a reload must replace it.
        out[f"backend {name}: servers-from"] = (watch.endpoints, watch.prefix)
    for health in service.monitor.servers:
        _checks(out, f"checks {health.backend.name}/{health.server.name}", health, service)
    return out


def _sink(service: Any, sink: Any) -> str:
    if sink is None:
        return "none"
    return "the service's" if sink is service.sink else type(sink).__name__


def _tcp_frontend(out: Dict[str, Any], service: Any, key: str, state: Any) -> None:
    gate = state.gate
    spec = state.spec
    out[f"{key}: spec"] = plain(spec)
    out[f"{key}: backend"] = _backend_ref(service, state.backend)
    out[f"{key}: backend settings"] = plain(state.backend_spec)
    out[f"{key}: maxconn"] = gate.maxconn
    out[f"{key}: in the process limit"] = gate in getattr(service.limiter, "_gates", [gate])
    rate = gate.rate
    out[f"{key}: rate-limit sessions"] = None if rate is None else rate.limit
    out[f"{key}: relay"] = "lean" if state.lean else "classic"
    out[f"{key}: timeouts"] = plain(spec.timeouts)
    out[f"{key}: inspect-delay"] = state.inspect_delay
    out[f"{key}: stages"] = _settings(state.stages)
    out[f"{key}: log"] = (_sink(service, state.sink), spec.log_format, spec.dontlognull)
    ports = service.ports.get(state.name, [])
    binds = []
    for port in ports:
        factory = service.port_factories.get(port)
        binds.append(
            (
                factory is not None and factory.frontend is state,
                port in getattr(gate, "_ports", [port]),
                _settings(getattr(factory, "first", ())),
            )
        )
    out[f"{key}: binds"] = (plain(spec.binds), tuple(binds))


def _udp_frontend(out: Dict[str, Any], service: Any, key: str, udp: Any) -> None:
    spec = udp.spec
    out[f"{key}: spec"] = plain(spec)
    out[f"{key}: backend"] = _backend_ref(service, udp.backend)
    out[f"{key}: hears of its servers"] = udp._server_changed in udp.backend.listeners
    out[f"{key}: maxsessions"] = udp.table.capacity
    out[f"{key}: timeout udp"] = udp.table.idle_timeout
    out[f"{key}: udp-responses"] = udp.max_responses
    out[f"{key}: udp-requests"] = udp.max_requests
    out[f"{key}: retries"] = udp._retries
    out[f"{key}: log"] = (_sink(service, udp.sink), spec.log_format)
    out[f"{key}: binds"] = (
        plain(spec.binds),
        tuple(listener.frontend is udp for listener in udp.listeners),
    )


def _backend_ref(service: Any, backend: Any) -> Any:
    """
    The backend a frontend sends to, and whether it is the running one of
    that name (not one a reload replaced).
    """
    return (backend.name, service.backends.get(backend.name) is backend)


def _backend(out: Dict[str, Any], key: str, backend: Any) -> None:
    out[f"{key}: spec"] = plain(backend.spec)
    out[f"{key}: balancer"] = _settings(backend.balancer, depth=1)
    out[f"{key}: queue limit"] = backend.queue.limit()
    for server in backend.servers:
        out[f"{key}/{server.name}"] = (
            plain(server.spec),
            server.backend is backend,
            server.address,
            server.port,
            server.weight,
            server.user_weight,
            server.maxconn,
            server.user_maxconn,
            server.admin,
            server.preamble is not None,
            type(server.tls).__name__,
        )


def _checks(out: Dict[str, Any], key: str, health: Any, service: Any) -> None:
    backend = service.backends.get(health.backend.name)
    out[f"{key}: of the running server"] = (
        backend is health.backend and health.server in backend.servers
    )
    out[f"{key}: check"] = _settings(health.check, depth=1)
    out[f"{key}: agent"] = _settings(health.agent, depth=1)
    state = health.state
    out[f"{key}: rise/fall"] = None if state is None else (state.rise, state.fall)
    out[f"{key}: spread"] = health.spread
    out[f"{key}: inter"] = (
        health.base_check_interval() if health.check_loop is not None else None,
        health.base_agent_interval() if health.agent_loop is not None else None,
    )
    out[f"{key}: log-health-checks"] = health.log_checks
    observer = health.server.observer
    out[f"{key}: observe"] = _settings(observer, depth=1)
