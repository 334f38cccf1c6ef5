"""
Whether a configuration can run: it must listen somewhere.

A file can be free of errors and still do nothing: an empty file, one cut
short while it was being written, one with only C{[global]} and
C{[defaults]}, or one whose frontends were all removed.  Started, such a
balancer would bind nothing; applied by a reload, it would close every
port at once.  HAProxy refuses it (C{Configuration file has no error but
will not start (no listener)}) and so does l4lb, in one rule that
C{l4lb check}, start-up and reload all call:

    config, warnings = load_config_with_warnings(path)
    require_listener(config)        # raises NoListenerError

A listener is a frontend (TCP or UDP) with at least one C{bind}; the
runtime API's C{stats socket} and the C{stats bind} page are not, since
they carry no traffic.
"""

from __future__ import annotations

from typing import Iterable, Optional

from l4lb.config.errors import ConfigError, Problem
from l4lb.config.model import Config

#: HAProxy's words for a file without errors that has nothing to listen on.
NO_LISTENER = "Configuration file has no error but will not start (no listener)"


class NoListenerError(ConfigError):
    """
    A configuration without errors that has no listener, so it must not
    be started nor applied by a reload.

    Being a L{ConfigError}, it is refused wherever errors are; C{l4lb
    check} tells it apart to exit with 2, as C{haproxy -c} does.
    """


def has_listener(config: Config) -> bool:
    """
    Whether C{config} listens somewhere: a frontend with at least one
    C{bind}.
    """
    return any(frontend.binds for frontend in config.frontends)


def no_listener_problem(config: Config) -> Optional[Problem]:
    """
    The problem to report when C{config} has no listener, or C{None} when
    it has one.
    """
    if has_listener(config):
        return None
    return Problem(
        config.source,
        0,
        "",
        "",
        f"{NO_LISTENER}: no frontend has a 'bind'; add a section such as"
        " [frontend web] with 'bind = ADDRESS:PORT' and 'default_backend = NAME'",
    )


def require_listener(config: Config, warnings: Iterable[Problem] = ()) -> None:
    """
    Refuse C{config} when it has no listener.

    @param warnings: The configuration's warnings, carried by the error so
        that whoever reports it can show them too.
    @raise NoListenerError: With the one problem, when nothing listens.
    """
    problem = no_listener_problem(config)
    if problem is not None:
        raise NoListenerError([problem], warnings)
