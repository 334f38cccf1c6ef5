"""
The runtime API's commands, HAProxy's text commands on one line each.

L{AdminCommands.run} takes one command line and returns the answer text.
A command that cannot be run (unknown, malformed, naming nothing) raises
L{CommandError} with a one-line reason, before anything is changed.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, List, Tuple

from twisted.logger import Logger

import l4lb
from l4lb.admin import servercmds
from l4lb.admin.showstat import ShowError, show_info, show_stat
from l4lb.admin.stats import stat_rows
from l4lb.admin.tables import show_table
from l4lb.interfaces import IBalancerRuntime
from l4lb.readiness import SETTABLE, STOPPING, readiness
from l4lb.runtime import clear_counters as _clear
from l4lb.statefile import show_servers_state
from l4lb.tcp import lean
_log = Logger(namespace="l4lb")

HELP = """\
The following commands are valid at this level:
  help                                    : this list
  show info [typed|json]                  : process information
  show stat [typed|json]                  : statistics, HAProxy's CSV (or typed, JSON)
  show servers state [BACKEND]            : every server's runtime state
  show sess                               : open connections
  show settings                           : every effective setting of the running objects
  show table [FRONTEND]                   : stick tables (one: with its entries)
  set server B/S state ready|drain|maint  : change a server's admin state
  set server B/S weight W[%]              : change a server's weight
  set weight B/S W[%]                     : same as 'set server B/S weight W[%]'
  get weight B/S                          : a server's weight and its configured weight
  set server B/S addr IP [port P]         : send a server's new connections elsewhere
  add server B/S ADDR:PORT [options]      : add a server (in maintenance unless 'enabled')
  del server B/S                          : delete a server in maintenance without connections
  enable server B/S                       : same as 'set server B/S state ready'
  disable server B/S                      : same as 'set server B/S state maint'
  enable health B/S                       : resume a server's health checks
  disable health B/S                      : stop a server's health checks (it counts as up)
  shutdown sessions server B/S            : close every connection of a server
  set maxconn frontend F N                : change a frontend's connection limit (0: none)
  clear counters                          : reset the cumulative counters
  reload                                  : re-read the configuration file and apply it
  upgrade                                 : hand over to a new process running the code installed now
  show ready                              : whether this instance asks for traffic, and why not
  set instance state ready|drain          : drain the whole instance (not ready, still serving)
