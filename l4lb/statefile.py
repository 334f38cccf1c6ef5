"""
HAProxy's server-state file: what C{show servers state} prints, and what a
start or a reload reads back (C{server-state-file},
C{load-server-state-from-file}).

The format is HAProxy's version 1: a line C{1}, a C{#} line naming the
columns, then one line per server with its columns separated by spaces;
every other line starting with C{#} is a comment.  l4lb writes one
comment of its own per server added at run time, C{# add server B/S
ADDR:PORT [options]}, the command that made it, so that a restart can
make it again; HAProxy skips those lines.

Reading applies HAProxy's rules: a server gets its administrative state
(maintenance, drain) and weight from the file unless the configuration of
that state or weight changed since the file was written (then the file
is ignored for it), and its address and port when its configuration names
a host (the last address resolved) or when it was added at run time.  A
line that does not fit (unknown backend or server, wrong number of
columns, a value out of range) is logged with its file and line number
and skipped; nothing in the file stops the start.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

import attr
from twisted.logger import Logger

from l4lb.config.errors import ConfigError
from l4lb.config.units import is_ip_literal
from l4lb.runtime_servers import ServerChangeError

_log = Logger(namespace="l4lb")

__all__ = ["COLUMNS", "VERSION", "load_server_state", "show_servers_state", "state_file_path"]

#: The format version, the file's first line.
VERSION = "1"

#: HAProxy's columns of format version 1, in order.
COLUMNS = (
    "be_id",
    "be_name",
    "srv_id",
    "srv_name",
    "srv_addr",
    "srv_op_state",
    "srv_admin_state",
    "srv_uweight",
    "srv_iweight",
    "srv_time_since_last_change",
    "srv_check_status",
    "srv_check_result",
    "srv_check_health",
    "srv_check_state",
    "srv_agent_state",
    "bk_f_forced_id",
    "srv_f_forced_id",
    "srv_fqdn",
    "srv_port",
    "srvrecord",
    "srv_use_ssl",
    "srv_check_port",
    "srv_check_addr",
    "srv_agent_addr",
    "srv_agent_port",
)

#: The fewest columns a line needs (up to C{srv_port}), as HAProxy reads
#: files written by older versions.
_MIN_COLUMNS = COLUMNS.index("srv_port") + 1

#: The comment that records a server added at run time.
ADD_PREFIX = "# add server "

#: C{srv_admin_state} bits (HAProxy's C{SRV_ADMF_*}).
FMAINT, CMAINT, FDRAIN = 0x01, 0x04, 0x08
#: Maintenance because DNS gives no address (HAProxy's SRV_ADMF_RMAINT):
#: written, and left to the resolvers when read back.
RMAINT = 0x20

#: C{srv_check_state} bits (HAProxy's C{CHK_ST_*}).
CHK_CONFIGURED, CHK_ENABLED, CHK_PAUSED, CHK_AGENT = 0x02, 0x04, 0x08, 0x10

#: HAProxy's C{HCHK_STATUS_*} numbers of l4lb's check status codes.
CHECK_STATUS = {
    "UNK": 0,
    "INI": 1,
    "SOCKERR": 5,
    "L4OK": 6,
    "L4TOUT": 7,
    "L4CON": 8,
    "L6OK": 9,
    "L6TOUT": 10,
    "L6RSP": 11,
    "L7TOUT": 12,
    "L7RSP": 13,
    "L7OK": 15,
}


# -- writing ---------------------------------------------------------------


def show_servers_state(service: Any, now: float, backend: Optional[str] = None) -> str:
    """
    The text of C{show servers state [BACKEND]}: the version line, the
    column names, one line per server, and the C{# add server} comment
    of each server added at run time.

    @raise KeyError: When C{backend} is given and there is no such backend.
    """
    backends = list(service.backends.values())
    if backend is not None:
        backends = [b for b in backends if b.name == backend]
        if not backends:
            raise KeyError(backend)
    ids = {b.name: i for i, b in enumerate(service.backends.values(), start=1)}
    healths = {id(h.server): h for h in getattr(service.monitor, "servers", ())}
    added = service.added_servers
    lines = [VERSION, "# " + " ".join(COLUMNS)]
    comments = []
    for state in backends:
        for sid, server in enumerate(state.servers, start=1):
            runtime = (state.name, server.name) in added
            row = server_row(server, ids[state.name], sid, healths.get(id(server)), now, runtime)
            lines.append(" ".join(row))
            if runtime:
                definition = added[(state.name, server.name)]
                comments.append(f"{ADD_PREFIX}{state.name}/{server.name} {definition.line}")
    return "\n".join(lines + comments) + "\n"


def server_row(
    server: Any, be_id: int, sid: int, health: Any, now: float, runtime: bool = False
) -> List[str]:
    """
    The columns of one server's line, as text.

    @param health: Its L{l4lb.health.server.ServerHealth}, or C{None}
        without checks.
    @param runtime: Whether it was added at run time (its maintenance is
        then forced rather than configured).
    """
    spec = server.spec
    admin = 0
    if server.admin == "maint":
        if server.admin_cause == "resolvers":
            admin = RMAINT
        else:
            admin = CMAINT if server.admin_cause == "config" and not runtime else FMAINT
    elif server.admin == "drain":
        admin = FDRAIN
    op_state = 0
    if server.up:
        op_state = 1 if server.throttle < 100 else 2
    check_state = agent_state = 0
    check_health = 0
    result = 0
    if health is not None:
        machine = getattr(health, "state", None)
        if getattr(health, "check_loop", None) is not None:
            check_state = CHK_CONFIGURED
            if getattr(health, "check_enabled", True):
                check_state |= CHK_ENABLED
            if server.admin == "maint":
                check_state |= CHK_PAUSED
            result = 3 if server.up else 2
        if machine is not None:
            check_health = int(machine.health)
        if getattr(health, "agent_loop", None) is not None:
            agent_state = CHK_AGENT | CHK_CONFIGURED | CHK_ENABLED
    since = int(now - server.last_change) if server.last_change else 0
    forced = next((value for word, value in spec.options if word == "id"), None)
    fqdn = "-" if is_ip_literal(spec.host) else spec.host
    return [
        str(be_id),
        server.backend.name,
        str(forced or sid),
        server.name,
        server.address or "-",
        str(op_state),
        str(admin),
        str(server.user_weight),
        str(spec.weight),
        str(since),
        str(CHECK_STATUS.get(server.check_status, 0)),
        str(result),
        str(check_health),
        str(check_state),
        str(agent_state),
        "0",
        "1" if forced else "0",
        fqdn,
        str(server.port),
        "-",
        "1" if spec.ssl else "0",
        str(spec.check_port or 0),
        spec.check_addr or "-",
        spec.agent_addr or "-",
        str(spec.agent_port or 0),
    ]


# -- reading ---------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StateLine:
    """
    One server's line of a state file.

    @ivar where: C{FILE:LINE}, for messages.
    @ivar values: Its columns by name (those present).
    """

    where: str
    values: Dict[str, str]


@attr.s(auto_attribs=True)
class StateFile:
    """
    A state file read: its server lines by C{(backend, server)}, the
    definitions of servers added at run time, and what could not be read.
    """

    lines: Dict[Tuple[str, str], StateLine] = attr.Factory(dict)
    definitions: Dict[Tuple[str, str], Tuple[str, str]] = attr.Factory(dict)
    problems: List[str] = attr.Factory(list)


def read_state_file(path: str) -> StateFile:
    """
    Read a state file; a problem with the whole file or with a line is
    recorded in L{StateFile.problems}, never raised.
    """
    read = StateFile()
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        read.problems.append(f"{path}: cannot read the server-state file: {e.strerror or e}")
        return read
    lines = text.splitlines()
    if not lines or lines[0].strip() != VERSION:
        first = lines[0].strip() if lines else ""
        read.problems.append(
            f"{path}:1: unknown server-state file version {first!r}; expected '{VERSION}'"
            " (the file is ignored)"
        )
        return read
    for number, line in enumerate(lines[1:], start=2):
        where = f"{path}:{number}"
        text = line.strip()
        if text.startswith(ADD_PREFIX):
            _definition(read, where, text[len(ADD_PREFIX) :])
            continue
        if not text or text.startswith("#"):
            continue
        words = text.split()
        if not _MIN_COLUMNS <= len(words) <= len(COLUMNS):
            read.problems.append(
                f"{where}: {len(words)} columns; expected {_MIN_COLUMNS} to {len(COLUMNS)}"
                " (line skipped)"
            )
            continue
        values = dict(zip(COLUMNS, words))
        read.lines[(values["be_name"], values["srv_name"])] = StateLine(where, values)
    return read


def _definition(read: StateFile, where: str, text: str) -> None:
    target, _, line = text.partition(" ")
    backend, slash, name = target.partition("/")
    if not slash or not backend or not name or not line.strip():
        read.problems.append(
            f"{where}: expected '# add server BACKEND/SERVER ADDR:PORT [options]' (line skipped)"
        )
        return
    read.definitions[(backend, name)] = (line.strip(), where)


def state_file_path(config: Any, backend_spec: Any) -> Optional[str]:
    """
    The state file a backend reads (C{load-server-state-from-file}), or
    C{None}: C{global} reads C{server-state-file}, C{local} the
    backend's C{server-state-file-name} (by default its name); relative
    names are under C{server-state-base}, else beside the configuration
    file.
    """
    settings = config.global_settings
    how = backend_spec.load_server_state_from_file
    if how == "global":
        name = settings.server_state_file
    elif how == "local":
        name = backend_spec.server_state_file_name
        if name in (None, "use-backend-name"):
            name = backend_spec.name
    else:
        return None
    if name is None:
        return None
    base = settings.server_state_base
    if base is None:
        base = os.path.dirname(os.path.abspath(config.source or "."))
    return os.path.join(base, name)


def load_server_state(service: Any, only: Optional[Iterable[Tuple[str, str]]] = None) -> int:
    """
    Give the servers of C{service} the state their backend's state file
    records, and make again the servers it records as added at run time.

    @param only: At a reload, the servers the running process did not have
        (its own state, carried, is newer than any file): the file
        applies to those only.  C{None} at start: to every server.
    @return: How many servers were given a state.
    """
    config = service.config
    files: Dict[str, StateFile] = {}
    used: Dict[str, set] = {}
    wanted = None if only is None else set(only)
    applied = 0
    for spec in config.backends:
        path = state_file_path(config, spec)
        if path is None:
            continue
        if path not in files:
            files[path] = read_state_file(path)
            used[path] = set()
            for problem in files[path].problems:
                _log.warn("Server state: {problem}", problem=problem)
        read = files[path]
        backend = service.backends.get(spec.name)
        if backend is None:
            continue
        for (be_name, name), (line, where) in read.definitions.items():
            if be_name != spec.name or any(s.name == name for s in backend.servers):
                continue
            used[path].add((be_name, name))
            try:
                service.add_server(be_name, name, line)
                if wanted is not None:
                    wanted.add((be_name, name))
            except (ConfigError, ServerChangeError) as e:
                if isinstance(e, ConfigError):
                    reason = "; ".join(p.message for p in e.problems)
                else:
                    reason = str(e)
                _log.warn(
                    "Server state: {where}: server {backend}/{server} cannot be made again:"
                    " {reason} (line skipped)",
                    where=where,
                    backend=be_name,
                    server=name,
                    reason=reason,
                )
        for server in list(backend.servers):
            key = (spec.name, server.name)
            state = read.lines.get(key)
            if state is None:
                continue
            used[path].add(key)
            if wanted is not None and key not in wanted:
                continue
            refused = apply_state_line(service, server, state)
            if refused is None:
                applied += 1
            else:
                _log.warn(
                    "Server state: {where}: {problem} (line skipped)",
                    where=state.where,
                    problem=refused,
                )
    names = {spec.name for spec in config.backends}
    for path, read in files.items():
        for (be_name, name), state in read.lines.items():
            if (be_name, name) in used[path]:
                continue
            if be_name not in names:
                problem = f"no backend '{be_name}' in the configuration"
            elif path != state_file_path(config, _spec(config, be_name)):
                # Another backend's file, or one that does not load.
                continue
            else:
                problem = f"no server '{name}' in backend '{be_name}'"
            _log.warn(
                "Server state: {where}: {problem} (line skipped)",
                where=state.where,
                problem=problem,
            )
    return applied


def _spec(config: Any, name: str) -> Any:
    for spec in config.backends:
        if spec.name == name:
            return spec
    return None


def apply_state_line(service: Any, server: Any, state: StateLine) -> Optional[str]:
    """
    Give C{server} what C{state} records, HAProxy's way (see the module).

    @return: Why the line cannot be applied, or C{None} once applied.
    """
    values = state.values
    try:
        admin = int(values["srv_admin_state"])
        uweight = int(values["srv_uweight"])
        iweight = int(values["srv_iweight"])
        port = int(values["srv_port"])
        check_state = int(values.get("srv_check_state", "0"))
    except ValueError:
        return "a column that should be a number is not"
    if not 0 <= uweight <= 256 or not 0 <= iweight <= 256:
        return f"weight {uweight}/{iweight} out of range; allowed: 0-256"
    if not 0 <= port <= 65535:
        return f"port {port} out of range"
    address = values["srv_addr"]
    if address != "-" and not is_ip_literal(address):
        return f"{address!r} is not an IP address"
    spec = server.spec
    backend = server.backend
    runtime = (backend.name, server.name) in service.added_servers
    configured_maint = spec.disabled and not runtime
    if bool(admin & CMAINT) == configured_maint or runtime:
        # The configuration's own maintenance did not change: the file's
        # forced maintenance (or its absence) applies.
        if admin & FMAINT and server.admin != "maint":
            service.set_server_admin(server, "maint")
        elif not admin & (FMAINT | CMAINT) and server.admin == "maint":
            service.set_server_admin(server, "ready")
    if server.admin != "maint" and admin & FDRAIN and (iweight > 0 or spec.weight == 0):
        service.set_server_admin(server, "drain")
    if iweight == spec.weight and uweight != server.user_weight:
        server.set_weight(uweight)
    if address != "-" and (runtime or spec.address is None) and port:
        if (address, port) != (server.address, server.port):
            if server.address is None:
                server.address, server.port = address, port
                if server.eligible:
                    backend.balancer.server_up(server)
            else:
                service.set_server_address(server, address, port, "server-state file")
    if check_state & CHK_CONFIGURED and not check_state & CHK_ENABLED:
        try:
            service.set_health_checks(server, False)
        except KeyError:
            pass
    return None
