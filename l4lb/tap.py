"""
The twistd plugin's options and C{makeService}: the one place that uses the
global reactor and changes process-wide state (the file-descriptor limit,
the runtime API socket's owner before C{--uid/--gid} take effect).

    twistd -n l4lb --config /etc/l4lb/lb.ini
    twistd -n l4lb --config /etc/l4lb/lb.ini --check
    twistd -n --pidfile= l4lb --config /etc/l4lb/lb.ini --takeover /run/l4lb/admin.sock
"""

from __future__ import annotations

import os
import resource
import sys

import l4lb
from typing import Any, Optional, Tuple

from l4lb.lazytls import defer_tls

# Before anything imports Twisted's reactor: TLS is loaded only when the
# configuration uses it (l4lb.lazytls).
defer_tls()

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from l4lb.config import ConfigError, load_config_with_warnings
from l4lb.config.listeners import require_listener
from l4lb.fdlimit import raise_nofile_limit, shortage_warning
from l4lb.gcfreeze import freeze_when_running
from l4lb.handover.donor import TAKEOVER_ENV, Donor
from l4lb.handover.sockets import release_socket_files
from l4lb.handover.taker import HandoverError, Report, Taken, abandon, commit, take_over
from l4lb.sdnotify import notify
from l4lb.service import BalancerService, BindError

_log = Logger(namespace="l4lb")


class Options(usage.Options):
    """
    Command-line options of C{twistd l4lb}.
    """

    synopsis = "[--config FILE] [--check] [--takeover SOCKET]"
    longdesc = (
        "Run the load balancer described by an lb.ini file, or by HAProxy's"
        " haproxy.cfg (told apart by the content).  With --check,"
        " only validate the file (nothing is bound) and exit 0 when it is"
        " valid, 1 when it is not, 2 when it has no error but no listener."
        "  With --takeover, take the listening sockets and the runtime state"
        " of the l4lb listening on that runtime API socket (its 'stats"
        " socket' needs 'expose-fd listeners'), which then finishes its"
        " connections and exits."
    )
    optParameters = [
        ["config", "c", "/etc/l4lb/lb.ini", "The configuration file."],
        [
            "takeover",
            None,
            None,
            "Take over from the l4lb whose runtime API socket this is"
            " (also: L4LB_TAKEOVER in the environment).",
        ],
    ]
    optFlags = [
        ["check", None, "Validate the configuration and exit."],
    ]

    def postOptions(self) -> None:
        """
        Choose l4lb's reactor when twistd was given none (see
        L{choose_reactor}).
        """
        if not self["check"]:
            choose_reactor()


def choose_reactor() -> Optional[str]:
    """
    Install the C{l4lb-epoll} reactor when no reactor is installed yet and
    this system has epoll: twistd parses the plugin's options after its
    own, so C{--reactor} given to twistd has been installed by then and is
    kept, and a plain C{twistd l4lb} gets the faster reactor.  Elsewhere
    twistd's default stays.

    @return: The name of the reactor installed, or C{None} when this left
        the choice alone.
    """
    if "twisted.internet.reactor" in sys.modules:
        return None
    try:
        from l4lb import reactor as l4lb_reactor
    except ImportError:
        # No epoll here: twistd's default reactor will do.
        return None
    l4lb_reactor.install()
    return "l4lb-epoll"


