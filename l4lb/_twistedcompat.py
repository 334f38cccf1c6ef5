"""
The parts of Twisted that l4lb relies on and that Twisted does not promise.

Every use of Twisted's private API (underscore names, private modules,
transports built by hand, methods replaced on live objects) is in this
module and its TLS half L{l4lb._twistedcompat_tls} (apart, so that Twisted's
TLS is imported only when used), and nowhere else in l4lb
(C{tests/test_twistedcompat.py} checks).  At import, L{check} looks for each
of them in the installed Twisted (the TLS transport's when
L{l4lb._twistedcompat_tls} is imported) and raises an C{ImportError} naming
everything that is missing and the Twisted versions l4lb is tested with
(L{TESTED}), so that a Twisted release that changed them stops l4lb at
start-up rather than breaking live connections.

What l4lb uses, and why:

  - The epoll reactor's state (L{EPollInternals}, for
    L{l4lb.reactor.L4lbEPollReactor}): the epoll object C{_poller}, the
    descriptor table C{_selectables} and the sets C{_reads} and C{_writes},
    to dispatch events without a log context per event and to move a
    registration from one descriptor object to another with one
    C{epoll_ctl}; C{_disconnectSelectable} and C{_NO_FILEDESC}, to end a
    connection exactly as Twisted does; the main loop's C{_started},
    C{_justStopped}, C{_newTimedCalls} and C{_pendingTimedCalls}, and the
    loop's error handler C{_topHandler} and logger C{_log}, to take a short
    way through a turn with nothing to run.  Without C{_topHandler} (an
    optional part) the reactor runs Twisted's own main loop.
  - Twisted's TLS transport (L{TLSTransportInternals}, for
    L{l4lb.tcp._tlsclose}): its receive loop C{_flushReceiveBIO} is
    replaced to end one direction at a time; C{_flushSendBIO},
    C{_tlsShutdownFinished}, C{_tlsConnection}, C{_handshakeDone},
    C{_lostTLSConnection}, C{_aborted}, C{_appSendBuffer} and the small
    writes' C{_aggregator} are read or called to send C{close_notify} and
    shut the TCP write half after the last byte.
  - The PROXY protocol parsers, C{twisted.protocols.haproxy._v1parser} and
    C{_v2parser} (L{V1Parser}, L{V2Parser}, for L{l4lb.tcp.proxyread}):
    Twisted exports only a wrapping factory, and l4lb reads the header
    itself, inside its stages.
  - C{twisted.internet.tcp.Server} built by hand around an accepted socket
    (L{server_transport}, for L{l4lb.tcp.raw}), and the socket of a TCP
    connection (L{connection_socket}, for L{l4lb.tcp.lean}): the lean data
    path reads and writes sockets itself and hands them back to a Twisted
    transport when it needs one.
  - A listening port's C{doRead} replaced on the port object
    (L{set_do_read}), a TCP port's socket C{tcp.Port.socket}
    (L{stream_port_socket}; a UDP port's comes from C{getHandle()}) and
    the number of connections a C{tcp.Port} accepts per event,
    C{numberAccepts} (L{set_accepts_per_event}): for accepting straight
    into the lean path (L{l4lb.tcp.accept}), reading datagrams into one
    buffer (L{l4lb.udp.reader}) and pausing a frontend at its limits
    (L{l4lb.tcp.limits}).
  - A listening port shared with another process (a handover,
    L{l4lb.handover}; L{share_listening_port}): a port's
    C{_shouldShutdown} is cleared, since Twisted calls C{shutdown()} on a
    listening socket it closes, which stops it listening in every process
    that holds it; and a UNIX port's C{connectionLost} is replaced on the
    port object, since C{unix.Port} removes its socket file when it
    closes (l4lb relies on that method doing only the removal before
    C{tcp.Port.connectionLost}).

C{tests/test_reactor_twisted_suite.py} runs Twisted's own reactor tests
against L{l4lb.reactor.L4lbEPollReactor}.
"""

from __future__ import annotations

import dis
import importlib
import inspect
import socket
import types
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

