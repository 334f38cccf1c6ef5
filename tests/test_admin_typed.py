"""
Tests for L{l4lb.admin.typed}: C{show stat typed|json} and
C{show info typed|json} in HAProxy's layouts, read through the runtime
API's commands and checked against the CSV of the same rows.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Tuple

import pytest

from l4lb.admin.fields import FIELDS
from l4lb.admin.stats import stat_rows
from l4lb.admin.typed import (
    TYPED_FIELDS,
    UDP_FIELDS,
    info_json,
    info_typed,
    stat_typed,
    stat_typed_json,
    tags_of,
)

from tests.test_admin_commands import make, parse_stat
from tests.test_admin_udp_stats import service_of, traffic

#: One line of C{show stat typed}, as HAProxy's management guide gives it.
TYPED_LINE = re.compile(
    r"^(?P<obj>[FBSL])\.(?P<iid>\d+)\.(?P<sid>\d+)\.(?P<pos>\d+)\.(?P<name>[a-z0-9_]+)\.1"
    r":(?P<tags>[MSKCP][GLmMRCDATNOa][PSsC]):(?P<type>u32|u64|s32|s64|str):(?P<value>.*)$"
)

_KINDS = {"0": "F", "1": "B", "2": "S"}

Key = Tuple[str, str, str]


def typed_values(text: str) -> Dict[Key, Dict[str, str]]:
    """
    C{show stat typed} parsed line by line: each object's fields by name,
    objects keyed by letter, iid and sid.  Every line must match the
    layout.
    """
    objects: Dict[Key, Dict[str, str]] = {}
    for line in text.splitlines():
        match = TYPED_LINE.match(line)
        assert match is not None, f"not HAProxy's typed layout: {line!r}"
        assert TYPED_FIELDS[int(match["pos"])] == match["name"], line
        key = (match["obj"], match["iid"], match["sid"])
        objects.setdefault(key, {})[match["name"]] = match["value"]
    return objects


def csv_values(text: str) -> Dict[Key, Dict[str, str]]:
    """
    C{show stat} parsed: each row's filled columns, keyed as
    L{typed_values} keys objects.
    """
    return {
        (_KINDS[row["type"]], row["iid"], row["sid"]): {k: v for k, v in row.items() if v != ""}
        for row in parse_stat(text)
    }


def json_values(text: str) -> Dict[Key, Dict[str, Any]]:
    """
    C{show stat json} parsed with L{json.loads}: each object's field
    values by name, keyed as L{typed_values} keys objects.
    """
    objects: Dict[Key, Dict[str, Any]] = {}
    for row in json.loads(text):
        for field in row:
            key = (field["objType"][0], str(field["proxyId"]), str(field["id"]))
            objects.setdefault(key, {})[field["field"]["name"]] = field["value"]["value"]
    return objects


def test_show_stat_typed_prints_haproxy_lines() -> None:
    """
    C{show stat typed} answers one line per filled field in HAProxy's
    layout: object letter, iid, sid, position, name, process number, the
    origin/nature/scope letters HAProxy gives that field, the type, the
    value.
    """
    _, commands = make()
    commands.run("set server be/s2 weight 3")
    lines = commands.run("show stat typed").splitlines()
    pid = os.getpid()
    for expected in [
        "F.1.0.0.pxname.1:KNS:str:fe",
        "F.1.0.1.svname.1:KNS:str:FRONTEND",
        "F.1.0.4.scur.1:MGP:u32:0",
        "F.1.0.7.stot.1:MCP:u64:0",
        "F.1.0.17.status.1:SGP:str:OPEN",
        f"F.1.0.26.pid.1:KGP:u32:{pid}",
        "F.1.0.32.type.1:CGS:u32:0",
        "F.1.0.75.mode.1:CGS:str:tcp",
        "F.1.0.81.dcon.1:MCP:u64:0",
        "S.2.1.1.svname.1:KNS:str:s1",
        "S.2.1.17.status.1:SGP:str:no check",
        "S.2.1.19.act.1:SGP:u32:1",
        "S.2.2.18.weight.1:MaP:u32:3",
        "S.2.2.28.sid.1:KGS:u32:2",
        "S.2.1.73.addr.1:CGS:str:127.0.10.1:80",
        "B.2.0.1.svname.1:KNS:str:BACKEND",
        "B.2.0.3.qmax.1:MMP:u32:0",
        "B.2.0.19.act.1:MGP:u32:2",
        "B.2.0.23.lastchg.1:MAP:u32:0",
        "B.2.0.76.algo.1:CGS:str:roundrobin",
    ]:
        assert expected in lines
    # Each object's lines together, in the CSV's row order.
    objects = [line.split(".", 3)[:3] for line in lines]
    assert [o for i, o in enumerate(objects) if i == 0 or objects[i - 1] != o] == [
        ["F", "1", "0"],
        ["S", "2", "1"],
        ["S", "2", "2"],
        ["B", "2", "0"],
    ]


def test_show_stat_typed_leaves_out_empty_fields() -> None:
    """
    Fields the CSV leaves empty have no typed line, as with HAProxy: a
    frontend without a limit has no C{slim}, an unchecked server no
    C{check_status}, a backend no C{addr}.
    """
    _, commands = make()
    objects = typed_values(commands.run("show stat typed"))
    assert "slim" not in objects[("F", "1", "0")]
    assert "check_status" not in objects[("S", "2", "1")]
    assert "addr" not in objects[("B", "2", "0")]


def test_show_stat_typed_and_json_carry_the_csv_values() -> None:
    """
    The typed and JSON answers hold exactly the CSV's filled columns with
    the same values, row for row; the JSON parses, numbers as numbers.
    """
    relay, commands = make()
    relay.accept()
    commands.run("set server be/s1 state drain")
    expected = csv_values(commands.run("show stat"))
    assert typed_values(commands.run("show stat typed")) == expected
    from_json = json_values(commands.run("show stat json"))
    assert {k: {n: str(v) for n, v in o.items()} for k, o in from_json.items()} == expected
    assert from_json[("S", "2", "1")]["scur"] == 1
    assert from_json[("S", "2", "1")]["status"] == "DRAIN"


def test_show_stat_json_layout() -> None:
    """
    C{show stat json} is one line: an array with one array per row, each
    field an object with HAProxy's keys in HAProxy's order and its tags
    spelt out.
    """
    _, commands = make()
    text = commands.run("show stat json")
    assert text.count("\n") == 1 and text.startswith("[[{") and text.endswith("}]]\n")
    data = json.loads(text)
    assert [row[0]["objType"] for row in data] == ["Frontend", "Server", "Server", "Backend"]
    assert data[1][1] == {
        "objType": "Server",
        "proxyId": 2,
        "id": 1,
        "field": {"pos": 1, "name": "svname"},
        "processNum": 1,
        "tags": {"origin": "Key", "nature": "Name", "scope": "Service"},
        "value": {"type": "str", "value": "s1"},
    }
    assert list(data[1][1]) == ["objType", "proxyId", "id", "field", "processNum", "tags", "value"]
    weight = [f for f in data[3] if f["field"]["name"] == "weight"][0]
    assert weight["field"]["pos"] == 18
    assert weight["tags"] == {"origin": "Metric", "nature": "Avg", "scope": "Process"}
    assert weight["value"] == {"type": "u32", "value": 2}


def test_checked_server_fields() -> None:
    """
    A checked server's check columns carry HAProxy's tags: the status and
    description are outputs, the duration a duration in ms, the down time
    a counter, rise and fall configuration; a warming server's throttle is
    an average.
    """
    _, commands = make()
    rows = stat_rows(commands.service, 0.0, pid=1)
    server = rows[1]
    server.update(
        check_status="L4OK",
        check_duration="2",
        check_desc="Layer4 check passed",
        check_rise="2",
        check_fall="3",
        downtime="0",
        chkfail="1",
        throttle="40",
        agent_status="L7OK",
    )
    lines = stat_typed([server]).splitlines()
    for expected in [
        "S.2.1.21.chkfail.1:MCP:u64:1",
        "S.2.1.24.downtime.1:MCP:u32:0",
        "S.2.1.29.throttle.1:MaP:u32:40",
        "S.2.1.36.check_status.1:MOP:str:L4OK",
        "S.2.1.38.check_duration.1:MDP:u64:2",
        "S.2.1.62.agent_status.1:MOP:str:L7OK",
        "S.2.1.65.check_desc.1:MOP:str:Layer4 check passed",
        "S.2.1.67.check_rise.1:CGS:u32:2",
        "S.2.1.68.check_fall.1:CGS:u32:3",
    ]:
        assert expected in lines


def test_udp_counters_follow_haproxy_columns() -> None:
    """
    A C{mode udp} row's own counters (C{udp_*}), which the CSV leaves out,
    come after HAProxy's 119 columns as counters, as HAProxy places the
    fields of its statistics modules after its own.
    """
    rig = traffic()
    rows = stat_rows(service_of(rig), rig.reactor.seconds(), pid=1)
    objects = typed_values(stat_typed(rows))
    assert objects[("F", "1", "0")]["udp_datagrams_in"] == "3"
    assert objects[("F", "1", "0")]["req_tot"] == "3"
    first = len(FIELDS)
    assert f"F.1.0.{first}.{UDP_FIELDS[0]}.1:MCP:u64:" in stat_typed(rows)
    data = json.loads(stat_typed_json(rows))
    udp = [f for f in data[0] if f["field"]["name"].startswith("udp_")]
    assert [f["field"]["pos"] for f in udp] == list(range(first, first + len(UDP_FIELDS)))


def test_every_column_has_tags() -> None:
    """
    Every column of the CSV has HAProxy's tags for every kind of object,
    so that a column l4lb starts filling is emitted rather than failing.
    """
    for name in TYPED_FIELDS:
        for kind in "FBS":
            tags = tags_of(name, kind)
            assert tags.kind in ("u32", "u64", "s32", "s64", "str")


def test_show_info_typed_and_json() -> None:
    """
    C{show info typed} prints C{pos.name.1:tags:type:value} at HAProxy's
    positions (C{Pid} 6, C{Maxconn} 15, C{CumConns} 18 ...) and C{show
    info json} the same fields as objects; both carry the values of plain
    C{show info}.
    """
    _, commands = make()
    plain = dict(
        line.split(": ", 1) for line in commands.run("show info").splitlines() if line
    )
    lines = commands.run("show info typed").splitlines()
    assert lines[0] == "0.Name.1:POS:str:l4lb"
    assert f"6.Pid.1:SGP:u32:{os.getpid()}" in lines
    assert "15.Maxconn.1:CLP:u32:0" in lines
    assert "18.CumConns.1:MCP:u32:0" in lines
    assert {line.split(":", 1)[0].split(".")[1]: line.split(":", 3)[3] for line in lines} == plain
    data = json.loads(commands.run("show info json"))
    assert data[2] == {
        "field": {"pos": 6, "name": "Pid"},
        "processNum": 1,
        "tags": {"origin": "Status", "nature": "Gauge", "scope": "Process"},
        "value": {"type": "u32", "value": os.getpid()},
    }
    assert {f["field"]["name"]: str(f["value"]["value"]) for f in data} == plain


def test_info_helpers_order_by_position() -> None:
    """
    The info layouts list fields by position whatever order they are
    given in, and an unknown numeric value is shown as text rather than
    misread.
    """
    info = [("Pid", "7"), ("Name", "l4lb"), ("Maxconn", "n/a")]
    assert info_typed(info).splitlines() == [
        "0.Name.1:POS:str:l4lb",
        "6.Pid.1:SGP:u32:7",
        "15.Maxconn.1:CLP:str:n/a",
    ]
    assert [f["field"]["pos"] for f in json.loads(info_json(info))] == [0, 6, 15]


@pytest.mark.parametrize("command", ["show stat typed", "show stat json", "show info typed"])
def test_typed_answers_are_not_csv(command: str) -> None:
    """
    The typed and JSON layouts are never the CSV (or the plain info)
    under another name.
    """
    _, commands = make()
    text = commands.run(command)
    assert not text.startswith("# pxname") and not text.startswith("Name: ")
