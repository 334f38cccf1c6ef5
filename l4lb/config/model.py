"""
The parsed configuration: frozen attrs objects, independent of Twisted.

An embedding application may build these directly instead of reading an INI
file; L{l4lb.config.parser} produces exactly the same objects from C{lb.ini}.
All durations are in seconds (floats); C{None} means "not set".
"""

from __future__ import annotations

from typing import Optional, Tuple

import attr


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Timeouts:
    """
    HAProxy's timeouts, in seconds.  C{None} means the timeout is not set.

    @ivar connect: Time allowed for one connection attempt to a server.
    @ivar client: Inactivity allowed on the client side.
    @ivar server: Inactivity allowed on the server side.
    @ivar tunnel: When set, replaces C{client} and C{server} once the
        connection to the server is established.
    @ivar client_fin: Inactivity allowed on the client side once the client
        has half-closed; defaults to C{client}.
    @ivar server_fin: Inactivity allowed on the server side once the server
        has half-closed; defaults to C{server}.
    @ivar queue: Time a connection may wait for a free server slot; defaults
        to C{connect}.
    @ivar check: Extra read timeout for a health check once connected.
    """

    connect: Optional[float] = None
    client: Optional[float] = None
    server: Optional[float] = None
    tunnel: Optional[float] = None
    client_fin: Optional[float] = None
    server_fin: Optional[float] = None
    queue: Optional[float] = None
    check: Optional[float] = None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ServerSpec:
    """
    One C{server NAME = ADDRESS:PORT [options]} line.

    @ivar name: The server's name, case kept.
    @ivar host: The host as written: an IPv4 or IPv6 literal, or a host name.
    @ivar port: The TCP port, 1-65535.
    @ivar address: The IP address to connect to.  For a literal C{host} it is
        C{host} itself; for a host name it is C{None} until
        L{l4lb.config.resolve.resolve_config} fills it in.
    @ivar weight: 0-256; 0 means the server receives no new connections.
    @ivar backup: Used only when no active server is up.
    @ivar maxconn: Concurrent connection limit; 0 means no limit.
    @ivar maxqueue: Queue length limit; 0 means no limit.
    @ivar disabled: The server starts in maintenance.
    @ivar check: Health checks are enabled.
    @ivar inter: Seconds between checks while UP.
    @ivar fastinter: Seconds between checks while changing state.
    @ivar downinter: Seconds between checks while DOWN.
    @ivar rise: Consecutive successes to go UP.
    @ivar fall: Consecutive failures to go DOWN.
    @ivar check_port: Port to check instead of C{port}.
    @ivar check_addr: Address to check instead of C{address}.
    @ivar options: Every option word as written, in order, with its value
        (C{None} for a flag), for options that a later release acts on.
    @ivar line: Line number in the configuration file (0 when built in code).
    """

    name: str
    host: str
    port: int
    address: Optional[str] = None
    weight: int = 1
    backup: bool = False
    maxconn: int = 0
    maxqueue: int = 0
    disabled: bool = False
    check: bool = False
    inter: float = 2.0
    fastinter: Optional[float] = None
    downinter: Optional[float] = None
    rise: int = 2
    fall: int = 3
    check_port: Optional[int] = None
    check_addr: Optional[str] = None
    options: Tuple[Tuple[str, Optional[str]], ...] = ()
    line: int = 0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class BindSpec:
    """
    One listening address of a frontend.

    @ivar endpoint: A Twisted server endpoint description, for example
        C{"tcp:80"} or C{"tcp6:8080:interface=\\:\\:1"}.
    @ivar text: The bind as written in the configuration, for messages.
    @ivar line: Line number in the configuration file (0 when built in code).
    """

    endpoint: str
    text: str = ""
    line: int = 0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Frontend:
    """
    A C{[frontend NAME]} section (or the frontend half of C{[listen NAME]}).

    @ivar name: The frontend's name.
    @ivar binds: Where it listens.
    @ivar default_backend: The name of the backend that receives its
        connections.
    @ivar maxconn: Concurrent connection limit for this frontend; 0 means only
        the global limit applies.
    @ivar timeouts: Timeouts after C{[defaults]}; the frontend uses C{client}
        and C{client_fin}.
    @ivar log: Whether connections of this frontend are logged.
    @ivar mode: C{"tcp"}.
    @ivar dontlognull: Do not log connections that carried no data
        (C{option dontlognull}).
    """

    name: str
    binds: Tuple[BindSpec, ...]
    default_backend: str
    maxconn: int = 0
    timeouts: Timeouts = Timeouts()
    log: bool = True
    mode: str = "tcp"
    dontlognull: bool = False


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Backend:
    """
    A C{[backend NAME]} section (or the backend half of C{[listen NAME]}).

    @ivar name: The backend's name.
    @ivar servers: Its servers, in file order.
    @ivar balance: The balancing algorithm's name, e.g. C{"roundrobin"}.
    @ivar balance_args: The algorithm's arguments, e.g. C{("3",)} for
        C{random(3)}.
    @ivar hash_type: C{"map-based"} or C{"consistent"}.
    @ivar hash_balance_factor: Bounded-load factor in percent; 0 means off.
    @ivar retries: Connection attempts after the first that fails.
    @ivar redispatch: 0 = off; a negative N redispatches on the Nth retry
        before the last (-1: the last retry); a positive P on every Pth
        retry.
    @ivar timeouts: Timeouts after C{[defaults]}; the backend uses
        C{connect}, C{server}, C{server_fin}, C{tunnel}, C{queue} and
        C{check}.
    @ivar mode: C{"tcp"}.
    @ivar allbackups: When no active server is up, use every backup server
        rather than the first one only (HAProxy's C{option allbackups}).
    """

    name: str
    servers: Tuple[ServerSpec, ...]
    balance: str = "roundrobin"
    balance_args: Tuple[str, ...] = ()
    hash_type: str = "map-based"
    hash_balance_factor: int = 0
    retries: int = 3
    redispatch: int = 0
    timeouts: Timeouts = Timeouts()
    mode: str = "tcp"
    allbackups: bool = False


@attr.s(frozen=True, slots=True, auto_attribs=True)
class LogTarget:
    """
    Where connection logs go.

    @ivar kind: C{"stdout"}, C{"stderr"}, C{"file"} or C{"none"}.
    @ivar path: The file's path when C{kind} is C{"file"}.
    """

    kind: str = "stdout"
    path: Optional[str] = None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class GlobalSettings:
    """
    The C{[global]} section.

    @ivar maxconn: Concurrent connection limit of the whole process; 0 means
        it is derived from the file-descriptor limit when the service starts.
    @ivar log: Where connection logs go.
    @ivar spread_checks: Up to this percentage of random jitter is added to
        health check intervals (C{spread-checks}, 0-50).
    """

    maxconn: int = 0
    log: LogTarget = LogTarget()
    spread_checks: int = 0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Config:
    """
    A whole configuration.

    @ivar global_settings: The C{[global]} section.
    @ivar frontends: Every frontend, in file order.
    @ivar backends: Every backend, in file order.
    @ivar source: The file it was read from, or C{"<memory>"}.
    """

    global_settings: GlobalSettings = GlobalSettings()
    frontends: Tuple[Frontend, ...] = ()
    backends: Tuple[Backend, ...] = ()
    source: str = "<memory>"

    def backend(self, name: str) -> Backend:
        """
        Return the backend called C{name}.

        @raise KeyError: When there is none.
        """
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)
