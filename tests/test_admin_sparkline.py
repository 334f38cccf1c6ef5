"""
Tests for L{l4lb.admin.sparkline}: series drawn as small inline SVG
polylines.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import List, Sequence, Tuple

from l4lb.admin.sparkline import HEIGHT, WIDTH, sparkline

_SVG = "{http://www.w3.org/2000/svg}"


def points(svg: str, width: int = WIDTH) -> List[Tuple[int, int]]:
    """
    Parse C{svg} as XML (it must be well-formed SVG) and return its
    polyline's points, or an empty list when it has none.
    """
    root = ET.fromstring(svg)
    assert root.tag == _SVG + "svg"
    assert root.get("viewBox") == f"0 0 {width} {HEIGHT}"
    lines = root.findall(_SVG + "polyline")
    if not lines:
        return []
    assert len(lines) == 1
    pairs = [p.split(",") for p in lines[0].get("points", "").split()]
    return [(int(x), int(y)) for x, y in pairs]


def title(svg: str) -> str:
    """
    The tooltip of C{svg}.
    """
    node = ET.fromstring(svg).find(_SVG + "title")
    assert node is not None
    return node.text or ""


def test_valid_svg_within_its_box() -> None:
    """
    A series becomes a well-formed SVG element with one polyline whose
    points all lie inside the view box, left to right.
    """
    values: Sequence[float] = [float(i % 9) for i in range(180)]
    drawn = points(sparkline(values, 180, "sessions/s"))
    assert drawn
    assert all(0 <= x < WIDTH and 0 <= y < HEIGHT for x, y in drawn)
    assert [x for x, _ in drawn] == sorted(x for x, _ in drawn)


def test_scaled_to_the_highest_value() -> None:
    """
    The highest value touches the top (one pixel of margin), zero the
    bottom, and values in between in proportion.
    """
    drawn = dict(points(sparkline([0.0, 50.0, 100.0], 3, width=3), 3))
    assert drawn == {0: HEIGHT - 1, 1: HEIGHT - 1 - (HEIGHT - 2) // 2, 2: 1}


def test_empty_and_unknown_series() -> None:
    """
    A series with no known value (empty, or only NaN) is an empty
    sparkline that says so, not an error.
    """
    for values in ([], [math.nan] * 10):
        svg = sparkline(values, 180)
        assert points(svg) == []
        assert title(svg) == "no data yet"


def test_flat_series_is_two_points_at_the_bottom() -> None:
    """
    A series of zeros is a flat line at the bottom, reduced to its two
    ends; a flat non-zero series is a line at the top.
    """
    assert points(sparkline([0.0] * 180, 180)) == [(0, HEIGHT - 1), (WIDTH - 1, HEIGHT - 1)]
    assert points(sparkline([3.0] * 180, 180)) == [(0, 1), (WIDTH - 1, 1)]


def test_a_spike_survives_the_squeeze() -> None:
    """
    Several samples share a pixel column: the column shows their highest,
    so a one-sample spike is still drawn.
    """
    values = [0.0] * 180
    values[100] = 7.0
    drawn = points(sparkline(values, 180))
    assert (100 * WIDTH // 180, 1) in drawn


def test_short_series_at_the_right_end() -> None:
    """
    A series shorter than the window (an object sampled for a minute) is
    drawn at the right end, where the most recent samples of a full one
    are; unknown samples are left out.
    """
    drawn = points(sparkline([math.nan, 1.0, 2.0], 180))
    assert [x for x, _ in drawn] == [58, 59]
    single = points(sparkline([4.0], 180))
    assert len(single) == 2 and single[-1] == (59, 1)


def test_tooltip_gives_last_and_highest() -> None:
    """
    The tooltip names the last and the highest value with the unit.
    """
    svg = sparkline([1.0, 12.5, 0.5], 3, "sessions/s")
    assert title(svg) == "now 0.5, max 12 sessions/s"
