"""
Choosing a backend by TLS server name: C{use_backend NAME = sni HOST ...}.

A pattern is a host name (C{db.example.com}) or a wildcard
(C{*.example.com}, matching any name that ends with C{.example.com}, at any
depth, but not C{example.com} itself).  Matching ignores case.  The rules
are tried in the order they are written and the first that matches wins,
as HAProxy does with its C{use_backend} rules; a lookup costs one dictionary
probe per label of the name, however many rules there are.
"""

from __future__ import annotations

from typing import Dict, Generic, Iterable, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")


def is_wildcard(pattern: str) -> bool:
    """
    Whether C{pattern} is a wildcard such as C{*.example.com}.
    """
    return pattern.startswith("*.")


class SniRoutes(Generic[T]):
    """
    Ordered rules mapping server names to targets (backends).

    @ivar rules: The rules as given: C{(target, patterns)} in order.
    """

    def __init__(self, rules: Iterable[Tuple[T, Sequence[str]]]) -> None:
        """
        @param rules: C{(target, patterns)} pairs, first match first.
        """
        self.rules = tuple((target, tuple(patterns)) for target, patterns in rules)
        self._exact: Dict[str, Tuple[int, T]] = {}
        self._suffix: Dict[str, Tuple[int, T]] = {}
        for order, (target, patterns) in enumerate(self.rules):
            for pattern in patterns:
                pattern = pattern.lower()
                if is_wildcard(pattern):
                    self._suffix.setdefault(pattern[1:], (order, target))
                else:
                    self._exact.setdefault(pattern, (order, target))

    def __bool__(self) -> bool:
        """
        Whether there is any rule.
        """
        return bool(self.rules)

    def lookup(self, name: str) -> Optional[T]:
        """
        The target of the first rule matching C{name}, or C{None}.
        """
        name = name.lower()
        best = self._exact.get(name)
        if self._suffix:
            dot = name.find(".")
            while dot >= 0:
                found = self._suffix.get(name[dot:])
                if found is not None and (best is None or found[0] < best[0]):
                    best = found
                dot = name.find(".", dot + 1)
        return None if best is None else best[1]
