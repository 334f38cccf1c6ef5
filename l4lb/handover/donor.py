"""
The running process's side of a handover: it starts the new process
(C{upgrade} on the runtime API, SIGUSR2), hands it the listening sockets
and the runtime state when it asks (C{_handover}), and once it commits,
stops accepting, lets its connections end and exits.
"""

from __future__ import annotations

import atexit
import json
import os
from typing import Any, Dict, List, Optional

import attr
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from l4lb.handover.retire import retire
from l4lb.handover.sockets import listening_sockets
from l4lb.readiness import STOPPING
from l4lb.handover.state import capture, dump

_log = Logger(namespace="l4lb")

#: The environment variable that makes a new process take over from the
#: process listening on the runtime API socket it names.
TAKEOVER_ENV = "L4LB_TAKEOVER"

#: The environment variable naming the descriptor on which a new process
#: started by L{Donor.upgrade} reports why it failed.
REPORT_ENV = "L4LB_TAKEOVER_REPORT"

#: The descriptor of that report in the new process.
REPORT_FD = 3

#: Seconds a new process has to take over before the upgrade is given up.
UPGRADE_TIMEOUT = 120.0

class HandoverRefused(Exception):
    """
    A handover cannot start now; the message says why, in one line.
    """


@attr.s(auto_attribs=True)
class Outcome:
    """
    How an upgrade ended.

    @ivar ok: Whether the new process took over.
    @ivar text: What to tell the operator, one or more lines.
    """

    ok: bool
    text: str


class _NewProcess(ProcessProtocol):
    """
    Follows the process an upgrade started: what it reports on its report
    descriptor, and its exit.
    """

    def __init__(self, donor: "Donor") -> None:
        self.donor = donor
        self.report = bytearray()
        self.pid: Optional[int] = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if len(self.report) < 65536:
            self.report += data

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        self.donor._new_process_ended(self, code, signal)


@attr.s(auto_attribs=True)
class _Upgrade:
    """
    One upgrade under way: the process started and who waits for the
    outcome.
    """

    process: _NewProcess
    waiting: List["Deferred[Outcome]"] = attr.Factory(list)
    timer: Any = None
    session: Any = None


