"""
Statistics and process information in HAProxy's typed and JSON layouts
(C{show stat typed}, C{show stat json}, C{show info typed},
C{show info json}).

Each value is emitted with its position, its name and three tags that
tell a monitoring tool how to aggregate it: the origin (C{M} metric,
C{S} status, C{K} key, C{C} configuration, C{P} product), the nature
(C{G} gauge, C{L} limit, C{m} minimum, C{M} maximum, C{R} rate,
C{C} counter, C{D} duration, C{A} age, C{T} time, C{N} name, C{O} output,
C{a} average) and the scope (C{P} process, C{S} service, C{s} system,
C{C} cluster), then its type (C{u32}, C{u64}, C{s32}, C{s64}, C{str}).
The tags and types are HAProxy's for the same fields, so that tools
written for HAProxy read l4lb unchanged.  Only filled fields are
emitted, as HAProxy does: an empty CSV column has no typed line.
"""

from __future__ import annotations

import json
from typing import Dict, Iterable, List, Sequence, Tuple

import attr

from l4lb.admin.fields import FIELDS, TYPE_BACKEND, TYPE_FRONTEND, TYPE_SERVER
from l4lb.admin.stats import Row
from l4lb.udp.counters import UdpCounters


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Tags:
    """
    How one field is described: its three tag letters and its type.

    @ivar origin: C{M}, C{S}, C{K}, C{C} or C{P}.
    @ivar nature: C{G}, C{L}, C{m}, C{M}, C{R}, C{C}, C{D}, C{A}, C{T},
        C{N}, C{O} or C{a}.
    @ivar scope: C{P}, C{S}, C{s} or C{C}.
    @ivar kind: C{u32}, C{u64}, C{s32}, C{s64} or C{str}.
    """

    origin: str
    nature: str
    scope: str
    kind: str

    @classmethod
    def parse(cls, text: str) -> "Tags":
        """
        Tags written as in the typed layout, C{"MCP:u64"}.
        """
        letters, kind = text.split(":")
        return cls(letters[0], letters[1], letters[2], kind)

    @property
    def letters(self) -> str:
        """
        The three letters as the typed layout prints them (C{MCP}).
        """
        return self.origin + self.nature + self.scope


# The words of the JSON layout for each letter.
_ORIGINS = {"M": "Metric", "S": "Status", "K": "Key", "C": "Config", "P": "Product"}
_NATURES = {
    "G": "Gauge",
    "L": "Limit",
    "m": "Min",
    "M": "Max",
    "R": "Rate",
    "C": "Counter",
    "D": "Duration",
    "A": "Age",
    "T": "Time",
    "N": "Name",
    "O": "Output",
    "a": "Avg",
}
_SCOPES = {"P": "Process", "S": "Service", "s": "System", "C": "Cluster"}

# Every column of FIELDS with HAProxy's tags and type; where HAProxy tags a
# column differently for a backend, _BACKEND says how.
_COLUMN_TAGS = """
pxname KNS:str svname KNS:str qcur MGP:u32 qmax MMP:u32 scur MGP:u32
smax MMP:u32 slim CLP:u32 stot MCP:u64 bin MCP:u64 bout MCP:u64 dreq MCP:u64
dresp MCP:u64 ereq MCP:u64 econ MCP:u64 eresp MCP:u64 wretr MCP:u64
wredis MCP:u64 status SGP:str weight MaP:u32 act SGP:u32 bck SGP:u32
chkfail MCP:u64 chkdown MCP:u64 lastchg MAP:u32 downtime MCP:u32
qlimit CGS:u32 pid KGP:u32 iid KGS:u32 sid KGS:u32 throttle MaP:u32
lbtot MCP:u64 tracked CNS:str type CGS:u32 rate MRP:u32 rate_lim CLP:u32
rate_max MMP:u32 check_status MOP:str check_code MOP:u32
check_duration MDP:u64 hrsp_1xx MCP:u64 hrsp_2xx MCP:u64 hrsp_3xx MCP:u64
hrsp_4xx MCP:u64 hrsp_5xx MCP:u64 hrsp_other MCP:u64 hanafail MCP:u64
req_rate MRP:u32 req_rate_max MMP:u32 req_tot MCP:u64 cli_abrt MCP:u64
srv_abrt MCP:u64 comp_in MCP:u64 comp_out MCP:u64 comp_byp MCP:u64
comp_rsp MCP:u64 lastsess MAP:s32 last_chk MOP:str last_agt MOP:str
qtime MaP:u32 ctime MaP:u32 rtime MaP:u32 ttime MaP:u32
agent_status MOP:str agent_code MOP:u32 agent_duration MDP:u64
check_desc MOP:str agent_desc MOP:str check_rise CGS:u32 check_fall CGS:u32
check_health CGS:u32 agent_rise CGS:u32 agent_fall CGS:u32
agent_health CGS:u32 addr CGS:str cookie CNS:str mode CGS:str algo CGS:str
conn_rate MRP:u32 conn_rate_max MMP:u32 conn_tot MCP:u64
intercepted MCP:u64 dcon MCP:u64 dses MCP:u64 wrew MCP:u64 connect MCP:u64
reuse MCP:u64 cache_lookups MCP:u64 cache_hits MCP:u64 srv_icur MGP:u32
src_ilim CLP:u32 qtime_max MMP:u32 ctime_max MMP:u32 rtime_max MMP:u32
ttime_max MMP:u32 eint MCP:u64 idle_conn_cur MGP:u32 safe_conn_cur MGP:u32
used_conn_cur MGP:u32 need_conn_est MGP:u32 uweight MaP:u32
agg_server_status MGP:u32 agg_server_status_check MGP:u32
agg_check_status MGP:u32 srid MCP:u32 sess_other MCP:u64 h1_sess MCP:u64
h2_sess MCP:u64 h3_sess MCP:u64 req_other MCP:u64 h1req MCP:u64
h2req MCP:u64 h3req MCP:u64 proto SGP:str priv_idle_cur MGP:u32
reqbin MCP:u64 reqbout MCP:u64 resbin MCP:u64 resbout MCP:u64
cache_hint_hits MCP:u64
"""


