"""
The service tree: one L{BalancerService} runs a whole configuration.

It binds every frontend in C{privilegedStartService}, so that C{twistd
--uid/--gid} can drop root after binding port 80, and fails at once, with
a message naming the frontend and the address, when a bind fails.  Host
names in server lines are resolved with the reactor's non-blocking resolver
in C{startService}; the listening sockets accept nothing until that is
done.
"""

from __future__ import annotations

import resource
from typing import Any, Dict, List, Optional

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python.failure import Failure

from l4lb.balancers import find_factory
from l4lb.config.model import Config
from l4lb.logs import LogSink
from l4lb.pool import BackendState
from l4lb.tcp.frontend import FrontendFactory, FrontendState
from l4lb.tcp.limits import ConnectionLimiter

_log = Logger(namespace="l4lb")


class BindError(Exception):
    """
    A frontend could not listen where its configuration says.
    """


def default_maxconn() -> int:
    """
    The global C{maxconn} when the configuration sets none: half the
    file-descriptor limit (each relayed connection holds two sockets), less
    a reserve for listeners, logs and checks.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, (soft - 64) // 2)


class BalancerService(MultiService):
    """
    Runs the frontends and backends of one L{Config}.

    @ivar config: The configuration being run.
    @ivar reactor: The reactor everything runs on.
    @ivar backends: The L{BackendState}s by name.
    @ivar frontends: The L{FrontendState}s by name.
    @ivar limiter: The process-wide connection limit.
    @ivar ports: The listening ports of each frontend, once bound.
    @ivar ready: A L{Deferred} that fires once every frontend accepts
        connections (names resolved, ports open).
    """

    def __init__(self, config: Config, reactor: Any, sink: Optional[Any] = None) -> None:
        """
        @param config: What to run.
        @param reactor: The reactor (TCP, time, file descriptors, resolver).
        @param sink: Where connection logs go; by default what the
            configuration's C{log} says.
        """
        super().__init__()
        self.config = config
        self.reactor = reactor
        self._sink = sink
        self.sink: Any = None
        maxconn = config.global_settings.maxconn or default_maxconn()
        self.limiter = ConnectionLimiter(maxconn)
        self.backends: Dict[str, BackendState] = {
            b.name: BackendState(b, find_factory(b.balance)) for b in config.backends
        }
        self.frontends: Dict[str, FrontendState] = {}
        self.ports: Dict[str, List[Any]] = {}
        self.ready: Deferred[None] = Deferred()
        self._bound = False

    def privilegedStartService(self) -> None:
        """
        Bind every frontend's addresses.

        @raise BindError: When any bind fails; whatever was bound is closed
            again first.
        """
        if self._bound:
            return
        self.sink = self._sink if self._sink is not None else LogSink(self.config.global_settings.log)
        for spec in self.config.frontends:
            gate = self.limiter.gate(spec.maxconn)
            state = FrontendState(
                spec, self.backends[spec.default_backend], gate, self.reactor, self.sink
            )
            self.frontends[spec.name] = state
            factory = FrontendFactory(state)
            ports = self.ports.setdefault(spec.name, [])
            for bind in spec.binds:
                try:
                    port = _listen_now(serverFromString(self.reactor, bind.endpoint), factory)
                except Exception as e:
                    self._close_ports()
                    where = f"{self.config.source}:{bind.line}: " if bind.line else ""
                    raise BindError(
                        f"{where}frontend '{spec.name}' cannot listen on"
                        f" '{bind.text or bind.endpoint}': {_reason(e)}"
                    ) from e
                gate.add_port(port)
                ports.append(port)
        self._bound = True
        super().privilegedStartService()

    def startService(self) -> None:
        """
        Resolve server host names, then open the frontends.
        """
        self.privilegedStartService()
        super().startService()
        d = self._resolve()
        d.addCallback(lambda _: self._open())
        d.addErrback(lambda f: _log.failure("l4lb: cannot start", f))

    def _resolve(self) -> "Deferred[Any]":
        pending = []
        for backend in self.backends.values():
            for server in backend.servers:
                if server.address is None:
                    pending.append(self._resolve_server(backend, server))
        if not pending:
            return succeed(None)
        return DeferredList(pending)

    def _resolve_server(self, backend: BackendState, server: Any) -> "Deferred[None]":
        from l4lb.config.resolve import resolve_host

        d = resolve_host(self.reactor.nameResolver, server.spec.host, server.port)

        def resolved(address: Optional[str]) -> None:
            if address is None:
                _log.error(
                    "Server {backend}/{server}: cannot resolve '{host}'; it stays out of"
                    " rotation.",
                    backend=backend.name,
                    server=server.name,
                    host=server.spec.host,
                )
            else:
                server.address = address
                backend.balancer.server_up(server)

        return d.addCallback(resolved)

    def _open(self) -> None:
        for name, state in self.frontends.items():
            state.gate.open()
            _log.info("Proxy {name} started.", name=name)
        for name in self.backends:
            if name not in self.frontends:
                _log.info("Proxy {name} started.", name=name)
        if not self.ready.called:
            self.ready.callback(None)

    def stopService(self) -> "Deferred[Any]":
        """
        Stop listening.  Established connections are left to finish.
        """
        super().stopService()
        d = self._close_ports()
        if self.sink is not None and self._sink is None:
            sink = self.sink
            d.addBoth(lambda r: (sink.close(), r)[1])
        return d

    def _close_ports(self) -> "Deferred[Any]":
        closing = []
        for name, ports in self.ports.items():
            state = self.frontends.get(name)
            for port in ports:
                if state is not None:
                    state.gate.remove_port(port)
                closing.append(_maybe_deferred(port.stopListening()))
            ports.clear()
        for state in self.frontends.values():
            self.limiter.remove(state.gate)
        self._bound = False
        return DeferredList(closing, consumeErrors=True)


def _maybe_deferred(result: Any) -> "Deferred[Any]":
    if isinstance(result, Deferred):
        return result
    return succeed(result)


def _listen_now(endpoint: Any, factory: Any) -> Any:
    """
    Listen and return the port, or raise why not.  Stream endpoints bind
    synchronously; one that does not answer at once is an error too, since
    the service must not start without its listeners.
    """
    outcome: List[Any] = []
    endpoint.listen(factory).addBoth(outcome.append)
    if not outcome:
        raise BindError("the endpoint did not bind immediately")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def _reason(e: Exception) -> str:
    socket_error = getattr(e, "socketError", None)
    if socket_error is not None:
        return str(getattr(socket_error, "strerror", None) or socket_error)
    return str(e)