class Donor:
    """
    Hands a running L{l4lb.service.BalancerService}'s sockets and state to
    a new process, one handover at a time.

    @ivar service: The running service.
    @ivar reactor: Its reactor (process spawning, time, stopping).
    @ivar argv: The command line that starts a new process: this one's.
    @ivar pidfile: twistd's pid file, renamed to C{PIDFILE.oldbin} while
        the new process starts (it would refuse to start otherwise) and
        back when the upgrade fails; C{None} without one.
    @ivar cwd: The directory the new process starts in (where this one
        started: its command line may name files relative to it).
    @ivar busy: A short description of the handover under way, or C{None}.
    @ivar retired: Whether this process handed over and is on its way out.
    """

    def __init__(
        self,
        service: Any,
        reactor: Any,
        argv: List[str],
        pidfile: Optional[str] = None,
        environ: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> None:
        self.service = service
        self.cwd = cwd or os.getcwd()
        self.reactor = reactor
        self.argv = argv
        self.pidfile = pidfile
        self.environ = dict(os.environ if environ is None else environ)
        self.busy: Optional[str] = None
        self.retired = False
        self._upgrade: Optional[_Upgrade] = None

    # -- checks ----------------------------------------------------------

    def _socket_path(self) -> str:
        """
        The runtime API socket a new process takes over on.

        @raise HandoverRefused: When it has no C{expose-fd listeners}.
        """
        where = self.service.config.global_settings.stats_socket
        if where is None or not where.expose_fd or self.service.admin_port is None:
            raise HandoverRefused(
                "Handover refused: the listening sockets are not exposed; add"
                " 'expose-fd listeners' to 'stats socket' (then restart once)."
            )
        return str(where.path)

    def _check_idle(self) -> None:
        if self.retired:
            raise HandoverRefused("Handover refused: this process already handed over.")
        if self.busy is not None:
            raise HandoverRefused(
                f"Handover refused: another handover is under way ({self.busy})."
            )
        if self.service.instance_state == STOPPING:
            raise HandoverRefused("Handover refused: the process is stopping.")

    # -- upgrade: start the new process ---------------------------------

    def upgrade(self) -> "Deferred[Outcome]":
        """
        Start this process's command line again (the code installed now)
        as a new process that takes over from this one; fire with the
        outcome once it took over or failed.
        """
        try:
            self._check_idle()
            path = self._socket_path()
        except HandoverRefused as e:
            return _fired(Outcome(False, str(e)))
        env = dict(self.environ)
        env[TAKEOVER_ENV] = path
        env[REPORT_ENV] = str(REPORT_FD)
        renamed = self._rename_pidfile()
        process = _NewProcess(self)
        try:
            self.reactor.spawnProcess(
                process,
                self.argv[0],
                self.argv,
                env=env,
                path=self.cwd,
                childFDs={0: 0, 1: 1, 2: 2, REPORT_FD: "r"},
            )
        except Exception as e:
            if renamed:
                self._restore_pidfile()
            return _fired(Outcome(False, f"Upgrade failed: cannot start a new process: {e}"))
        self.busy = f"upgrade to process {process.pid}"
        upgrade = self._upgrade = _Upgrade(process)
        upgrade.timer = self.reactor.callLater(UPGRADE_TIMEOUT, self._timed_out, upgrade)
        _log.info(
            "Upgrade: started process {pid} to take over ({argv}).",
            pid=process.pid,
            argv=" ".join(self.argv),
        )
        done: Deferred[Outcome] = Deferred()
        upgrade.waiting.append(done)
        return done

    def _new_process_ended(self, process: _NewProcess, code: Optional[int], signal: Optional[int]) -> None:
        upgrade = self._upgrade
        if upgrade is None or upgrade.process is not process:
            return
        if code == 0 and signal is None:
            # twistd without --nodaemon: the process that runs is its child.
            return
        how = f"was killed by signal {signal}" if signal else f"exited with status {code}"
        self._fail(upgrade, f"the new process {process.pid} {how} before it took over")

    def _timed_out(self, upgrade: _Upgrade) -> None:
        upgrade.timer = None
        if upgrade.session is None:
            transport = upgrade.process.transport
            if transport is not None and upgrade.process.pid is not None:
                try:
                    transport.signalProcess("TERM")
                except Exception:
                    pass
        self._fail(upgrade, f"no new process took over within {UPGRADE_TIMEOUT:.0f}s")

    def _fail(self, upgrade: _Upgrade, why: str) -> None:
        if self._upgrade is not upgrade:
            return
        self._upgrade = None
        self.busy = None
        if upgrade.timer is not None and upgrade.timer.active():
            upgrade.timer.cancel()
        self._restore_pidfile()
        report = bytes(upgrade.process.report).decode("utf-8", "replace").strip()
        _log.error(
            "Upgrade failed: {why}; this process serves on.{report}",
            why=why,
            report=f" It said: {report}" if report else "",
        )
        text = f"Upgrade failed: {why}; the running process serves on."
        if report:
            text += "\n" + report
        for waiting in upgrade.waiting:
            waiting.callback(Outcome(False, text))

    def _succeed(self, upgrade: _Upgrade, text: str) -> None:
        if self._upgrade is not upgrade:
            return
        self._upgrade = None
        if upgrade.timer is not None and upgrade.timer.active():
            upgrade.timer.cancel()
        for waiting in upgrade.waiting:
            waiting.callback(Outcome(True, text))

    # -- _handover: the new process asks -------------------------------

    def open_session(self, request: str, transport: Any) -> "HandoverSession":
        """
        Answer a new process's C{_handover} on the runtime API connection
        C{transport}: send it the listening sockets and the state.

        @param request: What followed C{_handover}: JSON with the new
            process's C{pid} and C{version}.
        @raise HandoverRefused: When this process cannot hand over now.
        """
        self._socket_path()
        upgrade = self._upgrade
        if upgrade is None or upgrade.session is not None:
            self._check_idle()
        try:
            asked = json.loads(request or "{}")
            pid, version = int(asked["pid"]), str(asked["version"])
        except (ValueError, KeyError, TypeError):
            raise HandoverRefused("Handover refused: expected _handover {\"pid\": N, \"version\": V}.")
        session = HandoverSession(self, transport, pid, version, upgrade)
        if upgrade is not None:
            upgrade.session = session
        else:
            self.busy = f"takeover by process {pid}"
        sockets = listening_sockets(self.service)
        state = capture(self.service, self.service.generation + 1)
        line = json.dumps(
            {
                "sockets": [list(key) for key, _ in sockets],
                "state": dump(state),
                "donor": {"pid": os.getpid(), "generation": self.service.generation},
            },
            separators=(",", ":"),
        ).encode("utf-8")
        for _, fd in sockets:
            transport.sendFileDescriptor(fd)
        # Each descriptor travels with one byte of the line.
        transport.write(line.ljust(len(sockets)) + b"\n")
        _log.info(
            "Handover: sent {count} listening socket(s) and the runtime state to process {pid}.",
            count=len(sockets),
            pid=pid,
        )
        return session

    def _session_ended(self, session: "HandoverSession", why: str) -> None:
        if session.upgrade is not None:
            self._fail(session.upgrade, why)
            return
        if self.busy is not None and not self.retired:
            self.busy = None
            _log.error("Handover failed: {why}; this process serves on.", why=why)

    def _commit(self, session: "HandoverSession") -> None:
        generation = self.service.generation + 1
        text = (
            f"Upgrade done: process {session.pid} took over as generation {generation},"
            f" version {session.version}; process {os.getpid()} finishes its connections."
        )
        self.retired = True
        self.busy = None
        if session.upgrade is not None:
            self._succeed(session.upgrade, text)
        self._hand_pidfile_to(session.pid)
        retire(self.service, self.reactor, session.pid, generation)

    # -- twistd's pid file ---------------------------------------------

    def _rename_pidfile(self) -> bool:
        if not self.pidfile or not os.path.exists(self.pidfile):
            return False
        try:
            os.rename(self.pidfile, self.pidfile + ".oldbin")
        except OSError as e:
            _log.warn("Upgrade: cannot rename {path}: {error}", path=self.pidfile, error=e)
            return False
        return True

    def _restore_pidfile(self) -> None:
        if not self.pidfile or not os.path.exists(self.pidfile + ".oldbin"):
            return
        try:
            os.rename(self.pidfile + ".oldbin", self.pidfile)
        except OSError as e:
            _log.warn("Upgrade: cannot rename {path}.oldbin back: {error}", path=self.pidfile, error=e)

    def _hand_pidfile_to(self, pid: int) -> None:
        """
        twistd removes its pid file when this process exits, which now
        names the new process: write it again then, and drop C{.oldbin}.
        """
        path = self.pidfile
        if not path:
            return

        def restore() -> None:
            try:
                os.unlink(path + ".oldbin")
            except OSError:
                pass
            if not os.path.exists(path):
                try:
                    with open(path, "w") as f:
                        f.write(f"{pid}\n")
                except OSError:
                    pass

        atexit.register(restore)


class HandoverSession:
    """
    The runtime API connection of a new process that received the
    sockets: it either commits or goes away.
    """

    def __init__(self, donor: Donor, transport: Any, pid: int, version: str, upgrade: Optional[_Upgrade]) -> None:
        self.donor = donor
        self.transport = transport
        self.pid = pid
        self.version = version
        self.upgrade = upgrade
        self.committed = False

    def lineReceived(self, line: str) -> None:
        """
        C{commit}: the new process serves; anything else ends the
        handover.
        """
        if line.strip() == "commit" and not self.committed:
            self.committed = True
            self.transport.write(b"committed\n")
            self.transport.loseConnection()
            self.donor._commit(self)
            return
        self.transport.loseConnection()

    def connectionLost(self) -> None:
        """
        The new process went away: without a commit, the handover failed.
        """
        if not self.committed:
            self.donor._session_ended(
                self, f"the new process {self.pid} went away before it took over"
            )


def _fired(outcome: Outcome) -> "Deferred[Outcome]":
    d: Deferred[Outcome] = Deferred()
    d.callback(outcome)
    return d
