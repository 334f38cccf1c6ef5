"""
C{show stat typed|json} and C{show info typed|json} through twistd's
C{stats socket}, read with C{socat} as an operator does, and compared
with HAProxy's own answers for the same configuration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from typing import Dict, Iterator, List, Tuple

import pytest

from .backends import EchoServer
from .conftest import BalancerFactory, StartServer
from .harness import (
    BackendSection,
    FrontendSection,
    ServerLine,
    free_port,
    subprocess_env,
    wait_until,
)
from .test_admin import socat, stat_rows

#: One typed line: object, iid, sid, position, name, process, tags, type,
#: value.
TYPED = re.compile(
    r"^([FBSL])\.(\d+)\.(\d+)\.(\d+)\.([A-Za-z0-9_]+)\.(\d+)"
    r":([A-Za-z]{3}):(u32|u64|s32|s64|str):(.*)$"
)

#: A field per object: (letter, svname) -> name -> (position, tags, type,
#: value).
Fields = Dict[Tuple[str, str], Dict[str, Tuple[int, str, str, str]]]

CHECK = "check inter 200 rise 2 fall 2"


def typed_fields(text: str) -> Fields:
    """
    A typed answer parsed, each object keyed by its letter and C{svname}
    (ids differ between HAProxy and l4lb); every line must match.
    """
    by_id: Dict[Tuple[str, str, str], Dict[str, Tuple[int, str, str, str]]] = {}
    for line in text.splitlines():
        if not line:
            continue
        match = TYPED.match(line)
        assert match is not None, f"not a typed line: {line!r}"
        obj, iid, sid, pos, name, _, tags, kind, value = match.groups()
        by_id.setdefault((obj, iid, sid), {})[name] = (int(pos), tags, kind, value)
    return {(key[0], fields["svname"][3]): fields for key, fields in by_id.items()}


def start_l4lb(servers: StartServer, balancers: BalancerFactory, directory: str) -> Tuple[str, int]:
    """
    l4lb with frontend C{fe} before backend C{be}: C{s1} checked, C{s2}
    not; return the admin socket's path and s1's port.
    """
    s1, s2 = servers(EchoServer("s1")), servers(EchoServer("s2"))
    sock_path = os.path.join(directory, "admin.sock")
    be = BackendSection(
        "be",
        [ServerLine("s1", "127.0.0.1", s1.port, CHECK), ServerLine("s2", "127.0.0.1", s2.port)],
    )
    fe = FrontendSection("fe", "127.0.0.1", free_port(), "be")
    balancers.start([fe], [be], global_={"stats socket": sock_path})
    return sock_path, s1.port


def s1_checked(sock_path: str) -> bool:
    """
    Whether s1's last check succeeded (C{check_status} L4OK), read from
    C{show stat} as a tool would.
    """
    rows = stat_rows(socat(sock_path, "show stat"))
    return rows.get("be/s1", {}).get("check_status") == "L4OK"


def test_typed_and_json_through_socket(
    servers: StartServer, balancers: BalancerFactory, tmp_path: "os.PathLike[str]"
) -> None:
    """
    Through the real socket, C{show stat typed} answers HAProxy's typed
    lines and C{show stat json} an array that C{json.loads} reads, both
    with the CSV's values; a misspelt layout word is a one-line error, not
    the CSV; C{show info typed|json} carry the plain info's values.
    """
    assert shutil.which("socat"), "socat is needed: apt-get install socat"
    sock_path, _ = start_l4lb(servers, balancers, str(tmp_path))
    assert wait_until(lambda: s1_checked(sock_path), timeout=10.0, interval=0.1)

    csv_rows = stat_rows(socat(sock_path, "show stat"))
    typed_text = socat(sock_path, "show stat typed")
    assert typed_text.endswith("\n\n"), "the answer ends with the empty line"
    typed = typed_fields(typed_text)
    assert set(typed) == {("F", "FRONTEND"), ("S", "s1"), ("S", "s2"), ("B", "BACKEND")}
    # Counters may move between two commands (checks): compare the columns
    # that the configuration and state decide.
    steady = (
        "pxname", "svname", "status", "weight", "act", "bck", "iid", "sid", "type",
        "check_status", "check_rise", "check_fall", "addr", "mode", "algo",
    )
    for (_, svname), fields in typed.items():
        row = csv_rows[f"{fields['pxname'][3]}/{svname}"]
        empty = [name for name in fields if not row.get(name)]
        assert empty == [], f"{svname}: typed fields the CSV leaves empty"
        for name in steady:
            if row.get(name):
                assert fields[name][3] == row[name], (svname, name)
    assert typed[("S", "s1")]["check_status"] == (36, "MOP", "str", "L4OK")

    data = json.loads(socat(sock_path, "show stat json"))
    by_name = {row[1]["value"]["value"]: row for row in data}
    assert set(by_name) == {"FRONTEND", "s1", "s2", "BACKEND"}
    status = [f for f in by_name["s2"] if f["field"]["name"] == "status"][0]
    assert status["value"] == {"type": "str", "value": "no check"}
    assert status["tags"] == {"origin": "Status", "nature": "Gauge", "scope": "Process"}

    wrong = socat(sock_path, "show stat jsno")
    assert wrong.count("\n") == 2 and "Unknown argument 'jsno'" in wrong
    assert not wrong.startswith("# pxname")

    plain = dict(line.split(": ", 1) for line in socat(sock_path, "show info").splitlines() if line)
    info = [line for line in socat(sock_path, "show info typed").splitlines() if line]
    assert info[0] == "0.Name.1:POS:str:l4lb"
    assert f"6.Pid.1:SGP:u32:{plain['Pid']}" in info
    info_data = json.loads(socat(sock_path, "show info json"))
    assert {f["field"]["name"] for f in info_data} == set(plain)


# -- HAProxy as the reference --------------------------------------------

HAPROXY_CONFIG = """\
global
    stats socket {sock} mode 600 level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    balance roundrobin
    server s1 127.0.0.1:{s1} {check}
    server s2 127.0.0.1:{s2}
