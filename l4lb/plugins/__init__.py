"""
l4lb's plugin package, searched with L{twisted.plugin.getPlugins}.

Like C{twisted.plugins}, this package spans every C{l4lb/plugins/}
directory on C{sys.path}: a third party ships its plugins as
C{l4lb/plugins/their_module.py} in its own distribution, B{without} an
C{__init__.py} in C{l4lb/} or C{l4lb/plugins/}, and l4lb finds them.
See C{docs/balancers.md}.
"""

from __future__ import annotations

from typing import List

from twisted.plugin import pluginPackagePaths

# getPlugins lists the modules of every directory in __path__.
__path__.extend(pluginPackagePaths(__name__))  # type: ignore[no-untyped-call, unused-ignore]
__all__: List[str] = []
