"""
The worker side of C{nbproc}: a L{WorkerService} that adopts the main
process's listening sockets instead of binding, runs no health checks, no
runtime API and no statistics pages, and a L{WorkerResponder} that applies
what the main process sends.

    python -m l4lb.workers --config FILE --number N --channel FD \\
        --listen '[["www", 0, 4], ...]'

C{--channel} is this process's end of the AMP socket pair; C{--listen}
lists, for each TCP bind, the frontend, the index of the bind in it and
the descriptor of the shared listening socket.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from typing import Any, Dict, List, Optional, Tuple

import attr
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, globalLogBeginner
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from l4lb.adoption import nonblocking_adoption
from l4lb.config.model import Config
from l4lb.gcfreeze import freeze_when_running
from l4lb.health.actions import marking
from l4lb.health.monitor import HealthMonitor
from l4lb.interfaces import IBalancerRuntime
from l4lb.service import BalancerService, BindError
from l4lb.tcp.accept import accept_directly
from l4lb.tcp.frontend import FrontendFactory
from l4lb.tcp.stagelist import bind_stages
from l4lb.tcp.listen import listening_factory
from l4lb.workers import REACTOR_NAME, commands, counters

_log = Logger(namespace="l4lb")

#: Listening descriptors by (frontend, index of the bind).
Descriptors = Dict[Tuple[str, int], int]


def worker_config(config: Config) -> Config:
    """
    The part of C{config} a worker runs: the TCP frontends and backends,
    without the runtime API and the statistics pages (the main process
    keeps those, and the C{mode udp} proxies).  A worker has no C{grace}:
    the main process spends it before stopping the workers.
    """
    settings = attr.evolve(
        config.global_settings, stats_socket=None, stats_bind=None, nbproc=1, grace=0.0
    )
    return attr.evolve(
        config,
        global_settings=settings,
        frontends=tuple(f for f in config.frontends if f.mode == "tcp"),
        backends=tuple(b for b in config.backends if b.mode == "tcp"),
    )


class WorkerService(BalancerService):
    """
    A balancer that accepts on sockets bound by another process.

    @ivar descriptors: The shared listening sockets.
    @ivar begun: Fires when the main process has sent every server's
        state (L{commands.Begin}); nothing is accepted before.
    """

    def __init__(self, config: Config, reactor: Any, descriptors: Descriptors) -> None:
        super().__init__(worker_config(config), reactor)
        # The main process checks the servers and sends their state.
        self.monitor.disownServiceParent()
        self.monitor = HealthMonitor([], reactor)
        # The main process watches etcd and sends the servers it adds.
        self.etcd.disownServiceParent()
        # DNS moves no server of a worker (see l4lb.dns.discovery).
        self.dns.disownServiceParent()
        self.descriptors = descriptors
        self.begun: Deferred[None] = Deferred()

    def _slowstart(self, reactor: Any) -> None:
        """
        None: the main process warms the servers up and sends the throttled
        weights and limits (L{commands.SetServer}).
        """
        return None

    def _read_server_state(self) -> None:
        """
        Nothing: the main process reads the server-state file and sends
        the servers' states (L{commands.SetServer}).
        """

    def listen(self, spec: Any, bind: Any) -> Any:
        """
        Adopt the shared socket of one bind.

        @raise BindError: When the main process gave none for it.
        """
        index = next(i for i, b in enumerate(spec.binds) if b is bind)
        fd = self.descriptors.get((spec.name, index))
        if fd is None:
            raise BindError(
                f"frontend '{spec.name}': no listening socket was passed for"
                f" '{bind.text or bind.endpoint}'"
            )
        state = self.frontends[spec.name]
        factory = FrontendFactory(state, bind_stages(spec, bind))
        with nonblocking_adoption():
            shared = socket.socket(fileno=os.dup(fd))
            try:
                port = self.reactor.adoptStreamPort(
                    shared.fileno(), shared.family, listening_factory(bind, factory, self.reactor)
                )
            finally:
                shared.close()
        if bind.crt is None:
            accept_directly(port, factory, self.reactor)
        state.gate.add_port(port)
        return port

    def _open(self) -> None:
        """
        Accept once the main process has sent the servers' state.
        """
        self.begun.addCallback(lambda _: BalancerService._open(self))


def apply_server_state(
    service: IBalancerRuntime, backend_name: str, server_name: str, up: bool, admin: str, weight: int, maxconn: int
) -> bool:
    """
    Make the worker's copy of a server match the main process's, and do
    what the server's C{on-marked-down} / C{on-marked-up} options ask on
    the transition, as the main process does there
    (L{l4lb.health.actions}).

    @return: Whether the worker has that server.
    """
    try:
        server = service.find_server(backend_name, server_name)
    except KeyError:
        return False
    with marking(server):
        if server.admin != admin:
            server.set_admin(admin)
        if server.weight != weight:
            server.set_weight(weight)
        if server.maxconn != maxconn:
            server.set_maxconn(maxconn)
        if server.up != up:
            server.set_health(up)
    return True


class WorkerResponder(commands.QuietAMP):
    """
    The worker's end of the AMP channel.

    @ivar service: The L{WorkerService}.
    @ivar stop: Called to stop the worker gracefully (L{commands.Stop},
        or the main process went away).
    """

    def __init__(self, service: WorkerService, stop: Any) -> None:
        super().__init__()
        self.service = service
        self.stop = stop
        self._pages: List[str] = []

    @commands.SetServer.responder
    def set_server(
        self, backend: str, server: str, up: bool, admin: str, weight: int, maxconn: int
    ) -> Dict[str, Any]:
        """
        Apply a server's state.
        """
        known = apply_server_state(self.service, backend, server, up, admin, weight, maxconn)
        return {"known": known}

    @commands.Begin.responder
    def begin(self) -> Dict[str, Any]:
        """
        Start accepting.
        """
        if not self.service.begun.called:
            self.service.begun.callback(None)
        return {}

    @commands.ShutdownSessions.responder
    def shutdown_sessions(self, backend: str, server: str) -> Dict[str, Any]:
        """
        Close a server's connections, logged C{KD} (C{KC} while connecting).
        """
        try:
            target = self.service.find_server(backend, server)
        except KeyError:
            return {"killed": 0}
        return {"killed": self.service.kill_sessions(target, "K")}

    @commands.SetFrontendMaxconn.responder
    def set_frontend_maxconn(self, frontend: str, maxconn: int) -> Dict[str, Any]:
        """
        Change a frontend's limit.
        """
        return {"known": self.service.set_frontend_maxconn(frontend, maxconn)}

    @commands.ClearCounters.responder
    def clear_counters(self) -> Dict[str, Any]:
        """
        Reset the cumulative counters.
        """
        self.service.clear_counters()
        return {}

    @commands.Counters.responder
    def counters(self, page: int) -> Dict[str, Any]:
        """
        One page of a reading of the counters.
        """
        if page == 0 or page >= len(self._pages):
            reading = counters.snapshot(self.service, self.service.reactor.seconds())
            self._pages = counters.pages(reading, commands.PAGE_SIZE)
            page = 0
        return {"data": self._pages[page], "pages": len(self._pages)}

    @commands.ReopenLogs.responder
    def reopen_logs(self) -> Dict[str, Any]:
        """
        Re-open the connection log's file.
        """
        self.service.reopen_logs()
        return {}

    @commands.Stop.responder
    def stop_gracefully(self) -> Dict[str, Any]:
        """
        Stop: the listeners close now, connections finish.
        """
        self.service.reactor.callLater(0, self.stop)
        return {}

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        The main process went away: stop gracefully too.
        """
        super().connectionLost(reason)
        self.service.reactor.callLater(0, self.stop)