class TwistdService(BalancerService):
    """
    The balancer under twistd: a bind failure ends the process with a
    one-line message and exit status 1, instead of a traceback.

    @ivar run_as: The C{(uid, gid)} twistd switches to after binding
        (C{--uid}/C{--gid}; C{None} for either that stays), or C{None}
        when it switches to nobody.
    """

    run_as: Optional[Tuple[Optional[int], Optional[int]]] = None
    taken: Optional[Taken] = None
    report: Report = Report(None)

    def privilegedStartService(self) -> None:
        """
        Bind, or exit with the reason; then hand the runtime API's socket
        file to the user the process is about to become.
        """
        try:
            super().privilegedStartService()
        except BindError as e:
            sys.stderr.write(f"l4lb: {e}\n")
            self.report.write(f"l4lb: {e}")
            abandon(self.taken)
            raise SystemExit(1)
        self._hand_over_admin_socket()

    def _hand_over_admin_socket(self) -> None:
        """
        Give the C{stats socket} file to the C{--uid}/C{--gid} user.

        The socket is created while still root, so it would stay owned by
        root: the unprivileged process could then not remove it when it
        stops (in a sticky directory such as C{/tmp}), and the group given
        by C{--gid} could not use a C{mode 660} socket.
        """
        where = self.config.global_settings.stats_socket
        if self.run_as is None or where is None or self.admin_port is None:
            return
        if os.geteuid() != 0:
            return
        uid, gid = self.run_as
        try:
            os.chown(where.path, -1 if uid is None else uid, -1 if gid is None else gid)
        except OSError as e:
            _log.warn(
                "stats socket {path}: cannot change its owner to {uid}/{gid}: {error}",
                path=where.path,
                uid=uid,
                gid=gid,
                error=e.strerror or str(e),
            )


