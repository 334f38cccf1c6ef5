"""
The parsed configuration: frozen attrs objects, independent of Twisted.

An embedding application may build these directly instead of reading an INI
file; L{l4lb.config.parser} produces exactly the same objects from C{lb.ini}.
All durations are in seconds (floats); C{None} means "not set".
"""

from __future__ import annotations

from typing import Optional, Tuple

import attr

from l4lb.config.dns import ResolversSpec, ServerTemplate
from l4lb.protect.cidr import AddressSet


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
    @ivar udp: Idle time of a UDP session, refreshed by datagrams in either
        direction (C{mode udp} only); a frontend's value wins over its
        backend's.
    """

    connect: Optional[float] = None
    client: Optional[float] = None
    server: Optional[float] = None
    tunnel: Optional[float] = None
    client_fin: Optional[float] = None
    server_fin: Optional[float] = None
    queue: Optional[float] = None
    check: Optional[float] = None
    udp: Optional[float] = None


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
        (C{None} for a flag).
    @ivar slowstart: Seconds over which a server that comes back UP (or
        out of maintenance) ramps from 1% to its full weight and
        C{maxconn}; 0: at once.
    @ivar line: Line number in the configuration file (0 when built in code).
    @ivar init_state: The health state before the first check, as in
        HAProxy 3.1: C{"up"} (up, one failed check marks it down),
        C{"fully-up"} (up, C{fall} failed checks mark it down), C{"down"}
        (down, one good check marks it up) or C{"fully-down"} (down,
        C{rise} good checks mark it up).
    @ivar agent_check: An agent is asked for the server's weight and state.
    @ivar agent_port: The agent's port.
    @ivar agent_inter: Seconds between agent checks; C{None} means C{inter}.
    @ivar agent_send: Text sent to the agent, as written (escapes such as
        C{\\n} not yet applied); C{None} sends nothing.
    @ivar agent_addr: The agent's address; C{None} means the server's.
    @ivar observe: C{"layer4"} to count connection errors on live traffic,
        or C{None}.
    @ivar error_limit: Consecutive live errors before C{on_error} acts.
    @ivar on_error: C{"fastinter"}, C{"fail-check"}, C{"sudden-death"} or
        C{"mark-down"}.
    @ivar on_marked_down: C{"shutdown-sessions"} or C{None}.
    @ivar on_marked_up: C{"shutdown-backup-sessions"} or C{None}.
    @ivar send_proxy: The PROXY protocol version of the header it receives
        first on each relayed connection: 1 (C{send-proxy}), 2
        (C{send-proxy-v2}) or 0 (none).
    @ivar check_send_proxy: Its health checks send a PROXY header too
        (C{check-send-proxy}); they also do when C{send_proxy} is set and
        neither C{port} nor C{addr} moves the check elsewhere.
    @ivar ssl: Relayed connections to it use TLS (C{ssl}).
    @ivar verify: C{"required"} (its certificate must be signed by a trusted
        CA and name C{tls_name}) or C{"none"} (C{verify}).
    @ivar ca_file: The PEM file of the CAs trusted to sign its certificate
        (C{ca-file}); C{None} means the system's trust store.
    @ivar sni: The TLS server name sent to it (C{sni}), or C{None}.
    @ivar verifyhost: The name its certificate must carry (C{verifyhost}),
        when it is not C{sni}.
    @ivar crt: A PEM file (certificate, chain, key) presented to it as a
        client certificate (C{crt}), or C{None}.
    @ivar check_ssl: Its health checks use TLS (C{check-ssl}).
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
    init_state: str = "up"
    agent_check: bool = False
    agent_port: Optional[int] = None
    agent_inter: Optional[float] = None
    agent_send: Optional[str] = None
    agent_addr: Optional[str] = None
    observe: Optional[str] = None
    error_limit: int = 10
    on_error: str = "fail-check"
    on_marked_down: Optional[str] = None
    on_marked_up: Optional[str] = None
    send_proxy: int = 0
    check_send_proxy: bool = False
    ssl: bool = False
    verify: str = "required"
    ca_file: Optional[str] = None
    sni: Optional[str] = None
    verifyhost: Optional[str] = None
    crt: Optional[str] = None
    check_ssl: bool = False
    slowstart: float = 0.0

    @property
    def tls_name(self) -> str:
        """
        The name sent as its TLS server name and checked against its
        certificate: C{sni}, else C{verifyhost}, else C{host}.
        """
        return self.sni or self.verifyhost or self.host


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TcpCheckRule:
    """
    One rule of a C{tcp-check} sequence (with C{option tcp-check}).

    @ivar action: C{"connect"}, C{"send"}, C{"send-binary"} or
        C{"expect"}.
    @ivar data: The bytes to send (C{send}, C{send-binary}), or the bytes
        to look for (C{expect string}, C{expect binary}).
    @ivar match: For C{expect}: C{"string"}, C{"rstring"}, C{"binary"} or
        C{"rbinary"}; empty otherwise.
    @ivar pattern: The argument as written (escapes applied), for
        messages; for C{rstring} and C{rbinary} the regular expression.
    @ivar negate: For C{expect}: the rule passes when the pattern is
        I{not} found (written C{expect ! string ...}).
    @ivar port: For C{connect}: the port to connect to instead of the
        check port.
    @ivar addr: For C{connect}: the address to connect to instead of the
        check address.
    @ivar line: Line number in the configuration file (0 when built in code).
    """

    action: str
    data: bytes = b""
    match: str = ""
    pattern: str = ""
    negate: bool = False
    port: Optional[int] = None
    addr: Optional[str] = None
    line: int = 0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class BindSpec:
    """
    One listening address of a frontend.

    @ivar endpoint: A Twisted server endpoint description, for example
        C{"tcp:80"} or C{"tcp6:8080:interface=\\:\\:1"}.
    @ivar text: The bind as written in the configuration, for messages.
    @ivar line: Line number in the configuration file (0 when built in code).
    @ivar accept_proxy: Connections from the frontend's C{accept-proxy-from}
        peers start with a PROXY protocol header (C{accept-proxy}).
    @ivar crt: For a bind that terminates TLS (C{ssl crt PATH}), the PEM
        file of its certificate, chain and key; C{None} for plain TCP (and
        for C{ssl:} endpoint descriptions, which carry their own).
    @ivar backlog: The listen backlog of this bind (C{backlog N}); 0 means
        the frontend's (see L{l4lb.tcp.backlog}).
    """

    endpoint: str
    text: str = ""
    line: int = 0
    accept_proxy: bool = False
    crt: Optional[str] = None
    backlog: int = 0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SniRoute:
    """
    One C{use_backend NAME = sni HOST [HOST ...]} rule of a frontend.

    @ivar backend: The backend that receives the matching connections.
    @ivar names: Host names (C{db.example.com}) and wildcards
        (C{*.example.com}), lowercased.
    @ivar line: Line number in the configuration file (0 when built in code).
    """

    backend: str
    names: Tuple[str, ...]
    line: int = 0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SourceRule:
    """
    One rule of a frontend's C{tcp-request connection} list:
    C{accept|reject if|unless [!]CONDITION}.

    @ivar action: C{"accept"} or C{"reject"}.
    @ivar negate: The condition is inverted (C{!}, or C{unless}).
    @ivar fetch: What the condition reads: C{"src"} (the source address is
        in C{addresses}), C{"src_conn_cur"} (the source's connections open
        now) or C{"src_conn_rate"} (its new connections over the stick
        table's period).
    @ivar addresses: The ranges of a C{src} condition, from the line and
        its C{-f} files.
    @ivar operator: How a counter compares with C{threshold}: C{"ge"},
        C{"gt"}, C{"le"}, C{"lt"} or C{"eq"}.
    @ivar threshold: The number a counter is compared with.
    @ivar text: The rule as written, for messages.
    @ivar line: Line number in the configuration file (0 when built in code).
    """

    action: str
    negate: bool
    fetch: str
    addresses: AddressSet = AddressSet()
    operator: str = ""
    threshold: int = 0
    text: str = ""
    line: int = 0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StickTableSpec:
    """
    A frontend's C{stick-table}: per-source counters.

    @ivar size: The most sources it holds.
    @ivar expire: Seconds after which an idle source is forgotten.
    @ivar conn_cur: It stores the connections open per source.
    @ivar conn_rate: The period of the stored connection rate in seconds,
        or C{None} when the rate is not stored.
    @ivar ipv6_prefix: IPv6 sources are counted per network of this prefix
        length (128: per address).
    @ivar line: Line number in the configuration file (0 when built in code).
    """

    size: int
    expire: float
    conn_cur: bool = True
    conn_rate: Optional[float] = 10.0
    ipv6_prefix: int = 128
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
    @ivar mode: C{"tcp"} or C{"udp"}.
    @ivar dontlognull: Do not log connections that carried no data
        (C{option dontlognull}).
    @ivar maxsessions: Concurrent UDP sessions of this frontend (C{mode
        udp}); 0 means derived from the file-descriptor limit.
    @ivar log_format: How its connection logs are written (C{log-format}):
        C{"tcplog"} (HAProxy's line) or C{"json"} (one object per line).
    @ivar inspect_delay: Seconds its stages may wait for a client's first
        bytes (C{tcp-request inspect-delay}); C{None} means C{timeout
        client}.
    @ivar sni_routes: Its C{use_backend NAME = sni HOST ...} rules, in file
        order.
    @ivar sni_fallback: Where a client goes when it sends no readable TLS
        ClientHello in time: C{"default"} (the default backend) or
        C{"reject"} (closed).
    @ivar sni_max_hello: The largest ClientHello read, in bytes.
    @ivar accept_proxy_from: The peer address ranges (C{10.0.0.0/8},
        C{::1}) whose PROXY protocol headers its C{accept-proxy} binds read
        (C{accept-proxy-from}).
    @ivar source_rules: Its C{tcp-request connection} rules, in order; the
        first whose condition holds decides, and a connection no rule
        decides is accepted.
    @ivar stick_table: Its per-source counters, or C{None}.
    @ivar rate_limit_sessions: New connections it accepts per second at
        most (C{rate-limit sessions}); 0 means no limit.
    @ivar backlog: The listen backlog of its TCP binds (C{backlog}); 0
        means its C{maxconn}, else the global one (see L{l4lb.tcp.backlog}).
    """

    name: str
    binds: Tuple[BindSpec, ...]
    default_backend: str
    maxconn: int = 0
    timeouts: Timeouts = Timeouts()
    log: bool = True
    mode: str = "tcp"
    dontlognull: bool = False
    maxsessions: int = 0
    log_format: str = "tcplog"
    inspect_delay: Optional[float] = None
    sni_routes: Tuple["SniRoute", ...] = ()
    sni_fallback: str = "default"
    sni_max_hello: int = 16384
    accept_proxy_from: Tuple[str, ...] = ()
    source_rules: Tuple[SourceRule, ...] = ()
    stick_table: Optional[StickTableSpec] = None
    rate_limit_sessions: int = 0
    backlog: int = 0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class UdpCheckSpec:
    """
    The datagram exchange of a UDP health check (C{udp-check ...} keys).

    @ivar send: The datagram sent to the server.
    @ivar expect: C{"any"} (any reply passes), C{"string"} or C{"binary"}
        (the reply must contain C{pattern}).
    @ivar pattern: The bytes a reply must contain.
    @ivar dns_name: When set, each check sends a DNS query for this name
        (instead of C{send}) and passes on any DNS response to it.
    @ivar dns_type: The query type of the DNS check, e.g. C{"A"}.
    """

    send: bytes = b""
    expect: str = "any"
    pattern: bytes = b""
    dns_name: Optional[str] = None
    dns_type: str = "A"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ServersFrom:
    """
    Where a backend takes servers beyond its C{server} lines
    (C{servers-from}; L{l4lb.etcd}).

    @ivar provider: The store: C{"etcd"}.
    @ivar endpoints: The store's client URLs, tried in turn.
    @ivar prefix: The key prefix watched; each key under it is a server.
    """

    provider: str
    endpoints: Tuple[str, ...]
    prefix: str


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
    @ivar mode: C{"tcp"} or C{"udp"}.
    @ivar allbackups: When no active server is up, use every backup server
        rather than the first one only (HAProxy's C{option allbackups}).
    @ivar udp_responses: Replies the server sends for each datagram from
        the client: a UDP session ends once every datagram it took has had
        them; 0 means no limit.
    @ivar udp_requests: A client's UDP session ends after this many
        datagrams from it, so that its next datagram picks a server again
        (1: every datagram is balanced); 0 means no limit.
    @ivar udp_check: What a health check of its UDP servers sends and
        expects; C{None} sends an empty datagram and fails only on ICMP
        port unreachable.
    @ivar tcp_check: Health checks run the C{tcp_check_rules} sequence
        (C{option tcp-check}) instead of a plain connect.
    @ivar tcp_check_rules: The C{tcp-check} rules, in order.
    @ivar log_health_checks: Log every change of a check's status, not only
        changes of a server's state (C{option log-health-checks}).
    @ivar servers_from: The store its other servers come from
        (C{servers-from}), or C{None}.
    @ivar templates: Its C{server-template} lines
        (L{l4lb.config.dns.ServerTemplate}); their slots are in
        C{servers}.
    @ivar load_server_state_from_file: Which server-state file gives its
        servers their state at start and reload
        (C{load-server-state-from-file}): C{"global"}, C{"local"} or
        C{"none"}.
    @ivar server_state_file_name: Its own server-state file with
        C{local} (C{server-state-file-name}); C{None} is the backend's
        name.
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
    udp_responses: int = 0
    udp_requests: int = 0
    udp_check: Optional[UdpCheckSpec] = None
    tcp_check: bool = False
    tcp_check_rules: Tuple[TcpCheckRule, ...] = ()
    log_health_checks: bool = False
    servers_from: Optional[ServersFrom] = None
    templates: Tuple[ServerTemplate, ...] = ()
    load_server_state_from_file: str = "none"
    server_state_file_name: Optional[str] = None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class LogTarget:
    """
    Where connection logs go.

    @ivar kind: C{"stdout"}, C{"stderr"}, C{"file"}, C{"none"}, C{"syslog"}
        (a local syslog daemon's UNIX datagram socket) or C{"udp"} (a
        syslog server over UDP).
    @ivar path: The file's path when C{kind} is C{"file"}, the socket's
        path when it is C{"syslog"}.
    @ivar host: The syslog server's IP address when C{kind} is C{"udp"}.
    @ivar port: The syslog server's UDP port.
    @ivar facility: The syslog facility, e.g. C{"local0"}.
    @ivar level: The least important syslog severity sent, e.g.
        C{"notice"}; less important messages are not sent.
    """

    kind: str = "stdout"
    path: Optional[str] = None
    host: Optional[str] = None
    port: int = 514
    facility: str = "local0"
    level: str = "debug"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class GlobalSettings:
    """
    The C{[global]} section.

    @ivar maxconn: Concurrent connection limit of the whole process; 0 means
        it is derived from the file-descriptor limit when the service starts.
    @ivar log: Where connection logs go.
    @ivar spread_checks: Up to this percentage of random jitter is added to
        health check intervals (C{spread-checks}, 0-50).
    @ivar stats_socket: The runtime API's UNIX socket (C{stats socket}), or
        C{None} for none.
    @ivar stats_bind: Where the statistics web pages listen (C{stats
        bind}), or C{None} for nowhere.
    @ivar stats_auth: The C{(user, password)} the statistics pages ask
        for (C{stats auth}), or C{None} for none.
    @ivar hard_stop_after: Seconds established connections may take to
        finish once the process is asked to stop (C{hard-stop-after});
        those still open then are closed.
    @ivar relay: How established TCP connections are relayed
        (C{tune.relay}): C{"lean"} (sockets served directly, where the
        platform allows) or C{"classic"} (through Twisted's transports).
    @ivar nbproc: How many worker processes accept and relay the TCP
        connections (C{nbproc}); 1 means the main process does it all
        (L{l4lb.workers}).
    @ivar maxpipes: How many pipes the lean relay of one process may use
        at once to splice bulk transfers (C{maxpipes}); C{None} means a
        quarter of C{maxconn}, as HAProxy's default.
    @ivar stats_timeout: Seconds an idle connection to the runtime API or
        to the statistics pages stays open (C{stats timeout}).
    @ivar stats_maxconn: The most connections each of l4lb's own
        listeners (the runtime API, the statistics pages) serves at once,
        unless its own C{maxconn} option says otherwise (C{stats maxconn}).
    @ivar grace: Seconds between SIGTERM and the closing of the listeners,
        during which the instance keeps serving but is not ready
        (C{grace}; L{l4lb.readiness}).
    @ivar server_state_file: The server-state file that backends with
        C{load-server-state-from-file = global} read at start and reload
        (C{server-state-file}), or C{None}.
    @ivar server_state_base: The directory relative server-state file
        names are found in (C{server-state-base}), or C{None}: the
        configuration file's directory.
    """

    maxconn: int = 0
    log: LogTarget = LogTarget()
    spread_checks: int = 0
    stats_socket: Optional["StatsSocket"] = None
    stats_bind: Optional["StatsBind"] = None
    stats_auth: Optional[Tuple[str, str]] = None
    hard_stop_after: float = 30.0
    relay: str = "lean"
    nbproc: int = 1
    maxpipes: Optional[int] = None
    stats_timeout: float = 10.0
    stats_maxconn: int = 10
    grace: float = 0.0
    server_state_file: Optional[str] = None
    server_state_base: Optional[str] = None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StatsSocket:
    """
    Where the runtime API listens: C{stats socket = PATH [mode OCTAL]
    [level admin] [maxconn N]}.

    @ivar path: The UNIX socket's path.
    @ivar mode: Its permission bits (0600 unless C{mode} says otherwise).
    @ivar maxconn: The most connections it serves at once, or C{None} for
        the global C{stats maxconn}.
    @ivar expose_fd: Whether a new process may take the listening sockets
        over it (C{expose-fd listeners}; L{l4lb.handover}).
    """

    path: str
    mode: int = 0o600
    maxconn: Optional[int] = None
    expose_fd: bool = False


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StatsBind:
    """
    Where the statistics web pages listen: C{stats bind = [HOST]:PORT
    [maxconn N]}.

    @ivar host: An IP address; C{127.0.0.1} when none is written.
    @ivar port: The TCP port.
    @ivar maxconn: The most connections they serve at once, or C{None} for
        the global C{stats maxconn}.
    """

    host: str
    port: int
    maxconn: Optional[int] = None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Config:
    """
    A whole configuration.

    @ivar global_settings: The C{[global]} section.
    @ivar frontends: Every frontend, in file order.
    @ivar backends: Every backend, in file order.
    @ivar source: The file it was read from, or C{"<memory>"}.
    @ivar resolvers: The C{[resolvers]} sections
        (L{l4lb.config.dns.ResolversSpec}), in file order.
    """

    global_settings: GlobalSettings = GlobalSettings()
    frontends: Tuple[Frontend, ...] = ()
    backends: Tuple[Backend, ...] = ()
    source: str = "<memory>"
    resolvers: Tuple[ResolversSpec, ...] = ()

    def backend(self, name: str) -> Backend:
        """
        Return the backend called C{name}.

        @raise KeyError: When there is none.
        """
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)