import twisted
from twisted.internet import base as _base
from twisted.internet import posixbase as _posixbase
from twisted.internet import tcp, udp

try:
    from twisted.internet import unix
except ImportError:  # pragma: no cover - a platform without UNIX sockets
    unix = None  # type: ignore[assignment]
from twisted.logger import Logger

if TYPE_CHECKING:
    from l4lb._twistedcompat_tls import TLSTransportInternals

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # No epoll on this system: L{l4lb.reactor} says so.
    EPollReactor = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from twisted.protocols.haproxy._v1parser import V1Parser
    from twisted.protocols.haproxy._v2parser import V2Parser

__all__ = [
    "TESTED",
    "check",
    "missing",
    "EPollInternals",
    "TLSTransportInternals",
    "V1Parser",
    "V2Parser",
    "NO_FILEDESC",
    "TOP_HANDLER",
    "MAIN_LOOP_LOG",
    "server_transport",
    "connection_socket",
    "stream_port_socket",
    "datagram_port_socket",
    "set_do_read",
    "accepts_per_event",
    "set_accepts_per_event",
]

#: The Twisted releases l4lb is tested with; C{setup.cfg} bounds Twisted to
#: the same range (C{tests/test_twistedcompat.py} checks).  23.10 is the
#: first with the buffering TLS transport L{TLSTransportInternals} extends.
TESTED = ">=23.10, <27"

#: The reason Twisted gives a descriptor whose C{fileno()} became -1.
NO_FILEDESC: Any = getattr(_posixbase, "_NO_FILEDESC", None)

#: The context manager Twisted's main loop logs an error of one turn with,
#: or C{None} (L{l4lb.reactor} then runs Twisted's own main loop).
TOP_HANDLER: Any = getattr(_base, "_topHandler", None)

#: What Twisted's main loop logs its end with.
MAIN_LOOP_LOG: Any = getattr(_base, "_log", None) or Logger(namespace="twisted.internet.base")


def _names(function: Any) -> Tuple[str, ...]:
    """
    The global and attribute names a function's code uses.
    """
    code = getattr(function, "__code__", None)
    return code.co_names if isinstance(code, types.CodeType) else ()


def _missing_reactor() -> List[str]:
    if EPollReactor is None:
        # Not an epoll system: nothing of the epoll reactor is used.
        return []
    missing = []
    tables = ("_poller", "_selectables", "_reads", "_writes")
    for name in tables:
        if name not in _names(EPollReactor.__init__):
            missing.append(f"EPollReactor.{name}")
    # EPollInternals names them once: Twisted must not replace them later.
    for klass in EPollReactor.__mro__:
        for method_name, method in vars(klass).items():
            # PyPy gives built-in methods a __code__ that is not Python code.
            code = getattr(method, "__code__", None)
            if method_name == "__init__" or not isinstance(code, types.CodeType):
                continue
            for step in dis.get_instructions(method):
                if step.opname == "STORE_ATTR" and step.argval in tables:
                    missing.append(f"EPollReactor.{step.argval} set only by __init__ (not by {method_name})")
    if not callable(getattr(EPollReactor, "_disconnectSelectable", None)):
        missing.append("EPollReactor._disconnectSelectable()")
    if getattr(_posixbase, "_NO_FILEDESC", None) is None:
        missing.append("twisted.internet.posixbase._NO_FILEDESC")
    init = _names(_base.ReactorBase.__init__)
    for name in ("_started", "_justStopped", "_newTimedCalls", "_pendingTimedCalls"):
        if name not in init:
            missing.append(f"ReactorBase.{name}")
    # The short way through a turn stands in for this loop only.
    if getattr(_base, "_topHandler", None) is not None and "runUntilCurrent" not in _names(
        _base.ReactorBase.mainLoop
    ):
        missing.append("ReactorBase.mainLoop() calling runUntilCurrent()")
    return missing


def _buffering_tls() -> Any:
    """
    Twisted's buffering TLS transport (none before Twisted 23.10).
    """
    from twisted.protocols import tls

    return getattr(tls, "BufferingTLSTransport", None)


