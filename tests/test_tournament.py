"""
Tests for L{l4lb.balancers.tournament}: the highest line found by the
kinetic tournament is always the one a comparison of every line finds.
"""

from __future__ import annotations

import random as _random
from typing import Dict, List, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from l4lb.balancers.tournament import Tournament


def _highest(lines: Dict[int, Tuple[int, int]], time: int) -> int:
    """
    Return the weight of the highest line at C{time}, the lowest order on
    a tie, by comparing them all; 0 when there is none.
    """
    if not lines:
        return 0
    return min(lines, key=lambda w: (-(lines[w][0] + w * time), lines[w][1]))


_moves = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "remove", "tick", "tick", "tick", "clear"]),
        st.integers(min_value=1, max_value=40),
        st.integers(min_value=-500, max_value=500),
        st.integers(min_value=0, max_value=6),
    ),
    max_size=120,
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(moves=_moves, size=st.sampled_from([4, 64]))
def test_same_winner_as_comparing_every_line(
    moves: List[Tuple[str, int, int, int]], size: int
) -> None:
    """
    Whatever lines are put, moved or removed between queries at times that
    only go forward (or start again after a clear), and even past the
    tree's first size, the tournament names the line a comparison of
    every line names, ties going to the lowest order.
    """
    tree = Tournament(size)
    lines: Dict[int, Tuple[int, int]] = {}
    time = 1
    for move, weight, base, step in moves:
        if move == "put":
            # Orders are unique per line, as file orders are per server.
            lines[weight] = (base, weight * 7 % 41)
            tree.put(weight, base, weight * 7 % 41)
        elif move == "remove":
            lines.pop(weight, None)
            tree.remove(weight)
        elif move == "clear":
            lines.clear()
            tree.clear()
            time = 1
        else:
            time += step
        assert tree.best(time) == _highest(lines, time)


def test_many_lines_over_a_long_run() -> None:
    """
    With 256 lines, the winner's line dropping after each win as in a
    round robin, thousands of queries agree with comparing every line.
    """
    rng = _random.Random(5)
    tree = Tournament()
    lines = {w: (rng.randrange(-1000, 1000), rng.randrange(10_000)) for w in range(1, 257)}
    for weight, (base, order) in lines.items():
        tree.put(weight, base, order)
    total = sum(lines)
    for time in range(1, 5000):
        winner = tree.best(time)
        assert winner == _highest(lines, time)
        base, order = lines[winner]
        lines[winner] = (base - total, order)
        tree.put(winner, base - total, order)
