"""
A running balancer's runtime held in memory, for the tests of its readers
and of the runtime API: L{stand_in}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import succeed
from zope.interface import implementer

from l4lb.config.model import Config
from l4lb.interfaces import IBalancerRuntime
from l4lb.runtime import RuntimeControls


@implementer(IBalancerRuntime)
class StandInRuntime(RuntimeControls):
    """
    The attributes of L{IBalancerRuntime} as given (nothing running, no
    workers by default), with the real policies of L{RuntimeControls}.
    """

    def __init__(self, **attributes: Any) -> None:
        values: "dict[str, Any]" = dict(
            config=Config(),
            config_path=None,
            reactor=None,
            running=True,
            started=None,
            ready=succeed(None),
            frontends={},
            udp_frontends={},
            backends={},
            retired=[],
            limiter=None,
            monitor=None,
            slowstart=None,
            workers=None,
            sink=None,
            ports={},
            port_factories={},
            own_caps={},
            instance_state="ready",
            etcd=None,
            dns=None,
            added_servers={},
        )
        values.update(attributes)
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        # The construction methods (build, listen...) are a real service's.
        raise AttributeError(f"the stand-in runtime has no {name!r}")


def stand_in(**attributes: Any) -> Any:
    """
    A L{StandInRuntime} with C{attributes}.
    """
    return StandInRuntime(**attributes)