def _missing_tls() -> List[str]:
    from twisted.protocols.tls import TLSMemoryBIOProtocol

    missing = []
    tls = TLSMemoryBIOProtocol
    BufferingTLSTransport = _buffering_tls()
    for name in ("_flushReceiveBIO", "_flushSendBIO", "_tlsShutdownFinished"):
        if not callable(getattr(tls, name, None)):
            missing.append(f"TLSMemoryBIOProtocol.{name}()")
    for name in ("_handshakeDone", "_lostTLSConnection", "_aborted"):
        if not isinstance(getattr(tls, name, None), bool):
            missing.append(f"TLSMemoryBIOProtocol.{name}")
    # The receive loop replaced here must be the one that hands the
    # plaintext over, both as bytes arrive and when the connection is lost.
    for caller in ("dataReceived", "connectionLost"):
        if "_flushReceiveBIO" not in _names(getattr(tls, caller, None)):
            missing.append(f"TLSMemoryBIOProtocol.{caller}() calling _flushReceiveBIO()")
    for name in ("_tlsConnection", "_appSendBuffer"):
        if name not in _names(getattr(tls, "makeConnection", None)):
            missing.append(f"TLSMemoryBIOProtocol.{name}")
    if BufferingTLSTransport is None:
        missing.append("twisted.protocols.tls.BufferingTLSTransport")
    elif "_aggregator" not in _names(getattr(BufferingTLSTransport, "loseConnection", None)):
        missing.append("BufferingTLSTransport._aggregator")
    return missing


#: The module of each of Twisted's PROXY protocol parsers.
_PARSERS = {"V1Parser": "_v1parser", "V2Parser": "_v2parser"}


def _proxy_parser(name: str) -> Any:
    """
    Twisted's PROXY protocol parser C{name}, or C{None}.
    """
    try:
        module = importlib.import_module(f"twisted.protocols.haproxy.{_PARSERS[name]}")
    except ImportError:
        return None
    return getattr(module, name, None)


def _missing_parsers() -> List[str]:
    missing = []
    for name, module in _PARSERS.items():
        if not callable(getattr(_proxy_parser(name), "feed", None)):
            missing.append(f"twisted.protocols.haproxy.{module}.{name}.feed()")
    return missing


def _missing_transports() -> List[str]:
    missing = []
    try:
        parameters = list(inspect.signature(tcp.Server.__init__).parameters)
    except (TypeError, ValueError):
        parameters = []
    if parameters != ["self", "sock", "protocol", "client", "server", "sessionno", "reactor"]:
        missing.append("tcp.Server(sock, protocol, client, server, sessionno, reactor)")
    if not callable(getattr(tcp.Connection, "getHandle", None)):
        missing.append("tcp.Connection.getHandle()")
    if "socket" not in _names(tcp.Port.startListening) or not callable(getattr(tcp.Port, "doRead", None)):
        missing.append("tcp.Port.socket and doRead()")
    if not callable(getattr(udp.Port, "getHandle", None)) or not callable(getattr(udp.Port, "doRead", None)):
        missing.append("udp.Port.getHandle() and doRead()")
    if "numberAccepts" not in _names(tcp.Port.doRead):
        missing.append("tcp.Port.numberAccepts")
    if unix is not None and not {"unlink", "connectionLost"} <= set(_names(unix.Port.connectionLost)):
        missing.append("unix.Port.connectionLost() removing the socket file")
    if "_shouldShutdown" not in _names(tcp._SocketCloser._closeSocket):
        missing.append("tcp._SocketCloser._shouldShutdown")
    return missing


#: The names L{EPollInternals} and L{TLSTransportInternals} add to Twisted's
#: classes, which must not hide names of Twisted's own.
_ADDED = {
    "EPollReactor": (
        "poller selectables reading writing disconnect_selectable loop_started next_due"
    ).split(),
    "BufferingTLSTransport": (
        "tls_connection handshake_done tls_lost tls_aborted plaintext_waiting flush_small_writes"
        " tls_failed receive_plaintext send_tls_output"
    ).split(),
}


