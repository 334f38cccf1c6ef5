"""
Comparing configurations read from different files: what they mean, not
where each value was written.
"""

from __future__ import annotations

from typing import Any, Dict

import attr


def unlined(value: Any) -> Any:
    """
    C{value} with every C{line} and C{source} of the configuration objects
    in it set to 0 and C{""}, so that two files that mean the same compare
    equal.
    """
    if isinstance(value, tuple):
        return tuple(unlined(v) for v in value)
    if not attr.has(type(value)):
        return value
    changes: Dict[str, Any] = {}
    for field in attr.fields(type(value)):
        old = getattr(value, field.name)
        if field.name == "line" and isinstance(old, int):
            changes["line"] = 0
        elif field.name == "source" and isinstance(old, str):
            changes["source"] = ""
        else:
            changes[field.name] = unlined(old)
    return attr.evolve(value, **changes)
