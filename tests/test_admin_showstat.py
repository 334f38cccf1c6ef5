"""
Tests for L{l4lb.admin.showstat}: the arguments of C{show stat} and
C{show info} through the runtime API's commands: the layout words, the
selection of proxies, object types and servers, the C{up} and
C{no-maint} modifiers, and the refusal of anything else.
"""

from __future__ import annotations

from typing import List

import pytest

from l4lb.admin.commands import CommandError
from l4lb.admin.showstat import StatRequest, parse_show_stat

from tests.test_admin_commands import make, parse_stat


def names(text: str) -> List[str]:
    """
    The C{pxname/svname} of each CSV row, in order.
    """
    return [f"{row['pxname']}/{row['svname']}" for row in parse_stat(text)]


def typed_objects(text: str) -> List[str]:
    """
    The objects of a typed answer (C{S.2.1}, ...), in order, once each.
    """
    seen: List[str] = []
    for line in text.splitlines():
        obj = ".".join(line.split(".")[:3])
        if obj not in seen:
            seen.append(obj)
    return seen


@pytest.mark.parametrize(
    "line",
    [
        "show stat jsno",
        "show stat csv",
        "show stat typed extra",
        "show stat json typed",
        "show stat typed desc",
        "show stat be 4",
        "show stat be x -1",
        "show stat be -1 y",
        "show stat domain",
        "show stat domain dns",
        "show info jsno",
        "show info typed float",
    ],
)
def test_unknown_or_malformed_arguments_are_refused(line: str) -> None:
    """
    A word C{show stat} or C{show info} does not take is an error of one
    line, never the CSV (or the plain info) in its place.
    """
    _, commands = make()
    with pytest.raises(CommandError) as caught:
        commands.run(line)
    assert "\n" not in str(caught.value)


def test_errors_in_haproxy_words() -> None:
    """
    A proxy that does not exist and an unknown statistics domain get
    HAProxy's replies.
    """
    _, commands = make()
    with pytest.raises(CommandError, match=r"^No such proxy\.$"):
        commands.run("show stat nosuch -1 -1")
    with pytest.raises(CommandError, match=r"^Invalid statistics domain\.$"):
        commands.run("show stat domain nosuch")


def test_parse_words() -> None:
    """
    The layout and modifiers may come in any order after the selection;
    C{-1} selects everything.
    """
    assert parse_show_stat([]) == StatRequest()
    assert parse_show_stat(["up", "json"]) == StatRequest(layout="json", hide_down=True)
    assert parse_show_stat(["domain", "proxy", "-1", "-1", "-1", "typed"]) == StatRequest(
        layout="typed"
    )
    assert parse_show_stat(["be", "6", "2", "no-maint"]) == StatRequest(
        proxy="be", types=6, sid=2, hide_maint=True
    )


def test_select_proxy_type_and_server() -> None:
    """
    C{<iid>|<proxy> <type> <sid>} selects as HAProxy does: by name or id,
    a mask of 1 (frontends), 2 (backends) and 4 (servers), and one server
    id; in every layout.
    """
    _, commands = make()
    assert names(commands.run("show stat be -1 -1")) == ["be/s1", "be/s2", "be/BACKEND"]
    assert names(commands.run("show stat 1 -1 -1")) == ["fe/FRONTEND"]
    assert names(commands.run("show stat -1 3 -1")) == ["fe/FRONTEND", "be/BACKEND"]
    assert names(commands.run("show stat -1 4 2")) == ["be/s2"]
    assert names(commands.run("show stat 9 -1 -1")) == []
    assert typed_objects(commands.run("show stat be 4 2 typed")) == ["S.2.2"]
    one = commands.run("show stat be 4 1 json")
    assert one.startswith('[[{"objType":"Server","proxyId":2,"id":1,')


def test_up_and_no_maint() -> None:
    """
    C{up} leaves out servers down or in maintenance; C{no-maint} only
    those in maintenance; frontends and backends stay.
    """
    relay, commands = make()
    commands.run("disable server be/s1")
    assert names(commands.run("show stat no-maint")) == ["fe/FRONTEND", "be/s2", "be/BACKEND"]
    assert names(commands.run("show stat up")) == ["fe/FRONTEND", "be/s2", "be/BACKEND"]
    commands.run("enable server be/s1")
    # As the health monitor records a failed server.
    down = relay.backend.server("s2")
    down.health_text = "DOWN"
    down.set_health(False)
    assert "be/s2" in names(commands.run("show stat no-maint"))
    assert names(commands.run("show stat up")) == ["fe/FRONTEND", "be/s1", "be/BACKEND"]
    assert typed_objects(commands.run("show stat typed up")) == ["F.1.0", "S.2.1", "B.2.0"]


def test_plain_show_stat_and_info_unchanged() -> None:
    """
    Without arguments the answers stay HAProxy's CSV and C{Name: value}
    lines.
    """
    _, commands = make()
    assert commands.run("show stat").startswith("# pxname,svname,")
    assert commands.run("show info").startswith("Name: l4lb\n")