"""


def _etcd_status(service: IBalancerRuntime) -> Tuple[int, int]:
    """
    How many C{servers-from} prefixes are watched, and how many of them
    cannot reach etcd now.
    """
    etcd = service.etcd
    return (0, 0) if etcd is None else etcd.status()


def _started(session: Any) -> float:
    """
    When a TCP connection was accepted, or a UDP session started.
    """
    accepted = getattr(session, "accepted", None)
    return float(session.started if accepted is None else accepted)


class CommandError(Exception):
    """
    A command that cannot be run; the message is one line for the user.
    """


_ADMIN_CODES = {"ready": 0, "maint": 1, "drain": 8}


class AdminCommands:
    """
    Runs the runtime API's commands against one balancer.

    @ivar service: The running balancer.
    @ivar clock: What tells the time (C{seconds()}).
    @ivar started: When the process started (clock seconds).
    """

    def __init__(self, service: IBalancerRuntime, clock: Any) -> None:
        self.service = service
        self.clock = clock
        self.started = clock.seconds()
        self._table: List[Tuple[Tuple[str, ...], Callable[[List[str]], str]]] = [
            (("help",), self._help),
            (("show", "info"), self._show_info),
            (("show", "stat"), self._show_stat),
            (("show", "servers", "state"), self._show_servers_state),
            (("show", "sess"), self._show_sess),
            (("show", "settings"), self._show_settings),
            (("show", "table"), self._show_table),
            (("set", "server"), self._set_server),
            (("set", "weight"), self._set_weight),
            (("get", "weight"), self._get_weight),
            (("enable", "server"), lambda a: self._admin(a, "ready", "enable server")),
            (("disable", "server"), lambda a: self._admin(a, "maint", "disable server")),
            (("enable", "health"), lambda a: self._health(a, True)),
            (("disable", "health"), lambda a: self._health(a, False)),
            (("shutdown", "sessions", "server"), self._shutdown_sessions),
            (("set", "maxconn", "frontend"), self._set_maxconn),
            (("clear", "counters"), self._clear_counters),
            (("reload",), self._reload),
            (("show", "ready"), self._show_ready),
            (("add", "server"), lambda a: self._servers(servercmds.add_server, a)),
            (("del", "server"), lambda a: self._servers(servercmds.del_server, a)),
            (("set", "instance", "state"), self._set_instance_state),
        ]

    def run(self, line: str) -> str:
        """
        Run one command line.

        @return: The answer (possibly empty), each line ending in C{\\n}.
        @raise CommandError: When the command is unknown or invalid.
        """
        words = line.split()
        if not words:
            return ""
        # The longest matching prefix wins: 'set maxconn frontend' before 'set'.
        for prefix, handler in sorted(self._table, key=lambda e: -len(e[0])):
            if tuple(w.lower() for w in words[: len(prefix)]) == prefix:
                return handler(words[len(prefix) :])
        raise CommandError(f"Unknown command '{' '.join(words[:3])}'; 'help' lists the commands.")

    # -- lookups -----------------------------------------------------------

    def _server(self, args: List[str], usage: str) -> Any:
        if not args or "/" not in args[0]:
            raise CommandError(f"Require 'backend/server'; usage: {usage}.")
        backend_name, _, server_name = args[0].partition("/")
        if backend_name not in self.service.backends:
            raise CommandError(f"No such backend '{backend_name}'.")
        try:
            return self.service.find_server(backend_name, server_name)
        except KeyError:
            raise CommandError(f"No such server '{backend_name}/{server_name}'.")

    # -- show --------------------------------------------------------------

    def _help(self, args: List[str]) -> str:
        return HELP

    def _show_table(self, args: List[str]) -> str:
        if len(args) > 1:
            raise CommandError("Usage: show table [FRONTEND].")
        text = show_table(self.service, self.clock.seconds(), args[0] if args else None)
        if text is None:
            raise CommandError(f"No stick table on frontend '{args[0]}'.")
        return text

    def _show_info(self, args: List[str]) -> str:
        limiter = self.service.limiter
        total = sum(f.total for f in self.service.frontends.values())
        now = self.clock.seconds()
        uptime = int(now - self.started)
        days, rest = divmod(uptime, 86400)
        info = [
            ("Name", "l4lb"),
            ("Version", l4lb.__version__),
            ("Generation", str(getattr(self.service, "generation", 1))),
            ("Pid", str(os.getpid())),
            ("Uptime", f"{days}d {rest // 3600}h{rest % 3600 // 60:02d}m{rest % 60:02d}s"),
            ("Uptime_sec", str(uptime)),
            ("Maxconn", str(limiter.maxconn)),
            ("CurrConns", str(limiter.current + _workers(self.service, "current"))),
            ("CumConns", str(total + _workers(self.service, "total"))),
            # Per process, as HAProxy's; with nbproc, the workers' pipes.
            ("Maxpipes", str(lean.PIPES.limit)),
            ("PipesUsed", str(lean.PIPES.open + _workers(self.service, "pipes"))),
            # A pipe is closed with its connection: none is kept idle.
            ("PipesFree", "0"),
            ("Frontends", str(len(self.service.frontends) + len(self.service.udp_frontends))),
            ("Backends", str(len(self.service.backends))),
            ("DroppedLogs", str(getattr(self.service.sink, "dropped", 0))),
            # The prefixes of 'servers-from' watched, and those cut off.
            ("EtcdWatches", str(_etcd_status(self.service)[0])),
            ("EtcdUnreachable", str(_etcd_status(self.service)[1])),
            ("Stopping", "1" if self.service.instance_state == STOPPING else "0"),
            ("Ready", "1" if readiness(self.service).ready else "0"),
            ("InstanceState", self.service.instance_state),
        ]
        try:
            return show_info(args, info)
        except ShowError as e:
            raise CommandError(str(e))

    def _show_ready(self, args: List[str]) -> str:
        if args:
            raise CommandError("Usage: show ready.")
        return readiness(self.service).text()

    def _set_instance_state(self, args: List[str]) -> str:
        if len(args) != 1 or args[0].lower() not in SETTABLE:
            raise CommandError("Usage: set instance state ready|drain.")
        if self.service.instance_state == STOPPING:
            raise CommandError("The instance is stopping; its state cannot change.")
        state = args[0].lower()
        if state != self.service.instance_state:
            self.service.instance_state = state
            _log.warn(
                "Instance set to {state} by stats socket command: {ready}",
                state=state.upper(),
                ready=readiness(self.service).text().strip(),
            )
        return ""

    def _show_stat(self, args: List[str]) -> str:
        try:
            return show_stat(args, lambda: stat_rows(self.service, self.clock.seconds()))
        except ShowError as e:
            raise CommandError(str(e))

    def _show_servers_state(self, args: List[str]) -> str:
        if len(args) > 1:
            raise CommandError("Usage: show servers state [BACKEND].")
        try:
            return show_servers_state(self.service, self.clock.seconds(), args[0] if args else None)
        except KeyError:
            raise CommandError("Can't find backend.")

    def _servers(self, command: Callable[[IBalancerRuntime, List[str]], str], args: List[str]) -> str:
        try:
            return command(self.service, args)
        except servercmds.ServerCommandError as e:
            raise CommandError(str(e))

    def _show_settings(self, args: List[str]) -> str:
        from l4lb.describe import describe

        if args:
            raise CommandError("Usage: show settings.")
        settings = describe(self.service)
        return "".join(f"{key} = {settings[key]!r}\n" for key in sorted(settings))

    def _show_sess(self, args: List[str]) -> str:
        now = self.clock.seconds()
        lines = []
        for session in sorted(self.service.open_sessions(), key=_started):
            server = getattr(session, "server", None)
            backend = server.backend if server is not None else session.backend
            # Waiting in a queue: no server yet (HAProxy's "<none>").
            where = (
                f" be={getattr(backend, 'name', '<NONE>')}"
                f" srv={server.name if server is not None else '<none>'}"
            )
            if hasattr(session, "accepted"):
                lines.append(
                    f"{id(session):#x}: proto=tcp src={session.client_host}:"
                    f"{session.client_port} fe={session.frontend.name}{where}"
                    f" state={session.state} age={int(now - session.accepted)}s"
                    f" bin={session.bytes_in} bout={session.bytes_out}"
                )
            else:
                host, port = session.client
                lines.append(
                    f"{id(session):#x}: proto=udp src={host}:{port}"
                    f" fe={session.frontend.name}{where}"
                    f" age={int(now - session.started)}s bin={session.bytes_in}"
                    f" bout={session.bytes_out}"
                )
        return "".join(line + "\n" for line in lines)

    # -- changes -----------------------------------------------------------

    def _set_server(self, args: List[str]) -> str:
        usage = (
            "set server B/S state ready|drain|maint, set server B/S weight W[%],"
            " or set server B/S addr IP [port PORT]"
        )
        server = self._server(args, usage)
        if len(args) >= 2 and args[1].lower() == "addr":
            return self._servers(lambda service, a: servercmds.set_server_addr(service, server, a), args)
        if len(args) != 3:
            raise CommandError(f"Usage: {usage}.")
        what, value = args[1].lower(), args[2]
        if what == "state":
            state = value.lower()
            if state not in _ADMIN_CODES:
                raise CommandError(f"Unknown state '{value}'; allowed: ready, drain, maint.")
            self.service.set_server_admin(server, state)
            return ""
        if what == "weight":
            server.set_weight(_parse_weight(value, server.spec.weight))
            return ""
        raise CommandError(f"Unknown server setting '{args[1]}'; allowed: state, weight.")

    def _set_weight(self, args: List[str]) -> str:
        # HAProxy's older spelling of 'set server B/S weight W'.
        server = self._server(args, "set weight B/S W[%]")
        if len(args) != 2:
            raise CommandError("Require <weight> or <weight%>.")
        server.set_weight(_parse_weight(args[1], server.spec.weight))
        return ""

    def _get_weight(self, args: List[str]) -> str:
        server = self._server(args, "get weight B/S")
        if len(args) != 1:
            raise CommandError("Usage: get weight B/S.")
        return f"{server.user_weight} (initial {server.spec.weight})\n"

    def _admin(self, args: List[str], state: str, name: str) -> str:
        server = self._server(args, f"{name} B/S")
        if len(args) != 1:
            raise CommandError(f"Usage: {name} B/S.")
        self.service.set_server_admin(server, state)
        return ""

    def _health(self, args: List[str], enable: bool) -> str:
        name = "enable health" if enable else "disable health"
        server = self._server(args, f"{name} B/S")
        if len(args) != 1:
            raise CommandError(f"Usage: {name} B/S.")
        try:
            self.service.set_health_checks(server, enable)
        except KeyError:
            raise CommandError(f"Server '{server.backend.name}/{server.name}' has no health check.")
        return ""

    def _shutdown_sessions(self, args: List[str]) -> str:
        server = self._server(args, "shutdown sessions server B/S")
        if len(args) != 1:
            raise CommandError("Usage: shutdown sessions server B/S.")
        self.service.kill_sessions(server, "K")
        return ""

    def _set_maxconn(self, args: List[str]) -> str:
        if len(args) != 2:
            raise CommandError("Usage: set maxconn frontend F N.")
        if args[0] not in self.service.frontends:
            raise CommandError(f"No such frontend '{args[0]}'.")
        self.service.set_frontend_maxconn(args[0], _parse_count(args[1]))
        return ""

    def _reload(self, args: List[str]) -> str:
        if args:
            raise CommandError("'reload' takes no argument.")
        result = self.service.reload()
        return "".join(f"{line}\n" for line in [*result.errors, *result.warnings, result.summary()])

    def _clear_counters(self, args: List[str]) -> str:
        if args and args != ["all"]:
            raise CommandError("Usage: clear counters [all].")
        self.service.clear_counters()
        return ""


def clear_counters(service: IBalancerRuntime) -> None:
    """
    Reset the cumulative counters of C{service}'s frontends, backends and
    servers (C{clear counters}), in this process only.
    """
    _clear(service.frontends.values(), service.backends.values())


def _workers(service: IBalancerRuntime, what: str) -> int:
    """
    The workers' C{"current"} or C{"total"} connections (C{nbproc}), or
    0 when the process has no workers.
    """
    workers = service.workers
    if workers is None:
        return 0
    return int(workers.reading().get(what, 0))


#: The largest count the runtime API takes (C{set maxconn frontend}), as
#: HAProxy's (a C int): a larger one is refused, never stored.
MAX_COUNT = 2**31 - 1

#: ASCII digits only: C{str.isdigit} and a regular expression's C{\d} also
#: take other scripts' digits (and C{isdigit} superscripts, which C{int()}
#: then refuses with an error).
_COUNT = re.compile(r"^([+-]?)([0-9]+)$")

_WEIGHT = re.compile(r"^([0-9]+)(%?)$")

#: Weights are 0-256, so no valid weight or percentage needs more digits;
#: checked before C{int()}, which refuses thousands of digits with an error.
_WEIGHT_DIGITS = 6


def _parse_count(text: str) -> int:
    """
    A connection count as C{set maxconn frontend} takes it: 0 to
    L{MAX_COUNT}, with HAProxy's reply for one out of range.
    """
    match = _COUNT.match(text)
    if match is None:
        raise CommandError(
            f"'{text}' is not a connection count; expected an integer from 0 to {MAX_COUNT}."
        )
    sign, digits = match.groups()
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(MAX_COUNT)) or (sign == "-" and digits != "0"):
        raise CommandError("Value out of range.")
    value = int(digits)
    if value > MAX_COUNT:
        raise CommandError("Value out of range.")
    return value


def _parse_weight(text: str, configured: int) -> int:
    """
    A weight as C{set server ... weight} takes it: an absolute 0-256, or a
    percentage of the configured weight.
    """
    match = _WEIGHT.match(text)
    if match is None:
        raise CommandError(f"'{text}' is not a weight; expected 0-256 or a percentage such as 50%.")
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > _WEIGHT_DIGITS:
        # Above any weight or percentage that can give one; how far above
        # does not matter.
        value = 10**_WEIGHT_DIGITS
    else:
        value = int(digits)
    if match.group(2):
        # Rounded up, so that a non-zero share of a non-zero weight stays
        # non-zero.
        value = (configured * value + 99) // 100
        if value > 256:
            raise CommandError(
                f"Weight {text} of the configured {configured} is above 256; allowed: 0-256."
            )
    elif value > 256:
        raise CommandError("Absolute weight can only be between 0 and 256 inclusive.")
    return value
