"""
Reading the Grafana dashboard in C{etc/}: every PromQL query it makes, and
the metric names and labels each query uses, for the tests that compare
them with what l4lb exports.

The PromQL reader is small on purpose: it knows the syntax the dashboard
uses (selectors with matchers, range windows, functions, aggregations with
C{by}/C{without}, binary operators, numbers) and Grafana's
C{label_values(...)} variable queries.  Any bare name that is not a
keyword counts as a metric name, so a misspelt metric fails the tests
rather than passing them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import attr

ROOT = Path(__file__).resolve().parent.parent

#: The committed dashboard.
DASHBOARD = ROOT / "etc" / "grafana-l4lb.json"

#: The script that writes it.
GENERATOR = ROOT / "etc" / "grafana" / "make_dashboard.py"

#: Labels Prometheus adds to every series of a scrape target; l4lb does
#: not export them.
TARGET_LABELS = frozenset({"instance", "job"})

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<window>\[[^\]]*\])
    | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)
    | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){},])
    | (?P<space>\s+)
    """,
    re.VERBOSE,
)

#: Words that are neither metrics nor functions.
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset"})

#: Aggregations, which may put C{by (...)} before their parentheses.
_AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
     "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)

#: Words followed by a list of label names in parentheses.
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})


@attr.s(frozen=True, auto_attribs=True)
class Selector:
    """
    One metric a query reads.

    @ivar metric: Its name.
    @ivar matchers: (label, operator, value) of each matcher in its braces.
    """

    metric: str
    matchers: Tuple[Tuple[str, str, str], ...]


@attr.s(frozen=True, auto_attribs=True)
class Query:
    """
    One query of the dashboard.

    @ivar where: Which panel or variable makes it.
    @ivar expr: The PromQL text.
    @ivar selectors: Every metric it reads.
    @ivar labels: Every label it needs on those metrics: matched, grouped
        by, or shown in the legend.
    """

    where: str
    expr: str
    selectors: Tuple[Selector, ...]
    labels: frozenset


def _tokens(expr: str) -> List[Tuple[str, str]]:
    tokens: List[Tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read {expr[position:]!r} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


def _matchers(
    tokens: List[Tuple[str, str]], start: int
) -> Tuple[Tuple[Tuple[str, str, str], ...], int]:
    """
    The matchers of the braces opening at C{tokens[start]}, and the index
    after the closing brace.
    """
    found = []
    index = start + 1
    while tokens[index][1] != "}":
        if tokens[index][1] == ",":
            index += 1
            continue
        label, op, value = tokens[index], tokens[index + 1], tokens[index + 2]
        if label[0] != "name" or op[0] != "op" or value[0] != "string":
            raise ValueError(f"bad matcher near {label[1]!r}")
        found.append((label[1], op[1], value[1][1:-1]))
        index += 3
    return tuple(found), index + 1


def parse(expr: str) -> Tuple[Tuple[Selector, ...], Set[str]]:
    """
    The metrics C{expr} reads, and the labels it groups by.
    """
    tokens = _tokens(expr)
    selectors: List[Selector] = []
    grouping: Set[str] = set()
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if kind == "name" and text in _LABEL_LISTS:
            if following != "(":
                raise ValueError(f"{text} without a label list in {expr!r}")
            index += 2
            while tokens[index][1] != ")":
                if tokens[index][0] == "name":
                    grouping.add(tokens[index][1])
                index += 1
            index += 1
        elif kind == "name" and text in _KEYWORDS:
            index += 1
        elif kind == "name" and (following == "(" or text in _AGGREGATIONS):
            index += 1  # a function or an aggregation
        elif kind == "name":
            matchers: Tuple[Tuple[str, str, str], ...] = ()
            index += 1
            if following == "{":
                matchers, index = _matchers(tokens, index)
            selectors.append(Selector(text, matchers))
        elif text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        else:
            index += 1
    return tuple(selectors), grouping


_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<expr>.*),\s*(?P<label>[A-Za-z_]\w*)\s*\)\s*$")
_LEGEND = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


def _query(where: str, expr: str, extra: Set[str]) -> Query:
    selectors, grouping = parse(expr)
    labels = set(extra) | grouping
    for selector in selectors:
        labels |= {label for label, _, _ in selector.matchers}
    return Query(where, expr, selectors, frozenset(labels))


def _panels(panels: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def queries(dashboard: Dict[str, Any]) -> List[Query]:
    """
    Every query of C{dashboard}: each panel target's C{expr} and each
    query variable's C{label_values(...)}.
    """
    found: List[Query] = []
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            where = f"panel {panel.get('title')!r} target {target.get('refId')}"
            legend = set(_LEGEND.findall(target.get("legendFormat", "")))
            found.append(_query(where, target["expr"], legend))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        text = variable["query"]
        text = text["query"] if isinstance(text, dict) else text
        match = _LABEL_VALUES.match(text)
        if match is None:
            raise ValueError(f"variable {variable['name']}: not label_values(...): {text!r}")
        found.append(_query(f"variable {variable['name']}", match["expr"], {match["label"]}))
    return found


def load(path: Path = DASHBOARD) -> Dict[str, Any]:
    """
    The dashboard's JSON.
    """
    result: Dict[str, Any] = json.loads(path.read_text())
    return result