"""


@pytest.fixture
def haproxy(tmp_path: "os.PathLike[str]") -> Iterator[Tuple[str, Dict[str, int]]]:
    """
    HAProxy (Debian's package) in the foreground with the same frontend,
    backend and servers as L{start_l4lb}, its stats socket in a temporary
    directory and its two servers listening on loopback; stopped after
    the test.

    @return: The socket's path and the ports by name.
    """
    program = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    assert program, "haproxy is needed as the reference: apt-get install haproxy"
    directory = os.path.join(str(tmp_path), "haproxy")
    os.mkdir(directory)
    s1, s2 = EchoServer("h1"), EchoServer("h2")
    s1.start()
    s2.start()
    ports = {"fe": free_port(), "s1": s1.port, "s2": s2.port}
    sock_path = os.path.join(directory, "stats.sock")
    config = os.path.join(directory, "haproxy.cfg")
    with open(config, "w") as f:
        f.write(HAPROXY_CONFIG.format(sock=sock_path, port=ports["fe"], check=CHECK, **ports))
    log = open(os.path.join(directory, "haproxy.log"), "wb")
    process = subprocess.Popen(
        [program, "-db", "-f", config],
        cwd=directory,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        started = wait_until(lambda: process.poll() is not None or os.path.exists(sock_path), 15.0)
        assert started and process.poll() is None, "haproxy did not start; see haproxy.log"
        yield sock_path, ports
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(15)
        log.close()
        s1.stop()
        s2.stop()


#: Fields l4lb fills that HAProxy emits only with options this
#: configuration does not use (C{hanafail}: with C{observe layer4}).
ONLY_WITH_OTHER_OPTIONS = {("S", "hanafail")}


def test_typed_layout_matches_haproxy(
    servers: StartServer,
    balancers: BalancerFactory,
    tmp_path: "os.PathLike[str]",
    haproxy: Tuple[str, Dict[str, int]],
) -> None:
    """
    For the same configuration, every field l4lb emits in C{show stat
    typed} is one HAProxy emits too, at the same position, with the same
    tags and type, and with the same value where the configuration and
    state decide it; C{show stat json} has HAProxy's keys, and C{show
    info typed} HAProxy's positions and tags.
    """
    assert shutil.which("socat"), "socat is needed: apt-get install socat"
    reference_sock, _ = haproxy
    sock_path, _ = start_l4lb(servers, balancers, str(tmp_path))

    def both_checked() -> bool:
        ours = typed_fields(socat(sock_path, "show stat typed"))
        theirs = typed_fields(socat(reference_sock, "show stat typed"))
        return all(
            side.get(("S", "s1"), {}).get("check_status", (0, "", "", ""))[3] == "L4OK"
            for side in (ours, theirs)
        )

    assert wait_until(both_checked, timeout=10.0, interval=0.1), "s1 never checked L4OK"
    ours = typed_fields(socat(sock_path, "show stat typed"))
    theirs = typed_fields(socat(reference_sock, "show stat typed"))
    assert set(ours) == set(theirs)

    same_value = (
        "pxname", "svname", "status", "weight", "act", "bck", "type", "check_status",
        "check_rise", "check_fall", "mode", "algo", "scur", "qcur", "econ", "uweight",
    )
    differences: List[str] = []
    for key, fields in ours.items():
        for name, (pos, tags, kind, value) in fields.items():
            if (key[0], name) in ONLY_WITH_OTHER_OPTIONS:
                continue
            reference = theirs[key].get(name)
            if reference is None:
                differences.append(f"{key} {name}: HAProxy does not emit it")
                continue
            if (pos, tags, kind) != reference[:3]:
                differences.append(
                    f"{key} {name}: ours {(pos, tags, kind)}, HAProxy {reference[:3]}"
                )
            if name in same_value and value != reference[3]:
                differences.append(f"{key} {name}: ours {value!r}, HAProxy {reference[3]!r}")
    assert differences == []

    # The JSON objects have HAProxy's keys, in its order, and nesting.
    def shape(value: object) -> object:
        if isinstance(value, dict):
            return [(key, shape(inner)) for key, inner in value.items()]
        return None

    our_field = json.loads(socat(sock_path, "show stat json"))[0][0]
    their_field = json.loads(socat(reference_sock, "show stat json"))[0][0]
    assert shape(our_field) == shape(their_field)
    assert (our_field["field"], our_field["tags"]) == (their_field["field"], their_field["tags"])

    # show info typed: the same positions and tags for the lines l4lb has.
    def info(path: str) -> Dict[str, Tuple[str, str, str]]:
        lines = [line for line in socat(path, "show info typed").splitlines() if line]
        out = {}
        for line in lines:
            head, tags, kind, _ = line.split(":", 3)
            pos, name, _ = head.split(".")
            out[name] = (pos, tags, kind)
        return out

    our_info, their_info = info(sock_path), info(reference_sock)
    shared = set(our_info) & set(their_info)
    assert shared >= {
        "Name", "Version", "Pid", "Uptime", "Uptime_sec", "Maxconn", "CurrConns",
        "CumConns", "Maxpipes", "PipesUsed", "PipesFree", "DroppedLogs",
    }
    assert {n: our_info[n] for n in shared} == {n: their_info[n] for n in shared}
