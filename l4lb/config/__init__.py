"""
l4lb's configuration: C{lb.ini} parsed into frozen attrs objects.

    from l4lb.config import load_config, ConfigError

    try:
        config = load_config("/etc/l4lb/lb.ini")
    except ConfigError as error:
        for problem in error.problems:
            print(problem)          # file:line: [section] key 'k': message

Warnings (the file is valid but probably not as intended) come back from
L{load_config_with_warnings} and L{parse_config_with_warnings} as a list of
L{Problem}; a L{ConfigError} carries them in C{ConfigError.warnings}.
Server host names are resolved, without blocking, by L{resolve_config};
L{check_config_file} does both, as C{l4lb check} does.  A file without
errors that has no listener must not be started nor applied by a reload:
L{require_listener} raises L{NoListenerError} (a L{ConfigError}) for it.
The objects themselves are in L{l4lb.config.model}; the file format is
described in C{docs/configuration.md}.
"""

from l4lb.config.check import CheckReport, check_config_file, report_check
from l4lb.config.errors import ConfigError, Problem
from l4lb.config.listeners import NoListenerError, has_listener, require_listener
from l4lb.config.model import (
    Backend,
    BindSpec,
    Config,
    Frontend,
    GlobalSettings,
    LogTarget,
    ServerSpec,
    Timeouts,
)
from l4lb.config.parser import (
    load_config,
    load_config_with_warnings,
    parse_config,
    parse_config_with_warnings,
)
from l4lb.config.resolve import resolve_config, resolve_host

__all__ = [
    "Backend",
    "BindSpec",
    "CheckReport",
    "Config",
    "ConfigError",
    "Frontend",
    "GlobalSettings",
    "LogTarget",
    "NoListenerError",
    "Problem",
    "ServerSpec",
    "Timeouts",
    "check_config_file",
    "has_listener",
    "load_config",
    "load_config_with_warnings",
    "parse_config",
    "parse_config_with_warnings",
    "report_check",
    "require_listener",
    "resolve_config",
    "resolve_host",
]
