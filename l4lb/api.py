"""
The public API for applications that embed l4lb in their own Twisted
service tree.

    from l4lb.api import service_from_file

    balancer = service_from_file("lb.ini", reactor)
    balancer.setServiceParent(application)

See C{docs/embedding.md}.
"""

from __future__ import annotations

from typing import Any, Optional

from l4lb.config import ConfigError, load_config, parse_config
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
from l4lb.logs import MemorySink
from l4lb.service import BalancerService, BindError


def service_from_config(config: Config, reactor: Any, sink: Optional[Any] = None) -> BalancerService:
    """
    Build the balancer's service from configuration objects.

    @param config: A L{Config}, parsed or built in code.
    @param reactor: The reactor to run on.
    @param sink: Where connection logs go (an object with C{write(line)},
        such as L{MemorySink}); by default what C{config} says.
    """
    return BalancerService(config, reactor, sink)


def service_from_file(path: str, reactor: Any, sink: Optional[Any] = None) -> BalancerService:
    """
    Build the balancer's service from an C{lb.ini} file.

    @raise ConfigError: When the file has errors (all of them are listed).
    """
    return service_from_config(load_config(path), reactor, sink)


__all__ = [
    "Backend",
    "BalancerService",
    "BindError",
    "BindSpec",
    "Config",
    "ConfigError",
    "Frontend",
    "GlobalSettings",
    "LogTarget",
    "MemorySink",
    "ServerSpec",
    "Timeouts",
    "load_config",
    "parse_config",
    "service_from_config",
    "service_from_file",
]