def _clashes(*classes: Any) -> List[str]:
    """
    The names l4lb adds to those of Twisted's C{classes} that Twisted now
    defines too.
    """
    found = []
    for cls in classes:
        if cls is None:
            continue
        for name in _ADDED[cls.__name__]:
            if hasattr(cls, name):
                found.append(f"no {cls.__name__}.{name} of its own (l4lb adds one)")
    return found


def missing(tls: bool = True, proxy: bool = True) -> List[str]:
    """
    The parts of Twisted's private API that l4lb relies on and the
    installed Twisted lacks (see the module's description).

    @param tls: Whether to check the TLS transport's parts too, which
        imports Twisted's TLS (and pyOpenSSL).
    @param proxy: Whether to check the PROXY protocol parsers too, which
        imports Twisted's PROXY protocol package (and its endpoints, and
        pyOpenSSL).
    """
    found = _missing_reactor() + _missing_transports() + _clashes(EPollReactor)
    if proxy:
        found += _missing_parsers()
    if tls:
        found += _missing_tls() + _clashes(_buffering_tls())
    return found


def check(tls: bool = True, proxy: bool = True) -> None:
    """
    Check that the installed Twisted has every private part l4lb relies on.

    At import only the parts used by every configuration are checked, so
    that one without TLS or C{accept-proxy} does not load what those need:
    L{l4lb._twistedcompat_tls} checks the TLS transport's parts when it is
    imported, and the PROXY protocol parsers are checked when first asked
    for (L{__getattr__}), as a bind with C{accept-proxy} is set up.

    @param tls: Whether to check the TLS transport's parts too.
    @param proxy: Whether to check the PROXY protocol parsers too.
    @raise ImportError: Naming everything that is missing, the installed
        Twisted's version and the range l4lb is tested with.
    """
    lacking = missing(tls, proxy)
    if lacking:
        _refuse(lacking)


def _refuse(lacking: List[str]) -> None:
    """
    @raise ImportError: Naming the parts C{lacking}, the installed
        Twisted's version and the range l4lb is tested with.
    """
    raise ImportError(
        f"l4lb cannot run on Twisted {twisted.__version__}, which lacks parts"
        f" of its private API that l4lb relies on: {', '.join(lacking)}."
        f"  l4lb is tested with Twisted {TESTED}: install a Twisted in that range."
    )


check(tls=False, proxy=False)


def __getattr__(name: str) -> Any:
    """
    L{TLSTransportInternals} (from L{l4lb._twistedcompat_tls}) and Twisted's
    PROXY protocol parsers L{V1Parser} and L{V2Parser}, imported when first
    asked for: they import Twisted's TLS.
    """
    if name == "TLSTransportInternals":
        from l4lb._twistedcompat_tls import TLSTransportInternals

        return TLSTransportInternals
    if name in _PARSERS:
        lacking = _missing_parsers()
        if lacking:
            _refuse(lacking)
        globals().update((parser, _proxy_parser(parser)) for parser in _PARSERS)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def server_transport(sock: socket.socket, protocol: Any, peer: Any, reactor: Any) -> tcp.Server:
    """
    Twisted's transport for an accepted, connected socket, built by hand
    (as a listening port would), with no port and session number.

    @param sock: The connected socket; it is made non-blocking.
    @param protocol: The protocol it carries; it is not connected to it.
    @param peer: The peer's socket address.
    @param reactor: The reactor it reads and writes through.
    """
    return tcp.Server(sock, protocol, peer, None, 0, reactor)  # type: ignore[arg-type]


def connection_socket(transport: Any) -> Optional[socket.socket]:
    """
    The socket of a Twisted TCP connection, or C{None} when C{transport}
    is not one.
    """
    if not isinstance(transport, tcp.Connection):
        return None
    sock = transport.getHandle()
    return sock if isinstance(sock, socket.socket) else None


def stream_port_socket(port: Any) -> Optional[socket.socket]:
    """
    The socket of a Twisted TCP listening port (C{listenTCP},
    C{adoptStreamPort} or a server endpoint), or C{None} for anything else.
    """
    if not isinstance(port, tcp.Port):
        return None
    sock = getattr(port, "socket", None)
    return sock if isinstance(sock, socket.socket) else None


