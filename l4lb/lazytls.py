"""
Keep Twisted's TLS, and with it pyOpenSSL, C{cryptography} and
C{service_identity}, out of a process whose configuration uses no TLS.

Twisted's reactors import TLS whether it is used or not:
C{twisted.internet.posixbase} imports C{twisted.internet.ssl} and
C{twisted.protocols.tls} (for C{listenSSL} and C{connectSSL}), and
C{twisted.internet.tcp} imports C{twisted.internet._newtls} (for C{startTLS}),
which imports C{twisted.protocols.tls}.  Those load pyOpenSSL and
C{cryptography}'s compiled core: about 14 MB of the resident memory of a
plain TCP balancer.

L{defer_tls}, called by the twistd plugin before anything imports the
reactor, imports the reactor's base modules with:

  - C{twisted.internet.ssl} and C{twisted.protocols.tls} registered as
    stand-ins (L{DeferredModule}): each imports the real module on the
    first use of one of its names and hands that name over, so C{listenSSL}, C{connectSSL}, TLS endpoints and
    l4lb's own TLS (L{l4lb.tcp.tls}) work as before and load TLS then;
  - C{twisted.internet._newtls} unavailable while C{twisted.internet.tcp} is
    imported, which makes Twisted's TCP transports those of a Twisted
    without TLS: they offer no C{startTLS} (C{ITLSTransport}).  l4lb never
    starts TLS on a connected transport; it wraps its protocols in
    C{TLSMemoryBIOFactory} instead.

Nothing is changed when the reactor's modules are imported already (a
C{--reactor} given to twistd, tests, an application embedding l4lb).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["DeferredModule", "defer_tls"]

#: The modules made lazy: imported by Twisted's reactor, used only for TLS.
LAZY = ("twisted.internet.ssl", "twisted.protocols.tls")

#: Twisted's C{startTLS} for TCP transports, left out while TCP is imported.
STARTTLS = "twisted.internet._newtls"

#: The modules whose import L{defer_tls} performs.
REACTOR_BASE = ("twisted.internet.tcp", "twisted.internet.posixbase")


class DeferredModule(types.ModuleType):
    """
    A stand-in, in C{sys.modules}, for a module not imported yet: the first
    name looked up on it imports the real module, which takes its place in
    C{sys.modules} and on its package; names looked up on the stand-in
    later (by modules that kept it) come from the real module.

    (C{importlib.util.LazyLoader} cannot do this for
    C{twisted.internet.ssl}, which puts a proxy of its own in
    C{sys.modules} while it loads.)
    """

    def __getattr__(self, name: str) -> Any:
        real = sys.modules.get(self.__name__)
        if real is None or real is self:
            sys.modules.pop(self.__name__, None)
            real = importlib.import_module(self.__name__)
        return getattr(real, name)


def _defer(name: str) -> None:
    """
    Put a L{DeferredModule} for the module C{name} in C{sys.modules} and on
    its package.
    """
    module = DeferredModule(name)
    sys.modules[name] = module
    package, _, child = name.rpartition(".")
    setattr(sys.modules[package], child, module)


def defer_tls() -> bool:
    """
    Import Twisted's reactor base modules with TLS deferred (see the
    module's description), unless they are imported already.

    @return: Whether TLS was deferred.
    """
    if any(name in sys.modules for name in REACTOR_BASE + LAZY + (STARTTLS,)):
        return False
    importlib.import_module("twisted.internet")
    importlib.import_module("twisted.protocols")
    for name in LAZY:
        _defer(name)
    # None in sys.modules: the import fails, and tcp falls back to its
    # transports without startTLS.
    sys.modules[STARTTLS] = None  # type: ignore[assignment]
    try:
        for name in REACTOR_BASE:
            importlib.import_module(name)
    finally:
        if STARTTLS in sys.modules and sys.modules[STARTTLS] is None:
            del sys.modules[STARTTLS]
    return True
