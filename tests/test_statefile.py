"""
HAProxy's server-state file (L{l4lb.statefile}): what C{show servers
state} prints, and what a start and a reload read back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from l4lb.admin.commands import AdminCommands
from l4lb.config import ConfigError, parse_config
from l4lb.logs import MemorySink
from l4lb.reload import apply_config
from l4lb.service import BalancerService
from l4lb.statefile import COLUMNS, state_file_path
from tests.test_reload import Reactor


def config_text(state: Path, extra: str = "", load: str = "global") -> str:
    """
    A file whose backend C{be} loads the state file C{state}.
    """
    return f"""\
[global]
server-state-file = {state}
[defaults]
timeout connect = 5s
timeout client = 5s
timeout server = 5s
load-server-state-from-file = {load}
[backend be]
server s1 = 127.0.10.1:80
server s2 = 127.0.10.2:80 weight 4
{extra}
[frontend fe]
bind = 127.0.0.1:8001
default_backend = be
"""


def started(text: str, path: str) -> Tuple[BalancerService, AdminCommands]:
    """
    A service started from C{text} (as the file C{path}) and its commands.
    """
    reactor = Reactor()
    service = BalancerService(parse_config(text, path), reactor, sink=MemorySink())
    service.startService()
    return service, AdminCommands(service, reactor)


@pytest.fixture
def logged() -> Any:
    """
    The text of every log event while the test runs.
    """
    lines: List[str] = []

    def observe(event: Dict[str, Any]) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def rows(text: str) -> Dict[str, List[str]]:
    """
    The server lines of a C{show servers state} answer, by server name.
    """
    return {
        line.split()[3]: line.split()
        for line in text.splitlines()[2:]
        if line and not line.startswith("#")
    }


def test_show_servers_state_is_haproxys_version_1(tmp_path: Path) -> None:
    """
    The answer is the version line, the C{#} line naming HAProxy's 25
    columns, a line of 25 columns per server, and a C{# add server}
    comment for a server added at run time.
    """
    service, commands = started(config_text(tmp_path / "none"), str(tmp_path / "lb.ini"))
    commands.run("add server be/s3 127.0.10.3:81 check")
    text = commands.run("show servers state")
    lines = text.splitlines()
    assert lines[0] == "1"
    assert lines[1] == "# " + " ".join(COLUMNS) and len(COLUMNS) == 25
    table = rows(text)
    assert sorted(table) == ["s1", "s2", "s3"]
    assert all(len(row) == 25 for row in table.values())
    assert table["s2"][7:9] == ["4", "4"]
    assert table["s3"][4:7] == ["127.0.10.3", "2", "1"]
    assert table["s3"][18] == "81"
    assert lines[-1] == "# add server be/s3 127.0.10.3:81 check"


def test_state_file_brings_back_drain_weight_and_added_server(tmp_path: Path) -> None:
    """
    A new process reading the file written from C{show servers state} has
    the drained server drained, the weight set, and the server added at run
    time (with its address moved and its state) made again.
    """
    state = tmp_path / "servers.state"
    text = config_text(state)
    first, commands = started(text, str(tmp_path / "lb.ini"))
    commands.run("set server be/s1 state drain")
    commands.run("set server be/s2 weight 9")
    commands.run("add server be/s3 127.0.10.3:80 weight 2")
    commands.run("set server be/s3 addr 127.0.10.4 port 82")
    commands.run("enable server be/s3")
    state.write_text(commands.run("show servers state"))

    second, again = started(text, str(tmp_path / "lb.ini"))
    s1, s2, s3 = (second.find_server("be", name) for name in ("s1", "s2", "s3"))
    assert s1.admin == "drain"
    assert s2.user_weight == 9
    assert (s3.address, s3.port, s3.admin, s3.user_weight) == ("127.0.10.4", 82, "ready", 2)
    assert second.added_servers == first.added_servers


def test_state_file_without_loading_changes_nothing(tmp_path: Path) -> None:
    """
    HAProxy's default is C{load-server-state-from-file = none}: the file
    is not read.
    """
    state = tmp_path / "servers.state"
    first, commands = started(config_text(state), str(tmp_path / "lb.ini"))
    commands.run("set server be/s1 state maint")
    state.write_text(commands.run("show servers state"))
    second, _ = started(config_text(state, load="none"), str(tmp_path / "lb.ini"))
    assert second.find_server("be", "s1").admin == "ready"


def test_changed_configuration_wins_over_the_file(tmp_path: Path) -> None:
    """
    A weight set at run time is not restored when the file's weight of
    that server changed since (HAProxy's rule), nor a forced maintenance
    undone when the file now says C{disabled}.
    """
    state = tmp_path / "servers.state"
    first, commands = started(config_text(state), str(tmp_path / "lb.ini"))
    commands.run("set server be/s2 weight 9")
    state.write_text(commands.run("show servers state"))
    text = config_text(state).replace("weight 4", "weight 5").replace(
        "127.0.10.1:80", "127.0.10.1:80 disabled"
    )
    second, _ = started(text, str(tmp_path / "lb.ini"))
    assert second.find_server("be", "s2").user_weight == 5
    assert second.find_server("be", "s1").admin == "maint"


def test_bad_lines_are_logged_one_by_one_and_never_stop_the_start(
    tmp_path: Path, logged: List[str]
) -> None:
    """
    An unknown backend, an unknown server, a line with too few columns, a
    weight out of range and an added server whose line is invalid are each
    logged with the file and line number; the good line still applies and
    the service starts.
    """
    state = tmp_path / "servers.state"
    first, commands = started(config_text(state), str(tmp_path / "lb.ini"))
    commands.run("set server be/s1 state drain")
    good = rows(commands.run("show servers state"))["s1"]
    lines = [
        "1",
        "# " + " ".join(COLUMNS),
        " ".join(["9", "nope"] + good[2:]),
        " ".join(good[:3] + ["s9"] + good[4:]),
        "1 be 2 s2 127.0.10.2",
        " ".join(good[:3] + ["s2"] + good[4:7] + ["300"] + good[8:]),
        " ".join(good),
        "# add server be/s7 127.0.10.7:80 wieght 3",
    ]
    state.write_text("\n".join(lines) + "\n")
    second, _ = started(config_text(state), str(tmp_path / "lb.ini"))
    assert second.ready.called
    assert second.find_server("be", "s1").admin == "drain"
    assert [s.name for s in second.backends["be"].servers] == ["s1", "s2"]
    where = str(state)
    expected = [
        f"{where}:3: no backend 'nope' in the configuration",
        f"{where}:4: no server 's9' in backend 'be'",
        f"{where}:5: 5 columns; expected 19 to 25",
        f"{where}:6: weight 300/1 out of range",
        f"{where}:8: server be/s7 cannot be made again: unknown server option 'wieght'",
    ]
    for text in expected:
        assert any(text in line for line in logged), (text, logged)


@pytest.mark.parametrize(
    "content, problem",
    [
        ("2\n# be_id\n", "unknown server-state file version '2'"),
        (None, "cannot read the server-state file"),
    ],
)
def test_unreadable_file_is_logged_and_start_goes_on(
    tmp_path: Path, logged: List[str], content: Any, problem: str
) -> None:
    """
    A file of another version, or none at all, is logged once; the
    service starts with the configuration's state.
    """
    state = tmp_path / "servers.state"
    if content is not None:
        state.write_text(content)
    service, _ = started(config_text(state), str(tmp_path / "lb.ini"))
    assert service.ready.called
    assert any(problem in line for line in logged)


def test_reload_with_carried_state_equals_restart_with_the_file(tmp_path: Path) -> None:
    """
    Reloading the same file (the runtime state carried) and restarting
    from it with the state file just written give the same servers in the
    same states: what C{show servers state} prints (time aside) is equal.
    """
    state = tmp_path / "servers.state"
    text = config_text(state)
    service, commands = started(text, str(tmp_path / "lb.ini"))
    commands.run("set server be/s1 state drain")
    commands.run("set server be/s2 weight 7")
    commands.run("add server be/s3 127.0.10.3:80 weight 2 check")
    commands.run("add server be/s4 127.0.10.4:80")
    commands.run("enable server be/s3")
    commands.run("set server be/s4 addr 127.0.10.9")
    state.write_text(commands.run("show servers state"))
    apply_config(service, parse_config(text, str(tmp_path / "lb.ini")))
    restarted, again = started(text, str(tmp_path / "lb.ini"))

    def shown(answer: str) -> List[List[str]]:
        return [
            row[:9] + row[10:] if not row[0].startswith("#") else row
            for row in (line.split() for line in answer.splitlines()[2:])
        ]

    assert shown(commands.run("show servers state")) == shown(again.run("show servers state"))


def test_local_file_is_the_backends_own(tmp_path: Path) -> None:
    """
    C{load-server-state-from-file = local} reads the backend's
    C{server-state-file-name} under C{server-state-base}, or a file named
    after the backend.
    """
    base = str(tmp_path)
    text = config_text(tmp_path / "global", load="local").replace(
        "[global]\n", f"[global]\nserver-state-base = {base}\n"
    )
    config = parse_config(text, "/etc/l4lb/lb.ini")
    assert state_file_path(config, config.backends[0]) == f"{base}/be"
    named = parse_config(
        text.replace("[backend be]\n", "[backend be]\nserver-state-file-name = web.state\n"),
        "/etc/l4lb/lb.ini",
    )
    assert state_file_path(named, named.backends[0]) == f"{base}/web.state"
    plain = parse_config(config_text(Path("relative.state")), "/etc/l4lb/lb.ini")
    assert state_file_path(plain, plain.backends[0]) == "/etc/l4lb/relative.state"


@pytest.mark.parametrize(
    "line, message",
    [
        ("[defaults]\nload-server-state-from-file = always\n", "allowed: global, local, none"),
        ("[global]\nserver-state-file = two words\n", "is not a file name"),
    ],
)
def test_keys_are_checked(line: str, message: str) -> None:
    """
    The keys' values are checked when the file is read.
    """
    with pytest.raises(ConfigError, match=message):
        parse_config(line, "lb.ini")


def test_nbproc_main_reads_the_file_and_workers_do_not(tmp_path: Path) -> None:
    """
    With C{nbproc}, a worker reads no state file (the main process sends
    it the servers' states); the main process applies the file, and
    refuses, logged, to make added servers again.
    """
    from twisted.internet.testing import MemoryReactorClock

    from l4lb.workers.child import WorkerService

    state = tmp_path / "servers.state"
    first, commands = started(config_text(state), str(tmp_path / "lb.ini"))
    commands.run("set server be/s1 state drain")
    commands.run("add server be/s3 127.0.10.3:80")
    state.write_text(commands.run("show servers state"))
    text = config_text(state).replace("[global]\n", "[global]\nnbproc = 2\n")
    config = parse_config(text, str(tmp_path / "lb.ini"))
    worker = WorkerService(config, MemoryReactorClock(), {})
    assert [(s.name, s.admin) for s in worker.backends["be"].servers] == [
        ("s1", "ready"),
        ("s2", "ready"),
    ]
    main = BalancerService(config, MemoryReactorClock(), sink=MemorySink())
    assert [(s.name, s.admin) for s in main.backends["be"].servers] == [
        ("s1", "drain"),
        ("s2", "ready"),
    ]
