"""
Names a package exports but imports only when first used (PEP 562), so
that importing the package does not load what only some configurations
need (C{twisted.names} for DNS discovery, C{twisted.web} for etcd).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """
    A module C{__getattr__} for C{package} that imports each name of
    C{where} from its submodule when it is first looked up, and keeps it on
    the package from then on.

    @param package: The package's C{__name__}.
    @param where: The submodule (relative to the package) of each name.
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
