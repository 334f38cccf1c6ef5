"""
l4lb's own balancing algorithms, as L{l4lb.interfaces.IBalancerFactory}
plugins.

Each module-level L{BalancerFactory} is one algorithm, found by
L{l4lb.balancers.find_factory} under its C{name}.
"""

from __future__ import annotations

from l4lb.balancers.base import BalancerFactory
from l4lb.balancers.roundrobin import RoundRobin

roundrobin = BalancerFactory(
    "roundrobin",
    RoundRobin,
    "Weighted round robin, smooth, with weights changeable at run time.",
)