def datagram_port_socket(port: Any) -> Optional[socket.socket]:
    """
    The socket of a Twisted UDP port (C{listenUDP}), or C{None} for
    anything else.
    """
    if not isinstance(port, udp.Port):
        return None
    sock = port.getHandle()
    return sock if isinstance(sock, socket.socket) else None


def share_listening_port(port: Any, shared: bool = True) -> None:
    """
    Make a listening port (TCP or UNIX) close only this process's
    descriptor when it closes (C{shared}): no C{shutdown()}, which would
    stop the socket listening for another process holding it, and for a
    UNIX port no removal of its file, which the other process listens on.
    Not C{shared}: a UNIX port removes its file again when it closes.
    Anything but a Twisted listening port is left alone.
    """
    if not isinstance(port, tcp.Port):
        return
    if shared:
        port._shouldShutdown = False
    if unix is None or not isinstance(port, unix.Port):
        return
    if shared:
        port.connectionLost = types.MethodType(tcp.Port.connectionLost, port)  # type: ignore[method-assign]
    else:
        port.__dict__.pop("connectionLost", None)


def set_do_read(port: Any, do_read: Callable[[], object]) -> None:
    """
    Make the reactor call C{do_read} instead of the port's C{doRead} when
    the port is readable (the reactor looks the method up on the object
    each time).  Read C{port.doRead} first to call on the one replaced;
    set that one back to undo.

    @param port: A Twisted listening port (TCP or UDP).
    """
    port.doRead = do_read


def accepts_per_event(port: Any) -> int:
    """
    How many connections a listening port accepts at most per readable
    event (1 for a port that does not say).
    """
    return int(getattr(port, "numberAccepts", 1))


def set_accepts_per_event(port: Any, count: int) -> None:
    """
    Set how many connections a C{tcp.Port} accepts at most on its next
    readable event (Twisted adjusts it after each event).
    """
    port.numberAccepts = count


_NOW = float("-inf")

if EPollReactor is not None:

    class EPollInternals(EPollReactor):
        """
        Twisted's epoll reactor, with the internal state l4lb's reactor
        uses under names of l4lb's own.

        The epoll object and the descriptor tables are made once, by
        Twisted's constructor, and only changed in place afterwards
        (L{check} makes sure), so they are named here once rather than
        looked up on every turn.

        @ivar poller: The C{select.epoll} object.
        @ivar selectables: The registered descriptor objects by descriptor
            number.
        @ivar reading: The set of descriptor numbers watched for reading.
        @ivar writing: The set of descriptor numbers watched for writing.
        """

        def __init__(self) -> None:
            super().__init__()
            self.poller: Any = self._poller  # type: ignore[attr-defined]
            self.selectables: Dict[int, Any] = self._selectables  # type: ignore[attr-defined]
            self.reading: Set[int] = self._reads  # type: ignore[attr-defined]
            self.writing: Set[int] = self._writes  # type: ignore[attr-defined]

        def disconnect_selectable(self, selectable: Any, why: Any, is_read: bool) -> None:
            """
            End C{selectable}'s connection for C{why}, as Twisted's own
            dispatch does.
            """
            self._disconnectSelectable(selectable, why, is_read)

        def loop_started(self) -> bool:
            """
            Whether the main loop is to go on.
            """
            return bool(self._started)

        def next_due(self) -> Optional[float]:
            """
            When the next turn must run C{runUntilCurrent}: C{-inf} (now)
            when it has something besides due calls (a call from a thread,
            a call scheduled since the last turn, a stop); else when the
            earliest scheduled call is due, or C{None} when none is.
            """
            if self.threadCallQueue or self._newTimedCalls or self._justStopped:
                return _NOW
            calls = self._pendingTimedCalls
            return calls[0].time if calls else None

else:  # pragma: no cover - only where there is no epoll
    EPollInternals = None  # type: ignore[assignment,misc]
