"""
The contracts between l4lb's parts, as zope interfaces.
"""

from __future__ import annotations

from typing import Any, List, Optional

from zope.interface import Attribute, Interface


class IBalancer(Interface):
    """
    Chooses a server of one backend for each new connection.

    A balancer sees the backend's servers (L{l4lb.pool.Server} objects) and
    keeps whatever index it needs.  Every hook but L{pick} may be a no-op;
    L{l4lb.balancers.base.BalancerBase} provides those defaults.
    """

    name = Attribute("The algorithm's name as written after C{balance =}.")

    needs_client_address = Attribute(
        "True when L{pick} uses the client's address (hashing algorithms);"
        " callers may then pass C{None} when they have none."
    )

    dynamic_weights = Attribute(
        "True when a change of a server's weight takes effect at once"
        " without moving clients (HAProxy's dynamic algorithms), so that"
        " C{slowstart} ramps the weight; False for static ones, where it"
        " only ramps C{maxconn}.  Optional: a balancer without it is"
        " taken as dynamic."
    )

    def pick(client_address, avoid):  # type: ignore[no-untyped-def]
        """
        Choose a server for a new connection.

        @param client_address: The client's IP address as text, or C{None}.
        @param avoid: A container of servers not to choose (those that
            already failed this connection), unless nothing else is
            eligible.
        @return: A L{l4lb.pool.Server} that may take a connection now, or
            C{None} when none can.
        """

    def server_up(server):  # type: ignore[no-untyped-def]
        """
        C{server} became eligible (up, ready, non-zero weight).
        """

    def server_down(server):  # type: ignore[no-untyped-def]
        """
        C{server} stopped being eligible.
        """

    def weight_changed(server):  # type: ignore[no-untyped-def]
        """
        C{server}'s effective weight changed.
        """

    def connection_taken(server):  # type: ignore[no-untyped-def]
        """
        A connection to C{server} was counted (after C{pick}).
        """

    def connection_dropped(server):  # type: ignore[no-untyped-def]
        """
        A connection to C{server} ended.
        """


class IBalancerFactory(Interface):
    """
    A plugin that makes L{IBalancer}s, found by name with
    L{twisted.plugin.getPlugins}.
    """

    name = Attribute("The name used after C{balance =} in C{lb.ini}.")

    def build(servers, args):  # type: ignore[no-untyped-def]
        """
        Make a balancer over C{servers}.

        @param servers: The backend's L{l4lb.pool.Server} objects, in file
            order.
        @param args: The arguments written in parentheses after the name,
            as a tuple of strings.
        @return: An L{IBalancer} provider.
        @raise l4lb.balancers.base.BalancerArgumentError: When C{args} are
            not valid.
        """

    def check_args(args):  # type: ignore[no-untyped-def]
        """
        Check the arguments written after the name, when the configuration
        is read, so that C{l4lb check} reports them with the file and line.

        @param args: The arguments as a tuple of strings.
        @raise l4lb.balancers.base.BalancerArgumentError: When they are not
            valid; its C{reason} says which values are allowed.
        """


class IHealthCheck(Interface):
    """
    One kind of active health check of one server: a TCP connect, a
    C{tcp-check} sequence, an agent, and later UDP probes.

    The monitor (L{l4lb.health.monitor.HealthMonitor}) calls L{run} on its
    own timer, never twice at once, and feeds the result to the server's
    state machine; a check knows nothing of timers, states or transports
    other than its own.
    """

    kind = Attribute(
        "C{'check'} for a health check (it decides whether the server is up),"
        " C{'agent'} for an agent check (it reports weight and state)."
    )

    timeout = Attribute(
        "Seconds after which a check that has not finished is abandoned and"
        " reported as a timeout."
    )

    def run():  # type: ignore[no-untyped-def]
        """
        Check once.

        @return: A L{twisted.internet.defer.Deferred} that fires with an
            L{l4lb.health.status.CheckResult} within about L{timeout}
            seconds.  Cancelling it abandons the check (its connection is
            closed).  A failure is logged and counted as a failed check.
        """


class IClientStage(Interface):
    """
    A step every new connection of a frontend goes through, in order, before
    a server is chosen: reading a PROXY protocol header, checking the source
    against the frontend's rules and limits, reading a TLS ClientHello to
    route by server name.

    One stage object serves every connection of its frontend; what it learns
    about a connection it writes on the session (C{client_host},
    C{client_port}, C{backend}, C{sni}, C{on_end}).  A stage refuses a
    connection by raising L{l4lb.tcp.stages.StageRejected}.
    """

    def inspect(session: object, data: bytearray) -> object:
        """
        Look at what the client sent so far.

        Called once with what is buffered when the stage's turn comes
        (possibly nothing), then after each new chunk, until it decides.

        @param session: The L{l4lb.tcp.relay.Session}.
        @param data: The bytes the client sent that earlier stages did not
            consume; not to be changed.
        @return: C{None} to wait for more, or how many leading bytes of
            C{data} the stage consumed (they are not relayed; C{0} for
            none).
        @raise l4lb.tcp.stages.StageRejected: To close the connection.
        """

    def expired(session: object, data: bytearray) -> object:
        """
        The frontend's C{tcp-request inspect-delay} passed while the stage
        waited for more.

        @return: As for L{inspect}; C{None} closes the connection (C{cR}).
        @raise l4lb.tcp.stages.StageRejected: To close the connection.
        """


