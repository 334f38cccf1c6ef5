"""
l4lb's own balancing algorithms, as L{l4lb.interfaces.IBalancerFactory}
plugins.

Each module-level L{BalancerFactory} is one algorithm, found by
L{l4lb.balancers.find_factory} under its C{name}.
"""

from __future__ import annotations

from l4lb.balancers.base import BalancerFactory
from l4lb.balancers.first import First
from l4lb.balancers.leastconn import LeastConnections
from l4lb.balancers.maglev import Maglev
from l4lb.balancers.random import Random
from l4lb.balancers.roundrobin import RoundRobin
from l4lb.balancers.source import Source
from l4lb.balancers.static_rr import StaticRoundRobin

roundrobin = BalancerFactory(
    "roundrobin",
    RoundRobin,
    "Weighted round robin, smooth, with weights changeable at run time.",
)
static_rr = BalancerFactory(
    "static-rr",
    StaticRoundRobin,
    "Weighted round robin with the configured weights.",
)
leastconn = BalancerFactory(
    "leastconn",
    LeastConnections,
    "The server with the fewest connections for its weight; ties rotate.",
)
first = BalancerFactory(
    "first",
    First,
    "The first server, by id, with a free slot.",
)
source = BalancerFactory(
    "source",
    Source,
    "A hash of the client's address, map-based or consistent (hash-type).",
)
random = BalancerFactory(
    "random",
    Random,
    "Weighted random; random(N) keeps the least loaded of N draws.",
)
maglev = BalancerFactory(
    "maglev",
    Maglev,
    "A hash of the client's address through a Maglev lookup table.",
)
