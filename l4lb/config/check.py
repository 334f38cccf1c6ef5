"""
Checking a configuration file as C{haproxy -c -f FILE} does: parse it,
resolve its host names, report every problem, bind nothing.

    d = check_config_file("/etc/l4lb/lb.ini", reactor)
    d.addCallback(report_check, sys.stdout, sys.stderr)   # fires with 0, 1 or 2

A file without errors that has nothing to listen on (no frontend with a
C{bind}: an empty or truncated file) is refused with exit status 2, as
C{haproxy -c} refuses it (L{l4lb.config.listeners}).

Both C{l4lb check FILE} and C{twistd l4lb --check} use these functions.
"""

from __future__ import annotations

from typing import Optional, TextIO, Tuple

import attr
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorPluggableNameResolver
from twisted.python.failure import Failure

from l4lb.config.errors import ConfigError, Problem
from l4lb.config.listeners import NoListenerError, require_listener
from l4lb.config.model import Config
from l4lb.config.parser import load_config_with_warnings
from l4lb.config.resolve import resolve_config

VALID_MESSAGE = "Configuration file is valid"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class CheckReport:
    """
    The outcome of checking one file.

    @ivar path: The file checked.
    @ivar config: The parsed and resolved configuration, or C{None} when
        there are errors.
    @ivar errors: Every error, in file order.
    @ivar warnings: Every warning, in file order.
    @ivar no_listener: Whether the file has no error but nothing listens;
        C{errors} then holds that one problem.
    """

    path: str
    config: Optional[Config]
    errors: Tuple[Problem, ...] = ()
    warnings: Tuple[Problem, ...] = ()
    no_listener: bool = False

    @property
    def valid(self) -> bool:
        """
        Whether the file has no error (warnings allowed).
        """
        return not self.errors


def check_config_file(
    path: str, reactor: IReactorPluggableNameResolver
) -> "Deferred[CheckReport]":
    """
    Parse C{path} and resolve its server host names with
    C{reactor.nameResolver}; nothing is bound.

    @return: A L{Deferred} that fires with a L{CheckReport}; problems in the
        file are in the report, never a failure.  It fires at once when no
        host name needs resolving.
    """
    try:
        config, warnings = load_config_with_warnings(path)
    except ConfigError as error:
        return succeed(
            CheckReport(path, None, tuple(error.problems), tuple(error.warnings))
        )

    def resolved(config: Config) -> CheckReport:
        # After resolving: a host that does not resolve is an error, and
        # errors come before the absence of a listener, as in haproxy -c.
        try:
            require_listener(config)
        except NoListenerError as error:
            return CheckReport(
                path, None, tuple(error.problems), tuple(warnings), no_listener=True
            )
        return CheckReport(path, config, (), tuple(warnings))

    def unresolved(failure: Failure) -> CheckReport:
        failure.trap(ConfigError)
        error = failure.value
        assert isinstance(error, ConfigError)
        return CheckReport(path, None, tuple(error.problems), tuple(warnings))

    d = resolve_config(config, reactor.nameResolver)
    return d.addCallbacks(resolved, unresolved)


def report_check(report: CheckReport, out: TextIO, err: TextIO) -> int:
    """
    Print a report as C{l4lb check} does: warnings and errors one per line
    on C{err}, C{Configuration file is valid} on C{out} when it is.

    @return: The exit status: 0 when valid, 1 when not, 2 when the file
        has no error but no listener (as C{haproxy -c}).
    """
    for warning in report.warnings:
        err.write(f"{warning}\n")
    for error in report.errors:
        err.write(f"{error}\n")
    if report.no_listener:
        return 2
    if report.valid:
        out.write(f"{VALID_MESSAGE}\n")
        return 0
    count = len(report.errors)
    err.write(
        f"Configuration file is invalid: {count} error{'s' if count != 1 else ''}\n"
    )
    return 1
