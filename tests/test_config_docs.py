"""
The configuration reference (docs/configuration.md) documents every section,
key and server option that the parser accepts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from l4lb.config.keywords import ALL_KEYS, SECTION_KINDS
from l4lb.config.servers import OPTION_WORDS

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


@pytest.fixture(scope="module")
def text() -> str:
    """
    The reference's text.
    """
    return DOC.read_text()


def test_every_key_is_documented(text: str) -> None:
    """Each key of each section appears in backquotes in the reference."""
    missing = [k for k in sorted(ALL_KEYS) if f"`{k}" not in text]
    assert missing == []


def test_every_server_option_is_documented(text: str) -> None:
    """Each server option word has a row in the server options table."""
    missing = [w for w in OPTION_WORDS if f"| `{w}` |" not in text]
    assert missing == []


def test_every_section_is_documented(text: str) -> None:
    """Each section kind has its own heading."""
    for kind in SECTION_KINDS:
        assert f"## `[{kind}" in text
