"""
The twistd plugin's options and C{makeService}: the one place that uses the
global reactor and changes process-wide state (the file-descriptor limit,
the runtime API socket's owner before C{--uid/--gid} take effect).

    twistd -n l4lb --config /etc/l4lb/lb.ini
    twistd -n l4lb --config /etc/l4lb/lb.ini --check
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any, Optional, Tuple

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from l4lb.config import ConfigError, load_config_with_warnings
from l4lb.config.listeners import require_listener
from l4lb.fdlimit import raise_nofile_limit, shortage_warning
from l4lb.gcfreeze import freeze_when_running
from l4lb.service import BalancerService, BindError

_log = Logger(namespace="l4lb")


class Options(usage.Options):
    """
    Command-line options of C{twistd l4lb}.
    """

    synopsis = "[--config FILE] [--check]"
    longdesc = (
        "Run the load balancer described by an lb.ini file, or by HAProxy's"
        " haproxy.cfg (told apart by the content).  With --check,"
        " only validate the file (nothing is bound) and exit 0 when it is"
        " valid, 1 when it is not, 2 when it has no error but no listener."
    )
    optParameters = [
        ["config", "c", "/etc/l4lb/lb.ini", "The configuration file."],
    ]
    optFlags = [
        ["check", None, "Validate the configuration and exit."],
    ]


class TwistdService(BalancerService):
    """
    The balancer under twistd: a bind failure ends the process with a
    one-line message and exit status 1, instead of a traceback.

    @ivar run_as: The C{(uid, gid)} twistd switches to after binding
        (C{--uid}/C{--gid}; C{None} for either that stays), or C{None}
        when it switches to nobody.
    """

    run_as: Optional[Tuple[Optional[int], Optional[int]]] = None

    def privilegedStartService(self) -> None:
        """
        Bind, or exit with the reason; then hand the runtime API's socket
        file to the user the process is about to become.
        """
        try:
            super().privilegedStartService()
        except BindError as e:
            sys.stderr.write(f"l4lb: {e}\n")
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
    try:
        config, warnings = load_config_with_warnings(path)
        require_listener(config, warnings)
    except ConfigError as e:
        for warning in e.warnings:
            sys.stderr.write(f"{warning}\n")
        sys.stderr.write(f"{e}\n")
        raise SystemExit(1)
    for warning in warnings:
        _log.warn("{warning}", warning=str(warning))
    _raise_nofile(config.global_settings.maxconn)
    reactor.callWhenRunning(_stop_on_sigterm, reactor)
    service = TwistdService(config, reactor)
    service.run_as = _run_as(options)
    service.config_path = os.path.abspath(path)
    reactor.callWhenRunning(_reopen_on_sigusr1, reactor, service)
    reactor.callWhenRunning(_reload_on_sighup, reactor, service)
    freeze_when_running(reactor)
    return service


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
