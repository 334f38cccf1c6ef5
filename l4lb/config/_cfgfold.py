"""
The C{lb.ini} sections a C{haproxy.cfg} becomes, and HAProxy's C{defaults}
rules written in C{lb.ini}'s terms.

HAProxy gives each proxy the last C{defaults} section before it (or the one
named by C{from NAME}); C{lb.ini} has one C{[defaults]} for every proxy.
When every proxy takes the same C{defaults}, it becomes C{[defaults]};
otherwise each proxy receives the values of its own (L{fold_defaults}).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import attr

from l4lb.config.errors import InvalidValue
from l4lb.config.keywords import DEFAULTS, GLOBAL, KEYS, split_key, unknown_key_message

#: Records a problem: line, section, key, message, and whether a warning.
Report = Callable[..., None]


def _ident(key: str, has_value: bool) -> Optional[Tuple[str, Optional[str]]]:
    try:
        return split_key(key, has_value).ident
    except InvalidValue:
        return None


@attr.s(slots=True, auto_attribs=True)
class OutItem:
    """
    One C{lb.ini} entry, comment or blank line, and where it came from.

    @ivar line: The C{haproxy.cfg} line.
    @ivar key: The key; empty for a comment or a blank line.
    @ivar value: The value text, or C{None} for a key written alone.
    @ivar comment: The comment of the line, or C{None}.
    @ivar more: Continuation lines of the value: C{(line, text, comment)}.
    """

    line: int
    key: str
    values: Tuple[str, ...]
    comment: Optional[str] = None
    more: List[Tuple[int, str, Optional[str]]] = attr.Factory(list)

    @property
    def value(self) -> Optional[str]:
        """
        The value text on the key's line, or C{None} for a bare key.
        """
        return self.values[0] if self.values else None

    @property
    def ident(self) -> Optional[Tuple[str, Optional[str]]]:
        """
        What identifies the key in a section (L{split_key}).
        """
        return _ident(self.key, bool(self.values)) if self.key else None

    def write(self, emit: Callable[[str, int], None]) -> None:
        """
        Write the item as C{lb.ini} lines with C{emit(text, line)}.
        """
        tail = f"  #{self.comment}" if self.comment else ""
        if not self.key:
            emit(f"#{self.comment}" if self.comment is not None else "", self.line)
            return
        emit(f"{self.key} = {self.value}{tail}" if self.values else f"{self.key}{tail}", self.line)
        for line, text, comment in self.more:
            emit(f"    {text}" + (f"  #{comment}" if comment else ""), line)


@attr.s(slots=True, auto_attribs=True)
class OutSection:
    """
    One C{lb.ini} section being written.

    @ivar defaults: The C{defaults} section HAProxy gives this proxy.
    """

    kind: str
    name: str
    line: int
    comment: Optional[str]
    items: List[OutItem] = attr.Factory(list)
    defaults: Optional["OutSection"] = None

    @property
    def header(self) -> str:
        """
        The C{lb.ini} header, without brackets.
        """
        if self.kind in (GLOBAL, DEFAULTS):
            return self.kind
        return f"{self.kind} {self.name}"

    def find(self, ident: Optional[Tuple[str, Optional[str]]]) -> Optional[OutItem]:
        """
        The item with this identity, if any.
        """
        if ident is None:
            return None
        return next((i for i in self.items if i.key and i.ident == ident), None)

    def has(self, keyword: str) -> bool:
        """
        Whether the section sets C{keyword}.
        """
        return any(i.key and i.ident and i.ident[0] == keyword for i in self.items)

    def add(self, item: OutItem) -> Optional[OutItem]:
        """
        Add an entry.  A repeated key replaces the earlier one, as in
        HAProxy (the earlier is returned); C{use_backend} lines for the same
        backend add their host names; repeated server names are kept for
        the parser to report.
        """
        ident = item.ident
        earlier = self.find(ident)
        if earlier is None or (ident is not None and ident[0] == "server"):
            self.items.append(item)
            return None
        if ident is not None and ident[0] == "use_backend":
            earlier.values = (f"{earlier.value} {' '.join((item.value or '').split()[1:])}",)
            return None
        self.items[self.items.index(earlier)] = item
        return earlier

    def merge(self, item: OutItem) -> None:
        """
        Add a line to a value of several lines (C{bind}, C{tcp-check}).
        """
        earlier = self.find(item.ident)
        if earlier is None:
            self.items.append(item)
        else:
            earlier.more.append((item.line, item.value or "", item.comment))


def fold_defaults(sections: List[OutSection], report: Report) -> List[OutSection]:
    """
    The sections to write: one C{[defaults]} when every proxy takes the
    same C{defaults} section, else each proxy with its own defaults' values
    and no C{[defaults]}.
    """
    defaults = [s for s in sections if s.kind == DEFAULTS]
    proxies = [s for s in sections if s.kind in ("frontend", "backend", "listen")]
    taken = {id(p.defaults) for p in proxies}
    if not defaults:
        return [s for s in sections if s.kind]
    if len(defaults) == 1 and taken <= {id(defaults[0])}:
        return [s for s in sections if s.kind]
    for section in defaults:
        if id(section) not in taken:
            message = "no proxy takes the values of this defaults section"
            report(section.line, "defaults", "", message, warning=True)
        for item in section.items:
            ident = item.ident
            if item.key and ident is not None and ident[0] not in KEYS[DEFAULTS]:
                message = unknown_key_message(split_key(item.key, bool(item.values)), DEFAULTS)
                report(item.line, "defaults", item.key, message)
    for proxy in proxies:
        source = proxy.defaults
        if source is None:
            continue
        inherited: List[OutItem] = []
        for item in source.items:
            ident = item.ident
            if not item.key or ident is None or ident[0] not in KEYS[proxy.kind]:
                continue
            own = proxy.find(ident)
            if own is None:
                inherited.append(attr.evolve(item, more=list(item.more)))
            elif ident[0] == "default-server" and item.value and own.value:
                own.values = (f"{item.value} {own.value}",)
        proxy.items[:0] = inherited
    return [s for s in sections if s.kind and s.kind != DEFAULTS]