@implementer(ILogObserver)
class ForwardingObserver:
    """
    Sends the worker's log events to the main process (L{commands.Log}),
    or to standard error while there is no channel.
    """

    def __init__(self) -> None:
        self.channel: Optional[amp.AMP] = None
        self._busy = False

    def __call__(self, event: Dict[str, Any]) -> None:
        """
        Forward one event (an event logged while forwarding goes to
        standard error, so that a failing channel cannot loop).
        """
        if self._busy:
            sys.stderr.write(f"l4lb worker: {formatEvent(event)}\n")
            return
        self._busy = True
        try:
            self._forward(event)
        finally:
            self._busy = False

    def _forward(self, event: Dict[str, Any]) -> None:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}"
        level = event.get("log_level", LogLevel.info)
        channel = self.channel
        if channel is not None and channel.transport is not None:
            try:
                channel.callRemote(commands.Log, level=level.name, text=text)
                return
            except Exception:
                pass
        if level >= LogLevel.warn:
            sys.stderr.write(f"l4lb worker [{level.name}] {text}\n")


def _arguments(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m l4lb.workers")
    parser.add_argument("--config", required=True)
    parser.add_argument("--number", type=int, required=True)
    parser.add_argument("--channel", type=int, required=True)
    parser.add_argument("--listen", default="[]")
    parser.add_argument("--reactor", choices=["default", REACTOR_NAME], default="default")
    return parser.parse_args(argv)


def main(argv: List[str], reactor: Any = None) -> int:
    """
    Run one worker until it is told to stop.

    @return: The exit status.
    """
    args = _arguments(argv)
    observer = ForwardingObserver()
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    if reactor is None:
        if args.reactor == REACTOR_NAME:
            # The main process runs on l4lb's reactor: so do its workers.
            from l4lb.reactor import install

            install()
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
        # As twistd l4lb does: what start-up built is out of the
        # collector's sight once the worker runs.
        freeze_when_running(reactor)
    from l4lb.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as e:
        sys.stderr.write(f"l4lb worker {args.number}: {e}\n")
        return 1
    descriptors = {(name, int(index)): int(fd) for name, index, fd in json.loads(args.listen)}
    service = WorkerService(config, reactor, descriptors)
    stopping: List[bool] = []

    def stop() -> None:
        if not stopping:
            stopping.append(True)
            reactor.stop()

    channel = WorkerResponder(service, stop)
    with nonblocking_adoption():
        reactor.adoptStreamConnection(
            args.channel, socket.AF_UNIX, Factory.forProtocol(lambda: channel)
        )
    os.close(args.channel)
    observer.channel = channel

    def started() -> None:
        try:
            service.startService()
        except BindError as e:
            _log.error("{error}", error=str(e))
            stop()
        finally:
            # The service holds its own duplicates of the sockets.
            for fd in set(descriptors.values()):
                os.close(fd)

    reactor.callWhenRunning(started)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    # SIGTERM or SIGINT (sent to the whole group by systemd or a
    # terminal) stop gracefully, as the main process does.
    reactor.callWhenRunning(_graceful_signals, reactor, stop, service)
    reactor.run()
    return 0


def _graceful_signals(reactor: Any, stop: Any, service: IBalancerRuntime) -> None:
    """
    SIGTERM and SIGINT stop gracefully; SIGUSR1 re-opens the log; SIGHUP
    is left to the main process (it reloads, and replaces the workers),
    so that a hangup of the whole group does not kill the workers.
    """

    def handler(signum: int, frame: Any) -> None:
        reactor.callFromThread(stop)

    def reopen(signum: int, frame: Any) -> None:
        reactor.callFromThread(service.reopen_logs)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGUSR1, reopen)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
