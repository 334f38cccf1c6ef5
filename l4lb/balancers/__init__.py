"""
Balancing algorithms, found by name among the plugins in L{l4lb.plugins}.

Each algorithm is an L{l4lb.interfaces.IBalancerFactory} plugin: l4lb's own
are created in C{l4lb/plugins/l4lb_builtin.py}, and a third party adds one
by shipping a module in an C{l4lb/plugins/} directory of its own (see
C{docs/balancers.md}).  L{find_factory} returns the factory for the name
written after C{balance =}; L{available} lists the names.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

from twisted.logger import Logger
from twisted.plugin import getPlugins, pluginPackagePaths

import l4lb.plugins
from l4lb.interfaces import IBalancerFactory

__all__ = ["UnknownBalancer", "available", "find_factory", "refresh"]

_log = Logger()

# Filled on first use: importing every plugin module (and reading or writing
# dropin.cache files) is too slow to repeat for each backend.
_factories: Dict[str, IBalancerFactory] = {}


class UnknownBalancer(LookupError):
    """
    No balancer plugin has the requested name.

    @ivar name: The name asked for.
    @ivar available: The names that exist, sorted.
    """

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.name = name
        self.available = list(available)
        super().__init__(
            f"unknown balance algorithm {name!r};"
            f" available: {', '.join(self.available) or '(none)'}"
        )


def _discover() -> Dict[str, IBalancerFactory]:
    """
    Return the balancer factories in L{l4lb.plugins}, by name, discovering
    them on the first call.
    """
    if not _factories:
        for factory in getPlugins(IBalancerFactory, l4lb.plugins):
            name = getattr(factory, "name", None)
            if not isinstance(name, str) or not name:
                _log.warn(
                    "Ignoring balancer plugin {factory!r}: it has no name",
                    factory=factory,
                )
            elif name in _factories:
                _log.warn(
                    "Ignoring balancer plugin {factory!r}: {name!r} is"
                    " already provided by {first!r}",
                    factory=factory,
                    name=name,
                    first=_factories[name],
                )
            else:
                _factories[name] = factory
    return _factories


def available() -> List[str]:
    """
    Return the names of every balancing algorithm, sorted.
    """
    return sorted(_discover())


def find_factory(name: str) -> IBalancerFactory:
    """
    Return the factory of the balancing algorithm called C{name}.

    @param name: The name as written after C{balance =}, e.g.
        C{"roundrobin"}.
    @raise UnknownBalancer: When no plugin has that name; its message lists
        the names that exist.
    """
    factories = _discover()
    try:
        return factories[name]
    except KeyError:
        raise UnknownBalancer(name, sorted(factories)) from None


def refresh() -> None:
    """
    Forget the plugins found so far and look again on the next call.

    Directories added to C{sys.path} since L{l4lb.plugins} was imported are
    added to its search path first, so that plugins installed there are
    found too.
    """
    path = l4lb.plugins.__path__
    for entry in pluginPackagePaths(l4lb.plugins.__name__):  # type: ignore[no-untyped-call, unused-ignore]
        if entry not in path:
            path.append(entry)
    _factories.clear()
