"""
The main process's side of C{nbproc}: L{WorkerPool} starts the worker
processes, hands them the listening sockets, tells them of every server
state change, collects their counters, restarts those that die, and stops
them gracefully.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any, Dict, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger, LogLevel
from twisted.protocols import amp
from twisted.python.failure import Failure

from l4lb.interfaces import IBalancerRuntime
from l4lb.workers import REACTOR_NAME, commands, counters

_log = Logger(namespace="l4lb")

#: Seconds between two readings of the workers' counters.
POLL_INTERVAL = 1.0
#: Seconds after C{hard-stop-after} when workers still running are killed.
KILL_MARGIN = 5.0
#: A worker that exits within this many seconds of its start is restarted
#: after a growing delay (up to L{MAX_DELAY}), so that one that cannot
#: start does not spin.
QUICK_EXIT = 1.0
#: The longest delay before restarting a worker.
MAX_DELAY = 5.0
#: The descriptor of the AMP channel in a worker; listening sockets follow.
CHANNEL_FD = 3


class Worker:
    """
    One worker process, as the main process sees it.

    @ivar number: Its number, 1 to C{nbproc}; a restarted worker keeps it.
    @ivar pid: Its process id.
    @ivar started: When it was started (reactor seconds).
    @ivar channel: The main process's end of its AMP channel.
    @ivar process: Its L{IProcessTransport}.
    @ivar reading: Its last counters reading, or C{None}.
    @ivar leaving: It was told to stop (reload or stop); it is not
        restarted when it exits.
    """

    def __init__(self, number: int, started: float) -> None:
        self.number = number
        self.started = started
        self.pid: Optional[int] = None
        self.channel: Optional[amp.AMP] = None
        self.process: Any = None
        self.reading: Optional[counters.Snapshot] = None
        self.leaving = False
        self.polling = False


class WorkerChannel(commands.QuietAMP):
    """
    The main process's end of a worker's AMP channel: it logs what the
    worker logs.
    """

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    @commands.Log.responder
    def log(self, level: str, text: str) -> Dict[str, Any]:
        """
        Log a line of the worker's, prefixed with its number.
        """
        try:
            log_level = LogLevel.levelWithName(level)
        except Exception:
            log_level = LogLevel.info
        _log.emit(log_level, "Worker {number}: {text}", number=self.worker.number, text=text)
        return {}


class WorkerProcess(ProcessProtocol):
    """
    Tells the pool when its worker process ends.
    """

    def __init__(self, pool: "WorkerPool", worker: Worker) -> None:
        self.pool = pool
        self.worker = worker

    def processEnded(self, reason: Failure) -> None:  # type: ignore[override]
        """
        The worker exited.
        """
        self.pool.ended(self.worker, reason)


def _done_polling(result: object, worker: Worker) -> None:
    worker.polling = False


def exit_text(reason: Failure) -> str:
    """
    How a process ended, for the log: C{"exited with status 0"} or
    C{"killed by signal 9"}.
    """
    value = reason.value
    signal_number = getattr(value, "signal", None)
    if signal_number:
        return f"killed by signal {signal_number}"
    if isinstance(value, ProcessDone):
        return "exited with status 0"
    return f"exited with status {getattr(value, 'exitCode', None)}"


class WorkerPool(Service):
    """
    The worker processes of a L{l4lb.service.BalancerService} with
    C{nbproc} above 1.  A child service of it: it starts once the
    listening sockets are bound, and stopping it stops the workers
    gracefully.

    @ivar service: The main process's balancer.
    @ivar count: How many workers run (C{nbproc}).
    @ivar workers: The current workers by number.
    @ivar leaving: Workers told to stop that have not exited yet.
    @ivar kept: The cumulative counters of the workers that went.
    """

    def __init__(
        self,
        service: IBalancerRuntime,
        count: int,
        reactor: Any,
        python: str = sys.executable,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.setName("workers")
        self.service = service
        self.count = count
        self.reactor = reactor
        self.python = python
        self.poll_interval = poll_interval
        self.workers: Dict[int, Worker] = {}
        self.leaving: List[Worker] = []
        self.kept: counters.Snapshot = counters.add([])
        self._quick: Dict[int, int] = {}
        self._attached: List[Any] = []
        self._stopping = False
        self._stopped: Optional[Deferred[None]] = None
        self._poll_call: Any = None
        self._kill_call: Any = None

    # -- life --------------------------------------------------------------

    def startService(self) -> None:
        """
        Start every worker and the polling of their counters.
        """
        super().startService()
        self._stopping = False
        self.attach()
        for number in range(1, self.count + 1):
            self.spawn(number)
        self._poll_call = self.reactor.callLater(self.poll_interval, self._poll)

    def stopService(self) -> "Deferred[None]":
        """
        Tell every worker to stop gracefully; fire once all have exited
        (those still running C{hard-stop-after} plus L{KILL_MARGIN}
        seconds later are killed).
        """
        super().stopService()
        self._stopping = True
        if self._poll_call is not None and self._poll_call.active():
            self._poll_call.cancel()
        live = self.live()
        if not live:
            return succeed(None)
        self._stopped = Deferred()
        for worker in live:
            self.retire(worker)
        grace = self.service.config.global_settings.hard_stop_after
        self._kill_call = self.reactor.callLater(grace + KILL_MARGIN, self._kill_all)
        return self._stopped

    def live(self) -> List[Worker]:
        """
        Every worker process that has not exited, current or leaving.
        """
        return list(self.workers.values()) + list(self.leaving)

    def spawn(self, number: int) -> Worker:
        """
        Start worker C{number} with the current listening sockets, and send
        it every server's state.
        """
        listen, child_fds = self.descriptors()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child_fds[CHANNEL_FD] = theirs.fileno()
        argv = [
            self.python,
            "-m",
            "l4lb.workers",
            "--config",
            str(self.service.config_path),
            "--number",
            str(number),
            "--channel",
            str(CHANNEL_FD),
            "--listen",
            json.dumps(listen),
            "--reactor",
            REACTOR_NAME if _on_l4lb_reactor(self.reactor) else "default",
        ]
        worker = Worker(number, self.reactor.seconds())
        try:
            worker.process = self.reactor.spawnProcess(
                WorkerProcess(self, worker),
                self.python,
                argv,
                env=dict(os.environ),
                childFDs=child_fds,
            )
        except Exception:
            ours.close()
            raise
        finally:
            theirs.close()
        worker.pid = worker.process.pid
        channel = WorkerChannel(worker)
        try:
            self.reactor.adoptStreamConnection(
                ours.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: channel)
            )
            # Each end of the pair is an open file of its own, so this one
            # is shared with no other process: making it non-blocking after
            # the adoption (which PyPy's socket objects leave blocking)
            # leaves no window, and spares this process, where other
            # threads may make sockets, a change of the default timeout
            # (l4lb.adoption.nonblocking_adoption; the worker's end is
            # adopted that way).
            os.set_blocking(ours.fileno(), False)
        finally:
            ours.close()
        worker.channel = channel
        self.workers[number] = worker
        _log.info("Worker {number} started (pid {pid}).", number=number, pid=worker.pid)
        self._send_state(worker)
        return worker

    def descriptors(self) -> Tuple[List[List[Any]], Dict[int, Any]]:
        """
        The TCP listening sockets to pass: C{[frontend, bind index, child
        descriptor]} entries for the worker's command line, and the
        C{childFDs} of L{IReactorProcess.spawnProcess}.
        """
        child_fds: Dict[int, Any] = {0: "w", 1: 1, 2: 2}
        listen: List[List[Any]] = []
        target = CHANNEL_FD + 1
        for name, ports in self.service.ports.items():
            if name not in self.service.frontends:
                continue
            for index, port in enumerate(ports):
                child_fds[target] = port.fileno()
                listen.append([name, index, target])
                target += 1
        return listen, child_fds

    def ended(self, worker: Worker, reason: Failure) -> None:
        """
        A worker exited: keep its cumulative counters, log it, and restart
        it unless it was told to stop.
        """
        if worker.reading is not None:
            self.kept = counters.add([self.kept, counters.cumulative(worker.reading)])
            worker.reading = None
        worker.channel = None
        if worker in self.leaving:
            self.leaving.remove(worker)
        current = self.workers.get(worker.number) is worker
        how = exit_text(reason)
        if not current or self._stopping or not self.running:
            if current:
                del self.workers[worker.number]
            _log.info(
                "Worker {number} (pid {pid}) {how}.", number=worker.number, pid=worker.pid, how=how
            )
            self._maybe_stopped()
            return
        del self.workers[worker.number]
        quick = self.reactor.seconds() - worker.started < QUICK_EXIT
        self._quick[worker.number] = self._quick.get(worker.number, 0) + 1 if quick else 0
        delay = min(MAX_DELAY, 0.1 * 2 ** self._quick[worker.number]) if quick else 0.0
        _log.warn(
            "Worker {number} (pid {pid}) {how}, restarting.",
            number=worker.number,
            pid=worker.pid,
            how=how,
        )
        self.reactor.callLater(delay, self._restart, worker.number)

    def _restart(self, number: int) -> None:
        if self._stopping or not self.running or number in self.workers:
            return
        try:
            self.spawn(number)
        except Exception:
            _log.failure("Worker {number}: cannot start", number=number)
            self.reactor.callLater(MAX_DELAY, self._restart, number)

    def retire(self, worker: Worker) -> None:
        """
        Tell C{worker} to stop gracefully; it will not be restarted.
        """
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if worker not in self.leaving:
            self.leaving.append(worker)
        worker.leaving = True
        if worker.channel is not None:
            self._call(worker, commands.Stop)
        else:
            self._signal(worker, "TERM")

    def reload(self) -> None:
        """
        After a reload: start a new worker for each current one, with the
        new listening sockets (they read the configuration file again), and
        stop the old ones gracefully.
        """
        if not self.running or self._stopping:
            return
        self.attach()
        old = list(self.workers.values())
        for worker in old:
            self.retire(worker)
        for number in range(1, self.count + 1):
            self.spawn(number)
        _log.info(
            "Reload: {count} worker(s) restarted with the new configuration; the old"
            " ones finish their connections.",
            count=self.count,
        )

    def _maybe_stopped(self) -> None:
        if self._stopping and not self.live() and self._stopped is not None:
            if self._kill_call is not None and self._kill_call.active():
                self._kill_call.cancel()
            stopped, self._stopped = self._stopped, None
            stopped.callback(None)

    def _kill_all(self) -> None:
        for worker in self.live():
            _log.warn(
                "Worker {number} (pid {pid}) still running after hard-stop-after: killing it.",
                number=worker.number,
                pid=worker.pid,
            )
            self._signal(worker, "KILL")

    def _signal(self, worker: Worker, name: str) -> None:
        try:
            worker.process.signalProcess(name)
        except (ProcessExitedAlready, OSError, AttributeError):
            pass

    # -- telling the workers -----------------------------------------------

    def attach(self) -> None:
        """
        Listen to the state changes of every backend's servers (the
        backends a reload created too).
        """
        for backend in self.service.backends.values():
            if any(backend is seen for seen in self._attached):
                continue
            self._attached.append(backend)
            backend.listeners.append(self.server_changed)

    def server_changed(self, server: Any) -> None:
        """
        Send a server's state to every worker.
        """
        for worker in self.live():
            self._set_server(worker, server)

    def _set_server(self, worker: Worker, server: Any) -> None:
        backend = server.backend
        if backend is None or backend.spec.mode != "tcp":
            return
        self._call(
            worker,
            commands.SetServer,
            backend=backend.name,
            server=server.name,
            up=bool(server.up),
            admin=server.admin,
            weight=int(server.weight),
            maxconn=int(server.maxconn),
        )

    def _send_state(self, worker: Worker) -> None:
        for backend in self.service.backends.values():
            for server in backend.servers:
                self._set_server(worker, server)
        self._call(worker, commands.Begin)

    def shutdown_sessions(self, backend: str, server: str) -> None:
        """
        Close a server's connections in every worker.
        """
        for worker in self.live():
            self._call(worker, commands.ShutdownSessions, backend=backend, server=server)

    def set_frontend_maxconn(self, frontend: str, maxconn: int) -> None:
        """
        Change a frontend's limit in every worker.
        """
        for worker in self.workers.values():
            self._call(worker, commands.SetFrontendMaxconn, frontend=frontend, maxconn=maxconn)

    def reopen_logs(self) -> None:
        """
        Have every worker re-open the connection log's file.
        """
        for worker in self.live():
            self._call(worker, commands.ReopenLogs)

    def clear_counters(self) -> None:
        """
        Reset the cumulative counters of every worker and those kept of
        workers that went.
        """
        self.kept = counters.add([])
        for worker in self.live():
            worker.reading = None
            self._call(worker, commands.ClearCounters)
        self.poll()

    def _call(self, worker: Worker, command: Any, **arguments: Any) -> "Deferred[Any]":
        """
        Send C{command}; a failure (the worker went away) is logged at
        debug level, never left unhandled.
        """
        channel = worker.channel
        if channel is None:
            return succeed(None)
        d: Deferred[Any] = channel.callRemote(command, **arguments)
        d.addErrback(
            lambda f: _log.debug(
                "Worker {number}: {command} failed: {error}",
                number=worker.number,
                command=command.__name__,
                error=f.getErrorMessage(),
            )
        )
        return d

    # -- counters ----------------------------------------------------------

    def _poll(self) -> None:
        try:
            self.poll()
        except Exception:
            _log.failure("Reading the workers' counters failed")
        if not self._stopping and self.running:
            self._poll_call = self.reactor.callLater(self.poll_interval, self._poll)

    def poll(self) -> None:
        """
        Ask every worker for its counters (one reading at a time each).
        """
        for worker in self.live():
            if worker.channel is None or worker.polling:
                continue
            worker.polling = True
            self._read(worker).addBoth(_done_polling, worker)

    def _read(self, worker: Worker) -> "Deferred[None]":
        parts: List[str] = []

        def got(answer: Any) -> Any:
            if answer is None:
                return None
            parts.append(answer["data"])
            if len(parts) < answer["pages"]:
                return self._call(worker, commands.Counters, page=len(parts)).addCallback(got)
            try:
                reading = counters.parse("".join(parts))
            except ValueError as e:
                _log.debug("Worker {number}: bad counters: {e}", number=worker.number, e=e)
                return None
            if worker.channel is not None:
                worker.reading = reading
            return None

        return self._call(worker, commands.Counters, page=0).addCallback(got)

    def reading(self) -> counters.Snapshot:
        """
        The sum of the workers' last readings and of what was kept of
        those that went.
        """
        readings = [self.kept] + [w.reading for w in self.live() if w.reading is not None]
        return counters.add(readings)

    def merge(self, rows: List[Dict[str, str]]) -> None:
        """
        Add the workers' counters to the main process's statistics rows.
        """
        counters.merge(rows, self.reading())


def _on_l4lb_reactor(reactor: Any) -> bool:
    """
    Whether C{reactor} is l4lb's (C{twistd --reactor=l4lb-epoll}), so that
    the workers run on it too.  Checked by name: the module that defines it
    cannot be imported where epoll does not exist.
    """
    return any(
        cls.__module__ == "l4lb.reactor" and cls.__name__ == "L4lbEPollReactor"
        for cls in type(reactor).__mro__
    )
