"""
The runtime state a handover sends to the process that takes over, as
JSON.

It is the state a reload keeps (L{l4lb.runtime_state}): each server's
L{ServerState}, the servers added at run time, and each frontend's
C{maxconn} set at run time, plus the process's generation.  The new
process builds its runtime from its own file through the same
constructors as a start and a reload, then applies this state by name
(L{CarriedState}), as a reload does.

Counters are carried where they are plain numbers (a server's totals,
bytes, failed checks and connects...); rate counters and the frontends'
and backends' counters start again from zero.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

import attr

from l4lb.runtime_servers import AddedServer
from l4lb.runtime_state import ServerState, apply_server, capture_servers, check_definition

#: The version of the state's layout; a process refuses another one.
LAYOUT = 1

#: What L{ServerState.checks} holds when the checks were made differently.
CHANGED = ("changed",)


def fingerprint(definition: Any) -> str:
    """
    A text that is equal in two processes exactly when two check
    definitions (L{check_definition}) are.
    """
    return json.dumps(definition, default=repr, sort_keys=True)


@attr.s(auto_attribs=True)
class CarriedState:
    """
    The runtime state one process hands to the next.

    @ivar generation: The new process's generation (the old one's + 1).
    @ivar servers: Each server's state by C{(backend, server)}; its
        C{checks} is the L{fingerprint} of its check definition until
        L{resolve_checks} compares it with the new process's.
    @ivar added: The servers added at run time by C{(backend, server)}, in
        the order they were added.
    @ivar frontend_maxconn: A frontend's C{maxconn} set at run time, by
        name, where it differs from its file's.
    """

    generation: int = 1
    servers: Dict[Tuple[str, str], ServerState] = attr.Factory(dict)
    added: Dict[Tuple[str, str], AddedServer] = attr.Factory(dict)
    frontend_maxconn: Dict[str, int] = attr.Factory(dict)

    def resolve_checks(self, backend_spec: Any, server_spec: Any) -> Optional[ServerState]:
        """
        The state of the server C{server_spec} of C{backend_spec}, with its
        C{checks} made the new process's definition when they are made the
        same way, so that L{l4lb.runtime_state.apply_server} keeps its
        health; C{None} when the old process had no such server.
        """
        state = self.servers.get((backend_spec.name, server_spec.name))
        if state is None:
            return None
        if isinstance(state.checks, str):
            definition = check_definition(backend_spec, server_spec)
            state.checks = definition if state.checks == fingerprint(definition) else CHANGED
        return state


def capture(service: Any, generation: int) -> CarriedState:
    """
    The runtime state of a running service, for the process of
    C{generation} that takes over from it.
    """
    servers = capture_servers(service)
    for state in servers.values():
        state.checks = fingerprint(state.checks)
        state.counters = {
            name: value
            for name, value in state.counters.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
    maxconn = {
        name: frontend.gate.maxconn
        for name, frontend in service.frontends.items()
        if frontend.gate.maxconn != frontend.spec.maxconn
    }
    return CarriedState(generation, servers, dict(service.added_servers), maxconn)


def dump(state: CarriedState) -> Dict[str, Any]:
    """
    C{state} as plain JSON values.
    """
    return {
        "layout": LAYOUT,
        "generation": state.generation,
        "servers": [attr.asdict(s, recurse=False) for s in state.servers.values()],
        "added": [attr.asdict(a) for a in state.added.values()],
        "frontend_maxconn": state.frontend_maxconn,
    }


def load(data: Dict[str, Any]) -> CarriedState:
    """
    The L{CarriedState} that L{dump} wrote.

    @raise ValueError: When C{data} is not such a state.
    """
    if not isinstance(data, dict) or data.get("layout") != LAYOUT:
        raise ValueError(f"unknown runtime state layout {data.get('layout')!r}")
    try:
        servers: List[ServerState] = [ServerState(**s) for s in data["servers"]]
        added = [AddedServer(**a) for a in data["added"]]
        return CarriedState(
            int(data["generation"]),
            {(s.be_name, s.srv_name): s for s in servers},
            {(a.backend, a.name): a for a in added},
            {str(k): int(v) for k, v in data["frontend_maxconn"].items()},
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"bad runtime state: {e}") from e


def apply_carried(service: Any, carried: CarriedState) -> List[Tuple[str, str]]:
    """
    Give the servers of a freshly built C{service} the state the process it
    takes over from had, by name, as a reload does (before the checks
    start, so that a server DOWN stays DOWN).

    @return: The C{(backend, server)} of the servers that had none (new in
        the file), which a server-state file may still describe.
    """
    healths = {id(h.server): h for h in service.monitor.servers}
    fresh: List[Tuple[str, str]] = []
    for backend in service.backends.values():
        for server in backend.servers:
            key = (backend.name, server.name)
            state = carried.resolve_checks(backend.spec, server.spec)
            if state is None:
                fresh.append(key)
                continue
            apply_server(state, server, healths.get(id(server)), key in carried.added)
    return fresh
