"""
The keys of HAProxy's server-state file: C{server-state-file} and
C{server-state-base} in C{[global]}, C{load-server-state-from-file} and
C{server-state-file-name} in C{[defaults]} or a backend.

The file itself (what C{show servers state} prints, loaded at start and
reload) is L{l4lb.statefile}.
"""

from __future__ import annotations

from typing import Callable, Dict

from l4lb.config.errors import InvalidValue
from l4lb.config.units import parse_choice

#: The C{[global]} keys this module parses.
STATE_GLOBAL_KEYS = ("server-state-base", "server-state-file")

#: The C{[defaults]} and backend keys this module parses.
STATE_PROXY_KEYS = ("load-server-state-from-file", "server-state-file-name")

#: How C{load-server-state-from-file} is written.
LOAD_CHOICES = ("global", "local", "none")


def parse_path(text: str) -> str:
    """
    A file or directory name: one word, as written (relative names are
    found under C{server-state-base} when the file is read).
    """
    path = text.strip()
    if not path or any(c.isspace() for c in path):
        raise InvalidValue(
            f"{text.strip()!r} is not a file name; expected one path such as"
            " /var/lib/l4lb/state"
        )
    return path


def parse_file_name(text: str) -> str:
    """
    C{server-state-file-name}: a file name, or C{use-backend-name} (the
    backend's name, which is also the default).
    """
    return parse_path(text)


#: Parsers of the values of this module's keys.
STATE_VALUES: Dict[str, Callable[[str], object]] = {
    "server-state-file": parse_path,
    "server-state-base": parse_path,
    "load-server-state-from-file": lambda text: parse_choice(text, LOAD_CHOICES),
    "server-state-file-name": parse_file_name,
}