def _table(text: str) -> Dict[str, Tags]:
    words = text.split()
    return {name: Tags.parse(tags) for name, tags in zip(words[::2], words[1::2])}


_TAGS = _table(_COLUMN_TAGS)

# A backend's server counts are sums over its servers, not one server's
# status; its session rate is reported as a gauge.
_BACKEND = _table("act MGP:u32 bck MGP:u32 rate MGP:u32 rate_max MGP:u32")

#: The UDP counters of C{mode udp} rows (C{udp_datagrams_in}, ...), which
#: the CSV leaves out: emitted after HAProxy's columns, as HAProxy emits
#: the fields of its statistics modules after its own.
UDP_FIELDS: Tuple[str, ...] = tuple("udp_" + name for name in UdpCounters.__slots__)

_UDP_TAGS = Tags.parse("MCP:u64")

#: Every field of the typed layouts, by position.
TYPED_FIELDS: Tuple[str, ...] = FIELDS + UDP_FIELDS

# The typed layout's letter and the JSON layout's word for a row's C{type}.
_OBJECTS = {
    str(TYPE_FRONTEND): ("F", "Frontend"),
    str(TYPE_BACKEND): ("B", "Backend"),
    str(TYPE_SERVER): ("S", "Server"),
    "3": ("L", "Listener"),
}

#: The process number of every line: the counters of the worker processes
#: (C{nbproc}) are already added into the one answer, as one process.
PROCESS = 1


def tags_of(name: str, kind: str = "F") -> Tags:
    """
    The tags of the statistics field C{name} on an object of kind C{kind}
    (the typed layout's letter: C{F}, C{B}, C{S} or C{L}).

    @raise KeyError: When C{name} is no field of L{TYPED_FIELDS}.
    """
    if name in UDP_FIELDS:
        return _UDP_TAGS
    if kind == "B" and name in _BACKEND:
        return _BACKEND[name]
    return _TAGS[name]


def _typed_value(tags: Tags, text: str) -> Tuple[str, object]:
    """
    The type and value of a field: a number for the integer types, text
    otherwise.  A numeric field holding something else is shown as text
    rather than misread.
    """
    if tags.kind != "str":
        try:
            return tags.kind, int(text)
        except ValueError:
            pass
    return "str", text


def _fields(row: Row) -> Iterable[Tuple[int, str, Tags, str, object]]:
    """
    The filled fields of C{row} in position order: position, name, tags,
    type and value.
    """
    kind = _OBJECTS.get(row.get("type", ""), ("?", ""))[0]
    for pos, name in enumerate(TYPED_FIELDS):
        text = row.get(name, "")
        if text == "":
            continue
        tags = tags_of(name, kind)
        value_type, value = _typed_value(tags, text)
        yield pos, name, tags, value_type, value


def _ids(row: Row) -> Tuple[str, str, int, int]:
    letter, word = _OBJECTS.get(row.get("type", ""), ("?", "Unknown"))
    return letter, word, int(row.get("iid") or 0), int(row.get("sid") or 0)


