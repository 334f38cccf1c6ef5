"""
The contracts between l4lb's parts, as zope interfaces.
"""

from __future__ import annotations

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
