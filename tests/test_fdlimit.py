"""
Tests for L{l4lb.fdlimit}: the soft file-descriptor limit is raised to the
hard limit at start, never lowered, and a limit too small for C{maxconn}
is reported with the number needed.
"""

from __future__ import annotations

import resource
from typing import List, Tuple

from l4lb.fdlimit import (
    FD_RESERVE,
    NofileLimit,
    needed_descriptors,
    raise_nofile_limit,
    shortage_warning,
)

INF = resource.RLIM_INFINITY


class FakeLimits:
    """
    C{getrlimit}/C{setrlimit} over one remembered C{(soft, hard)} pair.
    """

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.limits = (soft, hard)
        self.refuse = refuse
        self.calls: List[Tuple[int, int]] = []

    def getrlimit(self, which: int) -> Tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: Tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        self.calls.append(limits)
        if self.refuse:
            raise ValueError("not allowed to raise maximum limit")
        self.limits = limits


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    """
    A soft limit below the hard one is set to the hard one, which is kept.
    """
    fake = FakeLimits(1024, 4096)
    limit = raise_nofile_limit(fake.getrlimit, fake.setrlimit)
    assert fake.calls == [(4096, 4096)]
    assert limit == NofileLimit(before=1024, soft=4096, hard=4096)


def test_infinite_hard_limit_is_the_largest() -> None:
    """
    An unlimited hard limit is raised to as unlimited.
    """
    fake = FakeLimits(1024, INF)
    limit = raise_nofile_limit(fake.getrlimit, fake.setrlimit)
    assert fake.calls == [(INF, INF)]
    assert limit.soft == INF


def test_limit_already_at_hard_limit_is_not_touched() -> None:
    """
    Nothing is set when the soft limit already equals the hard one.
    """
    fake = FakeLimits(4096, 4096)
    limit = raise_nofile_limit(fake.getrlimit, fake.setrlimit)
    assert fake.calls == []
    assert limit == NofileLimit(4096, 4096, 4096)


def test_never_lowered() -> None:
    """
    A soft limit above the hard one (possible for an unlimited soft limit
    reported with a finite hard one) is never lowered.
    """
    fake = FakeLimits(INF, 4096)
    limit = raise_nofile_limit(fake.getrlimit, fake.setrlimit)
    assert fake.calls == []
    assert limit.soft == INF


def test_refusal_keeps_the_limit_and_says_why() -> None:
    """
    When the kernel refuses, the soft limit stays and the reason is kept.
    """
    fake = FakeLimits(1024, INF, refuse=True)
    limit = raise_nofile_limit(fake.getrlimit, fake.setrlimit)
    assert limit.soft == 1024
    assert limit.error == "not allowed to raise maximum limit"


def test_needed_is_two_per_connection_plus_the_reserve() -> None:
    """
    Each relayed connection holds two sockets; the reserve comes on top.
    """
    assert needed_descriptors(4000) == 8000 + FD_RESERVE


def test_warning_names_what_is_needed() -> None:
    """
    maxconn 4000 under a 4096 limit warns with the descriptors needed, the
    limit and the connections that fit.
    """
    warning = shortage_warning(NofileLimit(1024, 4096, 4096), 4000)
    assert warning is not None
    assert f"maxconn 4000 needs {8000 + FD_RESERVE} file descriptors" in warning
    assert "the limit is 4096" in warning
    assert f"about {(4096 - FD_RESERVE) // 2}" in warning


def test_no_warning_when_the_limit_is_enough() -> None:
    """
    A limit of exactly 2 * maxconn + reserve, or an unlimited one, is enough.
    """
    assert shortage_warning(NofileLimit(0, 2 * 100 + FD_RESERVE, 10**6), 100) is None
    assert shortage_warning(NofileLimit(0, 2 * 100 + FD_RESERVE - 1, 10**6), 100) is not None
    assert shortage_warning(NofileLimit(0, INF, INF), 10**9) is None
