"""
The arguments of C{show stat} and C{show info}, as HAProxy takes them:

    show stat [domain proxy] [{<iid>|<proxy>} <type> <sid>] [typed|json] [up|no-maint]
    show info [typed|json]

An argument l4lb does not know is refused with a one-line reason rather
than ignored, so that a script asking for a layout never gets another one
without noticing.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import attr

from l4lb.admin.fields import TYPE_BACKEND, TYPE_FRONTEND, TYPE_SERVER
from l4lb.admin.render import stat_csv
from l4lb.admin.stats import Row
from l4lb.admin.typed import info_json, info_typed, stat_typed, stat_typed_json

STAT_USAGE = (
    "show stat [domain proxy] [{<iid>|<proxy>} <type> <sid>] [typed|json] [up|no-maint]"
)
INFO_USAGE = "show info [typed|json]"

# The bit of the <type> selector for each row type.
_TYPE_BITS = {str(TYPE_FRONTEND): 1, str(TYPE_BACKEND): 2, str(TYPE_SERVER): 4, "3": 8}

_FORMATS = ("typed", "json")
_MODIFIERS = ("up", "no-maint")


class ShowError(Exception):
    """
    Arguments that C{show stat} or C{show info} cannot take; the message
    is one line for the user.
    """


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StatRequest:
    """
    What C{show stat} was asked for.

    @ivar layout: C{"csv"}, C{"typed"} or C{"json"}.
    @ivar proxy: A proxy's C{iid} or name, or C{None} for every proxy.
    @ivar types: The C{<type>} bit mask (1 frontends, 2 backends,
        4 servers); -1 for every type.
    @ivar sid: A server's C{sid}, or -1 for every server.
    @ivar hide_down: C{up}: leave out servers that are down or in
        maintenance.
    @ivar hide_maint: C{no-maint}: leave out servers in maintenance.
    """

    layout: str = "csv"
    proxy: Optional[str] = None
    types: int = -1
    sid: int = -1
    hide_down: bool = False
    hide_maint: bool = False


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ShowError(f"'{text}' is not {what}; usage: {STAT_USAGE}.") from None


def _layout(args: Sequence[str], usage: str, also: Tuple[str, ...] = ()) -> Tuple[str, List[str]]:
    """
    The layout asked for among C{args} (C{csv} when none), and the other
    arguments in C{also}; anything else is refused.
    """
    layout = "csv"
    rest: List[str] = []
    for word in args:
        lowered = word.lower()
        if lowered in _FORMATS:
            if layout != "csv" and layout != lowered:
                raise ShowError(f"Choose one of 'typed' and 'json'; usage: {usage}.")
            layout = lowered
        elif lowered in also:
            rest.append(lowered)
        elif lowered in ("desc", "float"):
            raise ShowError(f"'{word}' is not supported by l4lb; usage: {usage}.")
        else:
            raise ShowError(f"Unknown argument '{word}'; usage: {usage}.")
    return layout, rest


def parse_show_stat(args: Sequence[str]) -> StatRequest:
    """
    Read the arguments of C{show stat}.

    @raise ShowError: When one is unknown or malformed.
    """
    words = list(args)
    if words and words[0].lower() == "domain":
        domain = words[1].lower() if len(words) > 1 else ""
        if domain == "dns":
            raise ShowError("l4lb has no 'dns' statistics domain; only 'proxy'.")
        if domain != "proxy":
            raise ShowError("Invalid statistics domain.")
        words = words[2:]
    proxy: Optional[str] = None
    types = sid = -1
    keywords = _FORMATS + _MODIFIERS + ("desc",)
    if words and words[0].lower() not in keywords:
        if len(words) == 1:
            raise ShowError(f"Unknown argument '{words[0]}'; usage: {STAT_USAGE}.")
        if len(words) < 3:
            raise ShowError(
                f"A selection takes three arguments, <iid> <type> <sid>; usage: {STAT_USAGE}."
            )
        proxy = None if words[0] == "-1" else words[0]
        types = _integer(words[1], "an object type (-1, or a sum of 1, 2 and 4)")
        sid = _integer(words[2], "a server id (-1 for every server)")
        words = words[3:]
    layout, modifiers = _layout(words, STAT_USAGE, _MODIFIERS)
    return StatRequest(
        layout=layout,
        proxy=proxy,
        types=types,
        sid=sid,
        hide_down="up" in modifiers,
        hide_maint="no-maint" in modifiers,
    )


def _proxy_iid(request: StatRequest, rows: Sequence[Row]) -> Optional[str]:
    """
    The C{iid} selected by C{request}, from a proxy's name or number.

    @raise ShowError: C{No such proxy.} when it names none.
    """
    if request.proxy is None:
        return None
    for row in rows:
        if row.get("pxname") == request.proxy:
            return row.get("iid")
    if request.proxy.isdigit() and int(request.proxy) > 0:
        return str(int(request.proxy))
    raise ShowError("No such proxy.")


def _shown(request: StatRequest, iid: Optional[str], row: Row) -> bool:
    if iid is not None and row.get("iid") != iid:
        return False
    kind = row.get("type", "")
    if request.types != -1 and not request.types & _TYPE_BITS.get(kind, 0):
        return False
    if kind != str(TYPE_SERVER):
        return True
    if request.sid != -1 and row.get("sid") != str(request.sid):
        return False
    status = row.get("status", "")
    if (request.hide_maint or request.hide_down) and status.startswith("MAINT"):
        return False
    return not (request.hide_down and status.startswith("DOWN"))


def select_rows(request: StatRequest, rows: Sequence[Row]) -> List[Row]:
    """
    The rows C{request} selects, in their order.

    @raise ShowError: When it names a proxy that does not exist.
    """
    iid = _proxy_iid(request, rows)
    return [row for row in rows if _shown(request, iid, row)]


def show_stat(args: Sequence[str], rows: Callable[[], Sequence[Row]]) -> str:
    """
    The answer of C{show stat ARGS}: the selected rows in the layout asked
    for.

    @param rows: Reads every row (called once the arguments are known to
        be valid).
    @raise ShowError: When the arguments are invalid.
    """
    request = parse_show_stat(args)
    selected = select_rows(request, rows())
    if request.layout == "typed":
        return stat_typed(selected)
    if request.layout == "json":
        return stat_typed_json(selected)
    return stat_csv(selected)


def show_info(args: Sequence[str], info: Sequence[Tuple[str, str]]) -> str:
    """
    The answer of C{show info ARGS}: C{Name: value} lines, or the typed or
    JSON layout.

    @raise ShowError: When the arguments are invalid.
    """
    layout, _ = _layout(args, INFO_USAGE)
    if layout == "typed":
        return info_typed(info)
    if layout == "json":
        return info_json(info)
    return "".join(f"{name}: {value}\n" for name, value in info)