class IBalancerRuntime(Interface):
    """
    A running balancer as its runtime API, its reload and its C{nbproc}
    workers see it (L{l4lb.service.BalancerService} provides it).

    The attributes are the runtime objects they read; every change that
    follows a policy (closing a server's sessions, its administrative
    state, its health checks, a frontend's limit, the counters, a new
    configuration) goes through a method, so that each policy is written
    once, here, whoever asks for it.
    """

    config = Attribute(
        "The L{l4lb.config.model.Config} being run (a reload replaces it)."
    )
    config_path = Attribute("The file a reload reads (by default the configuration's C{source}).")
    reactor = Attribute("The reactor everything runs on (time, TCP, UDP, resolver).")
    running = Attribute("Whether the service runs (C{IService.running}).")
    started = Attribute("When the service was made, in reactor seconds (the uptime's start).")
    ready = Attribute(
        "A L{twisted.internet.defer.Deferred} that has fired once every frontend accepts"
        " connections (names resolved, ports open)."
    )
    frontends = Attribute(
        "The TCP frontends' L{l4lb.tcp.frontend.FrontendState}s by name (C{mode tcp})."
    )
    udp_frontends = Attribute("The L{l4lb.udp.frontend.UdpFrontend}s by name (C{mode udp}).")
    backends = Attribute("The L{l4lb.pool.BackendState}s by name.")
    retired = Attribute(
        "The L{l4lb.pool.Server}s a reload removed that still have open sessions."
    )
    added_servers = Attribute(
        "The definitions of the servers added at run time"
        " (L{l4lb.runtime_servers.AddedServer}) by C{(backend, server)}, in the"
        " order they were added: runtime state a reload carries and the"
        " server-state file records."
    )
    limiter = Attribute(
        "The process-wide L{l4lb.tcp.limits.ConnectionLimiter} (global C{maxconn})."
    )
    monitor = Attribute("The L{l4lb.health.monitor.HealthMonitor} of the servers' checks.")
    etcd = Attribute(
        "The L{l4lb.etcd.EtcdProviders} that keep the servers of the backends with"
        " C{servers-from} as etcd says; a reload calls its C{apply}."
    )
    dns = Attribute(
        "The L{l4lb.dns.DnsDiscovery} that keeps servers with C{resolvers} and"
        " C{server-template} slots where DNS says; a reload calls its C{apply}."
    )
    slowstart = Attribute(
        "The L{l4lb.health.warmup.SlowStart} that warms up servers coming back, or C{None}"
        " (an C{nbproc} worker is sent the throttled values)."
    )
    workers = Attribute(
        "With C{nbproc} above 1, the L{l4lb.workers.pool.WorkerPool}; else C{None}."
    )
    sink = Attribute("Where connection logs go (a log sink), or C{None} before binding.")
    ports = Attribute("The listening ports of each frontend, by frontend name, in bind order.")
    port_factories = Attribute(
        "The L{l4lb.tcp.frontend.FrontendFactory} of each listening TCP port."
    )
    own_caps = Attribute(
        "The connection caps in effect of l4lb's own listeners (C{stats socket},"
        " C{stats bind}), by name."
    )
    instance_state = Attribute(
        "Whether the instance asks for traffic (L{l4lb.readiness}): C{\"ready\"},"
        " C{\"drain\"} (an operator drained it) or C{\"stopping\"} (the C{grace}"
        " time after SIGTERM).  It only advises routers: connections that reach"
        " the instance are served in every state."
    )

    # -- servers and sessions ------------------------------------------------

    def find_server(backend: str, server: str) -> Any:
        """
        The running L{l4lb.pool.Server} C{backend/server}.

        @raise KeyError: With the backend's name when there is no such
            backend, with C{"backend/server"} when it has no such server.
        """

    def servers() -> List[Any]:
        """
        Every server with sessions to show: those of the running backends,
        in file order, then those a reload removed that still have some.
        """

    def open_sessions() -> List[Any]:
        """
        Every session open now: TCP connections and UDP sessions assigned
        to a server (one a reload removed included), then the connections
        waiting in a backend's queue.
        """

    def kill_sessions(server: Any, cause: str) -> int:
        """
        Close every open session of C{server} at once.

        @param cause: The first letter of the logged termination state:
            C{"K"} (an operator asked: the workers of C{nbproc} close the
            server's sessions too), C{"D"} (the server went down) or C{"U"}
            (an active server came back; its backup's sessions close).
        @return: How many sessions this process closed.
        """

    def set_server_admin(server: Any, admin: str, cause: str = "runtime") -> None:
        """
        Set C{server}'s administrative state (C{"ready"}, C{"drain"} or
        C{"maint"}) and do what its C{on-marked-down} and C{on-marked-up}
        ask when that takes it out of service or back in.
        """

    def add_server(backend: str, name: str, line: str, enabled: bool = False) -> Any:
        """
        Add a server to the running backend C{backend} (C{add server}): the
        same constructors as at start build it, and the backend's balancer
        is built again over its servers.

        @param line: What a configuration file writes after C{server NAME
            =}: C{ADDR:PORT [options]}, read by the same parser (without
            C{default-server}).
        @param enabled: Start ready; otherwise the server starts in
            maintenance (as does one whose line lacks the word
            C{enabled}), and its checks begin when it is enabled.
        @return: The new L{l4lb.pool.Server}.
        @raise l4lb.config.errors.ConfigError: When C{line} is not valid;
            its problems carry the configuration check's messages.
        @raise l4lb.runtime_servers.ServerChangeError: With HAProxy's
            reply when the backend does not exist, has a server of that
            name, or the process has C{nbproc} workers.
        """

    def remove_server(backend: str, name: str) -> None:
        """
        Remove the server C{backend/name} (C{del server}), whether the file
        or the runtime added it; the file's servers come back at the next
        reload.

        @raise l4lb.runtime_servers.ServerChangeError: With HAProxy's reply
            unless the server is in maintenance and has no connection.
        """

    def set_server_address(
        server: Any, host: str, port: Optional[int] = None, cause: str = "runtime"
    ) -> str:
        """
        Send C{server}'s new connections and its checks to C{host} (an IP
        address) and C{port} (by default unchanged); established
        connections stay where they are.  Logs HAProxy's line, e.g.
        C{web/s1 changed its IP from 127.0.0.1 to 127.0.0.2 by DNS cache.}

        @param cause: Who asks: C{"runtime"} (logged as C{stats socket
            command}), C{"DNS cache"}, or any other few words.
        @return: HAProxy's reply (C{IP changed from '...' to '...' by
            '...'}), empty when nothing changed.
        @raise l4lb.runtime_servers.ServerChangeError: When C{host} is not
            an IP address or C{port} not a port.
        """

    def set_health_checks(server: Any, enabled: bool) -> None:
        """
        Resume (C{enable health}) or stop (C{disable health}) the health
        checks of C{server}; while stopped, it counts as UP unless its
        agent says DOWN.

        @raise KeyError: When the server has no health check.
        """

    def set_frontend_maxconn(frontend: str, maxconn: int) -> bool:
        """
        Change the C{maxconn} of the TCP frontend C{frontend} (0: none),
        in every worker too.

        @return: Whether there is such a frontend.
        """

    def clear_counters() -> None:
        """
        Reset the cumulative counters of every frontend, backend and
        server (and of the workers).
        """

    # -- configuration -------------------------------------------------------

    def reload(path: Optional[str] = None) -> Any:
        """
        Read the configuration file (C{path}, or L{config_path}) again and
        apply it (L{l4lb.reload.reload_file}).

        @return: The L{l4lb.reload.ReloadResult}.
        """

    def build_backend(spec: Any) -> Any:
        """
        Make the runtime L{l4lb.pool.BackendState} of a backend
        configuration, as at start.
        """

    def build_frontend(spec: Any) -> Any:
        """
        Make the runtime state of a frontend configuration against the
        running backends, as at start, without binding.
        """

    def start_frontend(spec: Any) -> None:
        """
        Build a frontend and bind its addresses; it accepts nothing until
        opened.

        @raise l4lb.service.BindError: When a bind fails.
        """

    def stop_frontend(name: str) -> Any:
        """
        Close a frontend's ports and forget it.

        @return: A L{twisted.internet.defer.Deferred} that fires once its
            ports are closed.
        """

    def listen(spec: Any, bind: Any) -> Any:
        """
        Bind one address of the running frontend C{spec.name}.

        @return: The listening port.
        @raise l4lb.service.BindError: When it cannot listen.
        """

    def unlisten(name: str, port: Any) -> Any:
        """
        Close one listening port of the frontend C{name}.

        @return: A L{twisted.internet.defer.Deferred}.
        """

    def resolve_server(backend: Any, server: Any) -> Any:
        """
        Resolve C{server}'s host name; it enters its backend's rotation
        once resolved.

        @return: A L{twisted.internet.defer.Deferred}.
        """

    def reopen_logs() -> None:
        """
        Re-open the connection log's file (after log rotation).
        """
