"""
The changes a running balancer makes at the runtime API's, a reload's or a
worker's request, each policy written once: L{RuntimeControls} is the
method half of L{l4lb.interfaces.IBalancerRuntime}, mixed into
L{l4lb.service.BalancerService}.

The methods use only the interface's attributes (C{backends}, C{frontends},
C{retired}, C{monitor}, C{workers}...), so that a class with those
attributes gets the same behaviour by inheriting them.
"""

from __future__ import annotations

from typing import Any, List, Optional

from l4lb.health.actions import marking
from l4lb.health.server import shutdown_sessions
from l4lb.pool import Server
from l4lb.runtime_servers import AddedServer, add_server, remove_server, set_server_address

__all__ = ["RuntimeControls", "clear_counters"]


class RuntimeControls:
    """
    The methods of L{l4lb.interfaces.IBalancerRuntime}, over its
    attributes.
    """

    backends: Any
    frontends: Any
    retired: Any
    monitor: Any
    workers: Any
    config_path: Any
    added_servers: Any

    # -- servers and sessions ----------------------------------------------

    def find_server(self, backend: str, server: str) -> Server:
        """
        See L{l4lb.interfaces.IBalancerRuntime.find_server}.
        """
        state = self.backends.get(backend)
        if state is None:
            raise KeyError(backend)
        try:
            found: Server = state.server(server)
        except KeyError:
            raise KeyError(f"{backend}/{server}")
        return found

    def servers(self) -> List[Server]:
        """
        See L{l4lb.interfaces.IBalancerRuntime.servers}.
        """
        running = [server for backend in self.backends.values() for server in backend.servers]
        return running + [server for server in self.retired if server.sessions]

    def open_sessions(self) -> List[Any]:
        """
        See L{l4lb.interfaces.IBalancerRuntime.open_sessions}.
        """
        sessions: List[Any] = []
        for server in self.servers():
            sessions.extend(server.sessions)
        for backend in self.backends.values():
            sessions.extend(backend.queue.waiting())
        return sessions

    def kill_sessions(self, server: Server, cause: str) -> int:
        """
        See L{l4lb.interfaces.IBalancerRuntime.kill_sessions}.
        """
        killed = shutdown_sessions(server, cause)
        backend = server.backend
        if cause == "K" and self.workers is not None and backend is not None:
            # A change of state reaches the workers with the state itself
            # (they apply on-marked-down/up on their own): only an
            # operator's kill is sent.
            self.workers.shutdown_sessions(backend.name, server.name)
        return killed

    def set_server_admin(self, server: Server, admin: str, cause: str = "runtime") -> None:
        """
        See L{l4lb.interfaces.IBalancerRuntime.set_server_admin}.
        """
        with marking(server):
            server.set_admin(admin, cause)

    def add_server(self, backend: str, name: str, line: str, enabled: bool = False) -> Server:
        """
        See L{l4lb.interfaces.IBalancerRuntime.add_server}.
        """
        return add_server(self, AddedServer(backend, name, line, enabled))

    def remove_server(self, backend: str, name: str) -> None:
        """
        See L{l4lb.interfaces.IBalancerRuntime.remove_server}.
        """
        remove_server(self, backend, name)

    def set_server_address(
        self, server: Server, host: str, port: Optional[int] = None, cause: str = "runtime"
    ) -> str:
        """
        See L{l4lb.interfaces.IBalancerRuntime.set_server_address}.
        """
        return set_server_address(self, server, host, port, cause)

    def set_health_checks(self, server: Server, enabled: bool) -> None:
        """
        See L{l4lb.interfaces.IBalancerRuntime.set_health_checks}.
        """
        backend = server.backend
        if backend is None:
            raise KeyError(server.name)
        # The health settles the server itself, on-marked-down/up included.
        self.monitor.find(backend.name, server.name).set_check_enabled(enabled)

    def set_frontend_maxconn(self, frontend: str, maxconn: int) -> bool:
        """
        See L{l4lb.interfaces.IBalancerRuntime.set_frontend_maxconn}.
        """
        state = self.frontends.get(frontend)
        if state is None:
            return False
        state.gate.maxconn = maxconn
        state.gate.update()
        if self.workers is not None:
            self.workers.set_frontend_maxconn(frontend, maxconn)
        return True

    def clear_counters(self) -> None:
        """
        See L{l4lb.interfaces.IBalancerRuntime.clear_counters}.
        """
        clear_counters(self.frontends.values(), self.backends.values())
        if self.workers is not None:
            self.workers.clear_counters()

    # -- configuration -----------------------------------------------------

    def reload(self, path: Optional[str] = None) -> Any:
        """
        See L{l4lb.interfaces.IBalancerRuntime.reload}.
        """
        from l4lb.reload import reload_file

        return reload_file(self, path)  # type: ignore[arg-type]


def clear_counters(frontends: Any, backends: Any) -> None:
    """
    Reset the cumulative counters of C{frontends}, C{backends} and their
    servers (C{clear counters}).
    """
    for frontend in frontends:
        frontend.total = frontend.bytes_in = frontend.bytes_out = 0
        frontend.denied = 0
        frontend.max_current = 0
        frontend.session_rate.clear()
    for backend in backends:
        backend.total = 0
        backend.queue.max = 0
        backend.max_current = backend.retries = backend.redispatches = 0
        backend.failed_responses = 0
        backend.session_rate.clear()
        for server in backend.servers:
            server.total = server.failed_connects = 0
            server.bytes_in = server.bytes_out = 0
            server.failed_checks = server.down_transitions = server.failed_hana = 0
            server.max_current = server.retries = server.redispatches = 0
            server.failed_responses = 0
            server.session_rate.clear()
