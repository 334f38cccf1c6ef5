"""
Sparklines: a series of numbers drawn as a small inline SVG polyline,
with no script, no style element and no external asset, so that a page
under a strict Content-Security-Policy shows it.

The series is squeezed into one point per pixel column (the highest value
of the samples the column covers, so that a short spike still shows), the
line scaled so that the series' highest value touches the top, and the
points of a horizontal run reduced to its two ends, which keeps a quiet
series a few bytes long.
"""

from __future__ import annotations

import math
from html import escape
from typing import List, Optional, Sequence, Tuple

#: Width and height in pixels.
WIDTH = 60
HEIGHT = 16


def _columns(values: Sequence[float], capacity: int, width: int) -> List[Optional[float]]:
    """
    The highest known value per pixel column, or C{None} for a column with
    no known value; the series is right-aligned in a window of
    C{capacity} samples, so that a series kept for a short time sits at
    the right end, as the most recent part of a full one would.
    """
    capacity = max(capacity, len(values), 1)
    offset = capacity - len(values)
    columns: List[Optional[float]] = [None] * width
    for i, value in enumerate(values):
        if math.isnan(value):
            continue
        x = (offset + i) * width // capacity
        known = columns[x]
        if known is None or value > known:
            columns[x] = value
    return columns


def _compact(points: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """
    C{points} without the inner points of horizontal runs.
    """
    kept: List[Tuple[int, int]] = []
    for i, point in enumerate(points):
        if 0 < i < len(points) - 1 and points[i - 1][1] == point[1] == points[i + 1][1]:
            continue
        kept.append(point)
    return kept


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def sparkline(
    values: Sequence[float],
    capacity: int = 0,
    label: str = "",
    colour: str = "#2f6db5",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """
    The SVG element drawing C{values} (oldest first; C{NaN} for unknown
    samples, left out).

    @param capacity: How many samples a full series has (at least
        C{len(values)}): a shorter series is drawn at the right end.
    @param label: What the values are (C{sessions/s}), for the tooltip
        that gives the last and highest values.
    @return: An C{<svg>} element: empty when no value is known, a flat
        line at the bottom when every known value is zero.
    """
    # No width and height: the page's style sheet sizes the element, which
    # keeps each of the thousands of sparklines of a large page shorter.
    head = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}">'

    columns = _columns(values, capacity, width)
    known = [v for v in columns if v is not None]
    if not known:
        return head + "<title>no data yet</title></svg>"
    top = max(known)
    # One pixel of margin at the top and bottom, so the stroke is not cut.
    span = height - 2
    points = [
        (x, height - 1 - (round(v / top * span) if top > 0 else 0))
        for x, v in enumerate(columns)
        if v is not None
    ]
    if len(points) == 1:
        # A single sample: a short dash, still visible.
        x, y = points[0]
        points = [(max(0, x - 1), y), (x, y)]
    text = " ".join(f"{x},{y}" for x, y in _compact(points))
    last = next(v for v in reversed(values) if not math.isnan(v))
    title = escape(f"now {_number(last)}, max {_number(top)} {label}".strip())
    return (
        f"{head}<title>{title}</title>"
        f'<polyline points="{text}" fill="none" stroke="{colour}"/></svg>'
    )