def makeService(options: Options, reactor: Optional[Any] = None) -> IService:
    """
    Build the balancer's service from C{--config}, or with C{--check}
    validate the file and exit.

    A configuration with errors is reported, every error with its file and
    line, and the process exits with status 1 before anything is bound; so
    is one with nothing to listen on (an empty or truncated file), in
    HAProxy's words.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    path = options["config"]
    if options["check"]:
        from l4lb.cli import main

        raise SystemExit(main(["check", path]))
    # Read once: a process this one starts later (an upgrade) is told anew.
    takeover = os.environ.pop(TAKEOVER_ENV, None) or options["takeover"]
    report = Report.from_environ(os.environ)
    try:
        config, warnings = load_config_with_warnings(path)
        require_listener(config, warnings)
    except ConfigError as e:
        for warning in e.warnings:
            sys.stderr.write(f"{warning}\n")
        sys.stderr.write(f"{e}\n")
        report.write(str(e))
        raise SystemExit(1)
    for warning in warnings:
        _log.warn("{warning}", warning=str(warning))
    taken: Optional[Taken] = None
    if takeover:
        # Only now, with a valid file: nothing is asked of the running
        # process before.
        try:
            taken = take_over(takeover)
        except HandoverError as e:
            message = f"l4lb: cannot take over from {takeover}: {e}"
            sys.stderr.write(f"{message}\n")
            report.write(message)
            raise SystemExit(1)
    _raise_nofile(config.global_settings.maxconn)
    reactor.callWhenRunning(_stop_on_sigterm, reactor)
    service = TwistdService(
        config,
        reactor,
        carried=None if taken is None else taken.carried,
        inherited=None if taken is None else taken.sockets,
    )
    service.taken = taken
    service.report = report
    service.run_as = _run_as(options)
    service.config_path = os.path.abspath(path)
    service.handover = Donor(
        service, reactor, [sys.executable, *sys.argv], _pidfile(options), cwd=os.getcwd()
    )
    service.ready.addCallback(lambda _: _serving(reactor, service))
    reactor.callWhenRunning(_reopen_on_sigusr1, reactor, service)
    reactor.callWhenRunning(_reload_on_sighup, reactor, service)
    reactor.callWhenRunning(_upgrade_on_sigusr2, reactor, service)
    freeze_when_running(reactor)
    return service


def _serving(reactor: Any, service: "TwistdService") -> None:
    """
    Once the frontends accept connections: tell systemd, and after a
    handover, tell systemd that this process is now the main one and the
    running process to stop accepting (L{l4lb.handover}).
    """
    taken = service.taken
    if taken is None:
        notify("READY=1")
        return
    service.taken = None
    notify(f"MAINPID={os.getpid()}\nREADY=1")
    try:
        commit(taken)
    except HandoverError as e:
        # The running process did not let go: it serves on, this one goes.
        notify(f"MAINPID={taken.donor_pid}")
        message = f"Handover failed: {e}; process {taken.donor_pid} serves on, this one stops."
        _log.error("{message}", message=message)
        service.report.write(message)
        reactor.stop()
        return
    service.report.close()
    # The sockets are this process's alone from now on: its own stop
    # removes the UNIX sockets' files again.
    release_socket_files(service)
    _log.info(
        "Handover: took over from process {pid} (generation {old}) as generation"
        " {generation}, version {version}.",
        pid=taken.donor_pid,
        old=taken.donor_generation,
        generation=service.generation,
        version=l4lb.__version__,
    )


def _pidfile(options: Options) -> Optional[str]:
    """
    twistd's pid file (C{--pidfile}, relative to C{--rundir}), or C{None}.
    """
    parent = getattr(options, "parent", None)
    if parent is None:
        return None
    try:
        pidfile, rundir = parent["pidfile"], parent["rundir"]
    except KeyError:
        return None
    if not pidfile:
        return None
    return os.path.abspath(os.path.join(rundir or ".", pidfile))


def _upgrade_on_sigusr2(reactor: Any, service: BalancerService) -> None:
    """
    Make SIGUSR2 start an upgrade (nginx's binary upgrade): this process's
    command line starts again and takes over (L{l4lb.handover}); the
    outcome is logged.
    """
    import signal

    def upgrade() -> None:
        _log.info("SIGUSR2: upgrading.")
        service.handover.upgrade()

    def on_signal(signum: int, frame: Any) -> None:
        reactor.callFromThread(upgrade)

    signal.signal(signal.SIGUSR2, on_signal)


def _reload_on_sighup(reactor: Any, service: BalancerService) -> None:
    """
    Make SIGHUP re-read the configuration file and apply it in place
    (L{l4lb.reload}).
    """
    import signal

    from l4lb.reload import reload_file

    def reload(signum: int, frame: Any) -> None:
        reactor.callFromThread(reload_file, service)

    signal.signal(signal.SIGHUP, reload)


def _raise_nofile(maxconn: int) -> None:
    """
    Raise this process's soft file-descriptor limit to the hard limit, and
    warn when it is still too small for C{maxconn} (when set; the default
    C{maxconn} is derived from the raised limit, so it always fits).
    """
    limit = raise_nofile_limit(resource.getrlimit, resource.setrlimit)
    if limit.error is not None:
        _log.warn(
            "Cannot raise the file-descriptor limit from {soft} to {hard}: {error}",
            soft=limit.soft,
            hard=limit.hard,
            error=limit.error,
        )
    elif limit.soft != limit.before:
        _log.info(
            "File-descriptor limit raised from {before} to {soft}.",
            before=limit.before,
            soft=limit.soft,
        )
    if maxconn:
        warning = shortage_warning(limit, maxconn)
        if warning is not None:
            _log.warn("{warning}", warning=warning)


def _run_as(options: Options) -> Optional[Tuple[Optional[int], Optional[int]]]:
    """
    The C{(uid, gid)} twistd will switch to after binding, read from its
    own options (C{--uid}, C{--gid}), as twistd itself computes them; or
    C{None} when not run by twistd or not switching.
    """
    parent = getattr(options, "parent", None)
    if parent is None:
        return None
    try:
        uid, gid = parent["uid"], parent["gid"]
    except KeyError:
        return None
    if uid is None and gid is None:
        return None
    if uid is not None and gid is None:
        import pwd

        gid = pwd.getpwuid(uid).pw_gid
    return uid, gid


def _reopen_on_sigusr1(reactor: Any, service: BalancerService) -> None:
    """
    Make SIGUSR1 re-open the log files, as after log rotation.
    """
    import signal

    previous = signal.getsignal(signal.SIGUSR1)

    def reopen(signum: int, frame: Any) -> None:
        reactor.callFromThread(service.reopen_logs)
        # twistd rotates its own --logfile on SIGUSR1: keep doing that too.
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGUSR1, reopen)


def _stop_on_sigterm(reactor: Any) -> None:
    """
    Make SIGTERM a normal stop with exit status 0.

    twistd's own handler remembers the signal and re-raises it on itself
    after shutting down, so the process would end "killed by SIGTERM";
    service managers and scripts expect a clean exit from a clean stop.
    """
    import signal

    from twisted.internet.error import ReactorNotRunning

    def stop_once() -> None:
        # A second SIGTERM while connections drain changes nothing.
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def stop(signum: int, frame: Any) -> None:
        reactor.callFromThread(stop_once)

    signal.signal(signal.SIGTERM, stop)
