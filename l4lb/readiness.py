"""
Whether this instance should receive traffic: the answer routing daemons
(BIRD, ExaBGP, keepalived) and orchestrators read from C{/ready} on the
statistics listener and from C{show ready} on the runtime API.

An instance is ready when every frontend is bound and accepting, each
frontend's backend has a server that may take a connection, and the
instance is neither drained (C{set instance state drain}) nor stopping
(the C{grace} time after SIGTERM).  Readiness only advises: a drained or
stopping instance still serves every connection that reaches it, so that
routers can withdraw its route before anything is refused.
"""

from __future__ import annotations

from typing import List, Tuple

import attr

from l4lb.interfaces import IBalancerRuntime

#: The instance takes traffic (the default).
READY = "ready"
#: An operator drained the instance: not ready, still serving.
DRAIN = "drain"
#: SIGTERM was received; the listeners close once C{grace} has passed.
STOPPING = "stopping"

#: The states an operator may set with C{set instance state}.
SETTABLE = (READY, DRAIN)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Readiness:
    """
    What C{/ready} and C{show ready} answer.

    @ivar ready: Whether the instance should receive traffic.
    @ivar reasons: Why not, one phrase each (empty when ready).
    """

    ready: bool
    reasons: List[str] = attr.ib(factory=list)

    def text(self) -> str:
        """
        The one-line answer: C{ready}, or C{not ready: REASON; REASON}.
        """
        if self.ready:
            return "ready\n"
        return "not ready: " + "; ".join(self.reasons) + "\n"


def _frontend_backends(runtime: IBalancerRuntime) -> List[Tuple[str, List[str]]]:
    """
    C{(frontend, backend names)} for every frontend of the running
    configuration: its default backend, or else the backends its
    C{use_backend} rules name.
    """
    pairs = []
    for spec in runtime.config.frontends:
        if spec.default_backend:
            pairs.append((spec.name, [spec.default_backend]))
        else:
            pairs.append((spec.name, [route.backend for route in spec.sni_routes]))
    return pairs


def readiness(runtime: IBalancerRuntime) -> Readiness:
    """
    Tell whether C{runtime} should receive traffic now, and why not.
    """
    reasons: List[str] = []
    state = runtime.instance_state
    if state == STOPPING:
        reasons.append("stopping")
    elif state == DRAIN:
        reasons.append("drained by an operator")
    if not runtime.running or not runtime.ready.called:
        reasons.append("starting: listeners not open yet")
    for frontend, names in _frontend_backends(runtime):
        backends = [runtime.backends[n] for n in names if n in runtime.backends]
        if not any(backend.has_eligible() for backend in backends):
            which = ", ".join(repr(n) for n in names) or "none"
            reasons.append(f"frontend {frontend!r} has no usable server (backend {which})")
    return Readiness(not reasons, reasons)