def stat_typed(rows: Iterable[Row]) -> str:
    """
    C{show stat typed}: one line per filled field,
    C{<obj>.<iid>.<sid>.<pos>.<name>.<process>:<tags>:<type>:<value>},
    each object's lines together.
    """
    lines: List[str] = []
    for row in rows:
        letter, _, iid, sid = _ids(row)
        for pos, name, tags, value_type, value in _fields(row):
            lines.append(
                f"{letter}.{iid}.{sid}.{pos}.{name}.{PROCESS}:{tags.letters}:{value_type}:{value}"
            )
    return "".join(line + "\n" for line in lines)


def _json_tags(tags: Tags) -> Dict[str, str]:
    return {
        "origin": _ORIGINS[tags.origin],
        "nature": _NATURES[tags.nature],
        "scope": _SCOPES[tags.scope],
    }


def stat_typed_json(rows: Iterable[Row]) -> str:
    """
    C{show stat json}: a JSON array with one array per row, each holding
    one object per filled field (C{objType}, C{proxyId}, C{id}, C{field}
    with C{pos} and C{name}, C{processNum}, C{tags} with C{origin},
    C{nature} and C{scope}, C{value} with C{type} and C{value}), on one
    line as HAProxy prints it.
    """
    data = []
    for row in rows:
        _, word, iid, sid = _ids(row)
        data.append(
            [
                {
                    "objType": word,
                    "proxyId": iid,
                    "id": sid,
                    "field": {"pos": pos, "name": name},
                    "processNum": PROCESS,
                    "tags": _json_tags(tags),
                    "value": {"type": value_type, "value": value},
                }
                for pos, name, tags, value_type, value in _fields(row)
            ]
        )
    return json.dumps(data, separators=(",", ":")) + "\n"


# The lines of 'show info' at HAProxy's positions, with HAProxy's tags.
# l4lb's own lines (no HAProxy equivalent) take positions from
# _OWN_INFO_BASE on, far after HAProxy's, so that they never collide with
# a line a later HAProxy adds.
_INFO_TAGS = {
    "Name": (0, "POS:str"),
    "Version": (1, "POS:str"),
    "Pid": (6, "SGP:u32"),
    "Uptime": (7, "MDP:str"),
    "Uptime_sec": (8, "MDP:u32"),
    "Maxconn": (15, "CLP:u32"),
    "CurrConns": (17, "MGP:u32"),
    "CumConns": (18, "MCP:u32"),
    "Maxpipes": (23, "CLP:u32"),
    "PipesUsed": (24, "MGP:u32"),
    "PipesFree": (25, "MGP:u32"),
    "Stopping": (52, "MGP:u32"),
    "DroppedLogs": (58, "MGP:u32"),
    "Frontends": (100, "CGS:u32"),
    "Backends": (101, "CGS:u32"),
    "EtcdWatches": (110, "CGS:u32"),
    "EtcdUnreachable": (111, "MGP:u32"),
    "Ready": (102, "SGP:u32"),
    "InstanceState": (103, "SOP:str"),
    "Generation": (104, "SGP:u32"),
}


def info_fields(info: Sequence[Tuple[str, str]]) -> List[Tuple[int, str, Tags, str, object]]:
    """
    The lines of C{show info} with their position, tags, type and value,
    in position order.

    @raise KeyError: When a line has no known position.
    """
    out = []
    for name, text in info:
        pos, tags_text = _INFO_TAGS[name]
        tags = Tags.parse(tags_text)
        value_type, value = _typed_value(tags, text)
        out.append((pos, name, tags, value_type, value))
    return sorted(out, key=lambda field: field[0])


def info_typed(info: Sequence[Tuple[str, str]]) -> str:
    """
    C{show info typed}: C{<pos>.<name>.<process>:<tags>:<type>:<value>}
    per line.
    """
    return "".join(
        f"{pos}.{name}.{PROCESS}:{tags.letters}:{value_type}:{value}\n"
        for pos, name, tags, value_type, value in info_fields(info)
    )


def info_json(info: Sequence[Tuple[str, str]]) -> str:
    """
    C{show info json}: a JSON array of objects (C{field} with C{pos} and
    C{name}, C{processNum}, C{tags}, C{value}), on one line.
    """
    data = [
        {
            "field": {"pos": pos, "name": name},
            "processNum": PROCESS,
            "tags": _json_tags(tags),
            "value": {"type": value_type, "value": value},
        }
        for pos, name, tags, value_type, value in info_fields(info)
    ]
    return json.dumps(data, separators=(",", ":")) + "\n"
