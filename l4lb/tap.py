"""
The twistd plugin's options and C{makeService}: the one place that uses the
global reactor.

    twistd -n l4lb --config /etc/l4lb/lb.ini
    twistd -n l4lb --config /etc/l4lb/lb.ini --check
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from l4lb.config import ConfigError, load_config_with_warnings
from l4lb.service import BalancerService, BindError

_log = Logger(namespace="l4lb")


class Options(usage.Options):
    """
    Command-line options of C{twistd l4lb}.
    """

    synopsis = "[--config FILE] [--check]"
    longdesc = (
        "Run the load balancer described by an lb.ini file.  With --check,"
        " only validate the file (nothing is bound) and exit 0 when it is"
        " valid, 1 when it is not."
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
    """

    def privilegedStartService(self) -> None:
        """
        Bind, or exit with the reason.
        """
        try:
            super().privilegedStartService()
        except BindError as e:
            sys.stderr.write(f"l4lb: {e}\n")
            raise SystemExit(1)


def makeService(options: Options, reactor: Optional[Any] = None) -> IService:
    """
    Build the balancer's service from C{--config}, or with C{--check}
    validate the file and exit.

    A configuration with errors is reported, every error with its file and
    line, and the process exits with status 1 before anything is bound.
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
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        raise SystemExit(1)
    for warning in warnings:
        _log.warn("{warning}", warning=str(warning))
    reactor.callWhenRunning(_stop_on_sigterm, reactor)
    service = TwistdService(config, reactor)
    reactor.callWhenRunning(_reopen_on_sigusr1, reactor, service)
    return service


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
