"""
Building blocks for balancer tests: backends of servers built from short
descriptions, and a way to drive picks.
"""

from __future__ import annotations

import random as _random
from typing import Any, Dict, List, Optional, Sequence, Tuple

from l4lb.balancers import find_factory
from l4lb.balancers.base import BalancerFactory
from l4lb.balancers.random import Random
from l4lb.config.model import Backend as BackendSpec
from l4lb.config.model import ServerSpec
from l4lb.interfaces import IBalancer
from l4lb.pool import BackendState, Server

#: Every algorithm l4lb ships, with the backend settings to test it with.
ALGORITHMS: Dict[str, Dict[str, Any]] = {
    "roundrobin": {},
    "static-rr": {},
    "leastconn": {},
    "first": {},
    "source": {},
    "source-consistent": {"balance": "source", "hash_type": "consistent"},
    "source-bounded": {
        "balance": "source",
        "hash_type": "consistent",
        "hash_balance_factor": 125,
    },
    "random": {},
    "random(3)": {"balance": "random", "balance_args": ("3",)},
    "maglev": {"balance": "maglev", "balance_args": ("1009",)},
}


def spec(
    name: str,
    weight: int = 1,
    backup: bool = False,
    maxconn: int = 0,
    maxqueue: int = 0,
    options: Tuple[Tuple[str, Optional[str]], ...] = (),
    address: Optional[str] = None,
    port: int = 80,
) -> ServerSpec:
    """
    Return a server spec named C{name} on an address derived from its name.
    """
    if address is None:
        address = f"127.{len(name)}.{sum(map(ord, name)) % 250}.{ord(name[-1]) % 250}"
    return ServerSpec(
        name,
        address,
        port,
        address=address,
        weight=weight,
        backup=backup,
        maxconn=maxconn,
        maxqueue=maxqueue,
        options=options,
    )


def backend(
    algorithm: str,
    specs: Sequence[ServerSpec],
    seed: int = 7,
    **settings: Any,
) -> BackendState:
    """
    Return a backend of C{specs} balanced by C{algorithm} (a key of
    L{ALGORITHMS} or any installed name); random choices use C{seed}.
    """
    options = dict(ALGORITHMS.get(algorithm, {}))
    options.update(settings)
    name = options.pop("balance", algorithm)
    factory = find_factory(name)
    if name == "random":
        rng = _random.Random(seed)
        factory = BalancerFactory(
            "random", lambda servers, args: Random(servers, args, rng=rng)
        )
    return BackendState(BackendSpec("be", tuple(specs), balance=name, **options), factory)


def take(state: BackendState, client: Optional[str] = None) -> Optional[Server]:
    """
    Pick a server for a new connection from C{client} and count the
    connection, as the relay does; return the server or C{None}.
    """
    server = state.pick(client)
    if server is not None:
        state.take(server)
    return server


def clients(count: int, seed: int = 1) -> List[str]:
    """
    Return C{count} distinct pseudo-random IPv4 client addresses.
    """
    rng = _random.Random(seed)
    seen = set()
    while len(seen) < count:
        seen.add(".".join(str(rng.randrange(256)) for _ in range(4)))
    return sorted(seen)


def balancer_of(state: BackendState) -> IBalancer:
    """
    Return the backend's balancer.
    """
    return state.balancer  # type: ignore[no-any-return]
