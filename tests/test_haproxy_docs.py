"""
The migration guide (docs/haproxy.md) names every keyword l4lb reads and
every HAProxy keyword it refuses, and its examples are what l4lb prints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Set

import pytest

from l4lb.config.haproxykeys import HTTP_ONLY, NOT_IMPLEMENTED, NOTED, OTHER_SECTIONS, PROCESS
from l4lb.config.keywords import ALL_KEYS, SECTION_KINDS

DOC = Path(__file__).resolve().parent.parent / "docs" / "haproxy.md"


@pytest.fixture(scope="module")
def documented() -> Set[str]:
    """
    Every keyword the guide writes in backquotes, with alternatives
    (C{timeout connect|client}) spelled out.
    """
    prose = re.sub(r"```.*?```", " ", DOC.read_text(), flags=re.S)
    text = " ".join(prose.split())
    names: Set[str] = set()
    for span in re.findall(r"`([^`]+)`", text):
        parts = span.split("\\|")
        head = parts[0]
        prefix = head.rsplit(" ", 1)[0] + " " if " " in head else ""
        for part in [head] + [prefix + p for p in parts[1:]]:
            names.add(part.strip())
    return names


def is_documented(keyword: str, names: Set[str]) -> bool:
    """
    Whether C{keyword} starts one of the documented spans, or a span ending
    in C{*} covers it.
    """
    return any(
        name == keyword
        or name.startswith(keyword + " ")
        or (name.endswith("*") and keyword.startswith(name[:-1]))
        for name in names
    )


def test_every_lb_ini_key_has_its_haproxy_row(documented: Set[str]) -> None:
    """Each key l4lb reads appears in the guide's keyword tables."""
    missing = sorted(k for k in ALL_KEYS | set(SECTION_KINDS) if not is_documented(k, documented))
    assert missing == [], "add these to the keyword tables of docs/haproxy.md"


def test_every_refused_keyword_is_listed(documented: Set[str]) -> None:
    """Each HTTP-only, unsupported or process keyword the reader refuses is in the guide."""
    refused = set(HTTP_ONLY) | set(NOT_IMPLEMENTED) | set(PROCESS) | set(NOTED) | set(OTHER_SECTIONS)
    missing = sorted(k for k in refused - set(SECTION_KINDS) if not is_documented(k, documented))
    assert missing == [], "add these to docs/haproxy.md"
