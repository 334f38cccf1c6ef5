"""
Tests for L{l4lb.reactor}: the epoll reactor without a log context per
event, instantiated directly (never installed) and driven with
C{iterate()} over real sockets.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple, Type

import pytest
from twisted.internet import error, protocol
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IHalfCloseableDescriptor
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from l4lb.reactor import L4lbEPollReactor, install

# Bounds every loop that waits for the reactor.
MAX_ITERATIONS = 400


class Boom(Exception):
    """
    The error a handler raises.
    """


class Selectable:
    """
    A minimal file descriptor for the reactor: records what the reactor
    calls, and can be told to raise from C{doRead}.

    @ivar sock: The socket it watches.
    @ivar calls: C{"read"}, C{"write"} and C{"lost"} in call order.
    @ivar reason: The failure given to C{connectionLost}.
    """

    def __init__(self, sock: socket.socket, name: str, read_error: Optional[BaseException] = None) -> None:
        self.sock = sock
        self.name = name
        self.read_error = read_error
        self.calls: List[str] = []
        self.reason: Optional[Failure] = None
        self.reactor: Any = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return self.name

    def doRead(self) -> None:
        self.calls.append("read")
        if self.read_error is not None:
            raise self.read_error
        try:
            self.sock.recv(65536)
        except BlockingIOError:
            pass

    def doWrite(self) -> None:
        self.calls.append("write")
        # Written once: stop asking, as a transport with nothing left does.
        self.reactor.removeWriter(self)

    def connectionLost(self, reason: Failure) -> None:
        self.calls.append("lost")
        self.reason = reason


@implementer(IHalfCloseableDescriptor)
class HalfCloseable(Selectable):
    """
    A selectable that accepts a half-close.
    """

    def readConnectionLost(self, reason: Failure) -> None:
        self.calls.append("read-lost")
        self.reason = reason

    def writeConnectionLost(self, reason: Failure) -> None:
        self.calls.append("write-lost")


class ScriptedPoller:
    """
    The reactor's real epoll, except that C{poll()} returns scripted events
    once: for events the kernel will not produce on demand.
    """

    def __init__(self, real: Any) -> None:
        self.real = real
        self.events: List[Tuple[int, int]] = []

    def poll(self, timeout: float, maxevents: int) -> List[Tuple[int, int]]:
        events, self.events = self.events, []
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def use_poller(reactor: EPollReactor, poller: Any) -> None:
    """
    Make a reactor poll C{poller}: Twisted's reactor polls its C{_poller},
    l4lb's the C{poller} it names once.
    """
    reactor._poller = poller
    if isinstance(reactor, L4lbEPollReactor):
        reactor.poller = poller


def close_reactor(reactor: EPollReactor) -> None:
    """
    Close the descriptors a reactor object opened (its waker and epoll).
    """
    reactor.removeAll()
    reactor.removeReader(reactor.waker)
    reactor.waker.connectionLost(None)
    reactor._poller.close()


@pytest.fixture
def reactor(pairs: Any) -> Iterator[L4lbEPollReactor]:
    """
    A fresh, uninstalled L{L4lbEPollReactor}, closed after the test (and
    before the sockets of C{pairs}, which it may still watch).
    """
    r = L4lbEPollReactor()
    yield r
    close_reactor(r)


@pytest.fixture
def logged() -> Iterator[List[LogEvent]]:
    """
    Every event logged through C{twisted.logger} during the test.
    """
    events: List[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@pytest.fixture
def pairs() -> Iterator[Callable[[], Tuple[socket.socket, socket.socket]]]:
    """
    Make connected TCP socket pairs on 127.0.0.1; all closed after the test.
    """
    made: List[socket.socket] = []

    def make() -> Tuple[socket.socket, socket.socket]:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            client = socket.create_connection(listener.getsockname(), timeout=5)
            server, _ = listener.accept()
        for s in (client, server):
            s.setblocking(False)
        made.extend((client, server))
        return client, server

    yield make
    for s in made:
        s.close()


def spin(reactor: Any, done: Callable[[], bool]) -> None:
    """
    Iterate C{reactor} until C{done()}, at most L{MAX_ITERATIONS} times.
    """
    for _ in range(MAX_ITERATIONS):
        if done():
            return
        reactor.iterate(0.01)
    raise AssertionError("the reactor did not get there")


def test_readable_and_writable_both_dispatched(reactor: L4lbEPollReactor, pairs: Any) -> None:
    """
    In one iteration a readable socket gets C{doRead} and a writable one
    gets C{doWrite}; neither is disconnected.
    """
    a_client, a_server = pairs()
    b_client, _ = pairs()
    reader = Selectable(a_server, "reader")
    writer = Selectable(b_client, "writer")
    writer.reactor = reactor
    a_client.sendall(b"ping")
    time.sleep(0.05)
    reactor.addReader(reader)
    reactor.addWriter(writer)
    reactor.iterate(0.5)
    assert reader.calls == ["read"]
    assert writer.calls == ["write"]
    assert reader in reactor.getReaders()


def test_read_error_disconnects_only_that_selectable(
    reactor: L4lbEPollReactor, pairs: Any, logged: List[LogEvent]
) -> None:
    """
    An exception from one selectable's C{doRead} is logged through
    C{twisted.logger} with its C{logPrefix()} as the system, and that
    selectable alone loses its connection, with the exception as reason;
    another readable selectable in the same batch is still served and stays
    registered.
    """
    c1, s1 = pairs()
    c2, s2 = pairs()
    bad = Selectable(s1, "BadProtocol,1,127.0.0.1", read_error=Boom("in doRead"))
    good = Selectable(s2, "good")
    c1.sendall(b"x")
    c2.sendall(b"y")
    time.sleep(0.05)
    reactor.addReader(bad)
    reactor.addReader(good)
    spin(reactor, lambda: bool(bad.calls) and bool(good.calls))
    assert bad.calls == ["read", "lost"]
    assert bad.reason is not None and bad.reason.check(Boom)
    assert bad not in reactor.getReaders()
    assert good.calls == ["read"]
    assert good in reactor.getReaders()
    failures = [e for e in logged if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(Boom)
    assert failures[0]["log_system"] == "BadProtocol,1,127.0.0.1"
    assert failures[0]["log_namespace"] == "l4lb.reactor"


def test_error_in_connection_lost_is_logged(
    reactor: L4lbEPollReactor, pairs: Any, logged: List[LogEvent]
) -> None:
    """
    When C{connectionLost} itself raises, the error is logged and the loop
    goes on: the iteration returns normally.
    """
    client, server = pairs()

    class Worse(Selectable):
        def connectionLost(self, reason: Failure) -> None:
            super().connectionLost(reason)
            raise Boom("in connectionLost")

    worse = Worse(server, "worse", read_error=Boom("in doRead"))
    client.sendall(b"x")
    time.sleep(0.05)
    reactor.addReader(worse)
    spin(reactor, lambda: "lost" in worse.calls)
    failures = [e["log_failure"] for e in logged if "log_failure" in e]
    assert [str(f.value) for f in failures] == ["in doRead", "in connectionLost"]


def test_peer_close_on_a_writer_is_connection_lost(reactor: L4lbEPollReactor, pairs: Any) -> None:
    """
    A selectable registered only for writing whose peer closed sees
    EPOLLHUP/EPOLLERR without input and loses its connection with
    C{ConnectionLost}, as in Twisted's epoll reactor.
    """
    left, right = socket.socketpair()
    try:
        sel = Selectable(left, "writer")
        sel.reactor = reactor
        right.close()
        reactor.addWriter(sel)
        spin(reactor, lambda: "lost" in sel.calls)
        assert sel.calls == ["lost"]
        assert sel.reason is not None and sel.reason.check(error.ConnectionLost)
        assert sel not in reactor.getWriters()
    finally:
        left.close()
        right.close()


@pytest.mark.parametrize("reactor_type", [EPollReactor, L4lbEPollReactor])
@pytest.mark.parametrize(
    "kind, events, expected, reason",
    [
        # Hang-up while reading, no input left: a clean end (a half-close
        # for a descriptor that accepts one).
        ("plain", select.EPOLLHUP, ["lost"], error.ConnectionDone),
        ("half", select.EPOLLHUP, ["read-lost"], error.ConnectionDone),
        ("plain", select.EPOLLERR, ["lost"], error.ConnectionDone),
        # Input still pending: read it first; the hang-up comes later.
        ("plain", select.EPOLLHUP | select.EPOLLIN, ["read"], None),
    ],
)
def test_hangup_semantics_match_twisted(
    reactor_type: Type[EPollReactor],
    kind: str,
    events: int,
    expected: List[str],
    reason: Optional[Type[Exception]],
    pairs: Any,
) -> None:
    """
    For hang-up and error events on a reader (scripted, since the kernel
    reports them together with readability), L{L4lbEPollReactor} does what
    Twisted's C{EPollReactor} does.
    """
    r = reactor_type()
    try:
        _, server = pairs()
        sel = (HalfCloseable if kind == "half" else Selectable)(server, "s")
        r.addReader(sel)
        poller = ScriptedPoller(r._poller)
        use_poller(r, poller)
        poller.events = [(server.fileno(), events)]
        r.iterate(0)
        assert sel.calls == expected
        if reason is None:
            assert sel.reason is None
        else:
            assert sel.reason is not None and sel.reason.check(reason)
        use_poller(r, poller.real)
    finally:
        close_reactor(r)


def test_closed_descriptor_is_disconnected(reactor: L4lbEPollReactor, pairs: Any) -> None:
    """
    A selectable whose C{fileno()} became -1 is disconnected with
    C{ConnectionFdescWentAway} instead of being read.
    """
    _, server = pairs()
    sel = Selectable(server, "gone")
    reactor.addReader(sel)
    fd = server.fileno()
    poller = ScriptedPoller(reactor._poller)
    use_poller(reactor, poller)
    sel.fileno = lambda: -1  # type: ignore[method-assign]
    poller.events = [(fd, select.EPOLLIN)]
    reactor.iterate(0)
    use_poller(reactor, poller.real)
    assert sel.calls == ["lost"]
    assert sel.reason is not None and sel.reason.check(error.ConnectionFdescWentAway)


class Echo(protocol.Protocol):
    """
    Echo back what arrives.
    """

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Collect(protocol.Protocol):
    """
    Send a payload on connect and collect the reply.
    """

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.received = b""

    def connectionMade(self) -> None:
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= len(self.payload):
            self.transport.loseConnection()


def test_tcp_round_trip(reactor: L4lbEPollReactor) -> None:
    """
    Twisted's own TCP transports work on the reactor: 1 MiB goes through
    an echo server on 127.0.0.1 and comes back intact.
    """
    payload = os.urandom(1 << 20)
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    client = Collect(payload)
    factory = protocol.ClientFactory()
    factory.protocol = lambda: client  # type: ignore[assignment]
    reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
    spin(reactor, lambda: len(client.received) >= len(payload))
    assert client.received == payload
    port.stopListening()
    spin(reactor, lambda: len(reactor.getReaders()) <= 1)


def test_install_sets_the_global_reactor() -> None:
    """
    C{install()} installs the reactor as C{twisted.internet.reactor} (run
    in a fresh interpreter, where no reactor is installed yet).
    """
    import subprocess
    import sys

    code = (
        "from l4lb.reactor import install;"
        "r = install();"
        "from twisted.internet import reactor;"
        "assert reactor is r, reactor;"
        "print(type(reactor).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "L4lbEPollReactor"
    assert install.__module__ == "l4lb.reactor"


def test_reactor_plugin_is_listed() -> None:
    """
    twistd finds the C{l4lb-epoll} reactor among its reactor plugins, and
    it points at this module.
    """
    from twisted.application.reactors import getReactorTypes

    found = {r.shortName: r for r in getReactorTypes()}
    assert "l4lb-epoll" in found
    assert found["l4lb-epoll"].moduleName == "l4lb.reactor"


def test_without_epoll_the_import_fails_clearly() -> None:
    """
    On a system without epoll, importing the reactor module (which is what
    twistd's C{--reactor=l4lb-epoll} does) raises C{ImportError} naming
    epoll and the way out; twistd reports it as "cannot be used".
    """
    import subprocess
    import sys

    code = (
        "import select; del select.epoll\n"
        "try:\n"
        "    import l4lb.reactor\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    assert "needs epoll(7)" in out.stdout
    assert "without --reactor" in out.stdout


def test_hand_over_moves_a_registration_with_one_change(
    reactor: L4lbEPollReactor, pairs: Any
) -> None:
    """
    C{hand_over} gives the new descriptor the old one's socket, watched as
    asked: the old one is never called again, the new one gets the events.
    """
    client, server = pairs()
    old = Selectable(server, "old")
    new = Selectable(server, "new")
    reactor.addWriter(old)
    assert reactor.hand_over(old, new, True, False)
    assert new in reactor.getReaders()
    assert old not in reactor.getReaders() and old not in reactor.getWriters()
    assert new not in reactor.getWriters()
    client.send(b"x")
    for _ in range(MAX_ITERATIONS):
        reactor.doPoll(0.01)
        if new.calls:
            break
    assert new.calls == ["read"]
    assert old.calls == []


def test_hand_over_of_an_unregistered_descriptor_changes_nothing(
    reactor: L4lbEPollReactor, pairs: Any
) -> None:
    """A descriptor that is not registered hands nothing over."""
    _, server = pairs()
    old = Selectable(server, "old")
    new = Selectable(server, "new")
    assert not reactor.hand_over(old, new, True, False)
    assert new not in reactor.getReaders()


def test_hand_over_to_nothing_unregisters(reactor: L4lbEPollReactor, pairs: Any) -> None:
    """Asking for neither reading nor writing removes the socket from epoll."""
    _, server = pairs()
    old = Selectable(server, "old")
    new = Selectable(server, "new")
    reactor.addReader(old)
    assert reactor.hand_over(old, new, False, False)
    assert new not in reactor.getReaders() and old not in reactor.getReaders()
    # Not in epoll's set any more: adding it again registers it afresh.
    reactor.addReader(new)
    assert new in reactor.getReaders()


class WriteOnly(Selectable):
    """
    A selectable that is only ever watched for writing: a read event would
    be a bug (it has no C{doRead} of its own to call).
    """

    def doRead(self) -> None:
        raise AssertionError(f"{self.name} was never watched for reading")

    def doWrite(self) -> None:
        # Stays registered, so that any later event for its number in the
        # same batch is dispatched to it.
        self.calls.append("write")


def test_a_closed_socket_held_elsewhere_sends_no_events_to_its_successor(
    reactor: L4lbEPollReactor, pairs: Any
) -> None:
    """
    A socket the relay closes while another process still holds a copy
    (a child between C{fork} and C{exec}, here a C{dup}) is unregistered
    first: when a new socket gets the same descriptor number, events of the
    old one (data arriving) do not reach the new socket's handler.
    """
    peer, old = pairs()
    reader = Selectable(old, "old")
    reactor.addReader(reader)
    held = os.dup(old.fileno())
    try:
        fd = old.fileno()
        reactor.removeReader(reader)
        old.close()
        successor = None
        made: List[socket.socket] = []
        for _ in range(8):
            s = socket.socket()
            made.append(s)
            if s.fileno() == fd:
                successor = s
                break
        assert successor is not None, "the descriptor number was not reused"
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            successor.setblocking(False)
            successor.connect_ex(listener.getsockname())
            writer = WriteOnly(successor, "new")
            writer.reactor = reactor
            reactor.addWriter(writer)
            peer.send(b"for the old socket")
            for _ in range(3):
                reactor.doIteration(0.05)
            reactor.removeWriter(writer)
        assert writer.calls and set(writer.calls) == {"write"}, writer.calls
        for s in made:
            reactor.removeAll()
            s.close()
    finally:
        os.close(held)


def run_bounded(reactor: L4lbEPollReactor, seconds: float = 10.0) -> None:
    """
    Run the reactor's main loop until it stops, or stop it after
    C{seconds} at the latest.
    """
    # From a thread, so that it stops a loop whose timed calls never run.
    guard = threading.Timer(seconds, reactor.callFromThread, (reactor.stop,))
    guard.start()
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        guard.cancel()


def test_main_loop_runs_timed_calls_in_order_and_stops(reactor: L4lbEPollReactor) -> None:
    """
    The main loop runs calls when they are due, in order (whichever way
    through a turn it takes), and ends when the reactor stops.
    """
    seen: List[Tuple[str, float]] = []
    start = reactor.seconds()
    reactor.callLater(0.05, lambda: seen.append(("late", reactor.seconds() - start)))
    reactor.callLater(0.01, lambda: seen.append(("early", reactor.seconds() - start)))
    later = reactor.callLater(0.02, lambda: seen.append(("cancelled", 0.0)))
    later.cancel()
    reactor.callLater(0.08, reactor.stop)
    run_bounded(reactor)
    assert [name for name, _ in seen] == ["early", "late"]
    assert seen[0][1] >= 0.01 and seen[1][1] >= 0.05


def test_main_loop_wakes_for_calls_from_threads(reactor: L4lbEPollReactor) -> None:
    """A call queued from another thread runs without waiting for a timed call."""
    seen: List[str] = []

    def from_thread() -> None:
        seen.append("thread")
        reactor.stop()

    threading.Timer(0.05, reactor.callFromThread, (from_thread,)).start()
    run_bounded(reactor)
    assert seen == ["thread"]


def test_main_loop_survives_a_failing_call(
    reactor: L4lbEPollReactor, logged: List[LogEvent]
) -> None:
    """A timed call that raises is logged, and the loop goes on."""
    seen: List[str] = []

    def boom() -> None:
        raise Boom()

    reactor.callLater(0.01, boom)
    reactor.callLater(0.03, lambda: seen.append("after"))
    reactor.callLater(0.05, reactor.stop)
    run_bounded(reactor)
    assert seen == ["after"]
    # Twisted before 24.7 logs it through the legacy log ("failure").
    failures = [e.get("log_failure") or e.get("failure") for e in logged]
    assert any(f is not None and f.check(Boom) for f in failures)


def test_main_loop_dispatches_io(reactor: L4lbEPollReactor, pairs: Any) -> None:
    """Descriptors are served while the main loop runs."""
    client, server = pairs()

    class Stopper(Selectable):
        def doRead(self) -> None:
            super().doRead()
            reactor.stop()

    stopper = Stopper(server, "io")
    reactor.addReader(stopper)
    reactor.callLater(0.02, client.send, b"x")
    run_bounded(reactor)
    # Then the reactor's shutdown disconnects it.
    assert stopper.calls == ["read", "lost"]
