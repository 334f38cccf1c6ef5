"""
The runtime API's socket protocol, as HAProxy's stats socket speaks it.

A client sends one line; several commands on it are separated by C{;}.
Each command's answer is followed by an empty line, then the connection is
closed, so that C{echo 'show stat' | socat stdio UNIX-CONNECT:PATH} works.
The command C{prompt} keeps the connection open for more lines, each
answer followed by a C{> } prompt, until C{quit}.

A connection that sends nothing for C{stats timeout} (10 s by default) is
closed, and the socket serves at most C{maxconn} connections at once (10 by
default, L{l4lb.admin.cap}), as HAProxy's does.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Optional, Protocol

from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from l4lb.admin.cap import CappedFactory
from l4lb.admin.commands import AdminCommands, CommandError

#: HAProxy's default C{stats timeout}, in seconds.
DEFAULT_TIMEOUT = 10.0
#: HAProxy's default C{stats maxconn}.
DEFAULT_MAXCONN = 10

_log = Logger(namespace="l4lb")


class LineSession(Protocol):
    """
    What takes over a runtime API connection (a handover's session).
    """

    def lineReceived(self, line: str) -> None:
        """
        One line the peer sent.
        """

    def connectionLost(self) -> None:
        """
        The connection closed.
        """


class AdminProtocol(LineOnlyReceiver, TimeoutMixin):
    """
    One connection to the runtime API; closed once idle for the factory's
    C{timeout}.
    """

    delimiter = b"\n"
    MAX_LENGTH = 16384
    interactive = False
    _abort: Any = None
    #: The handover this connection now carries (L{l4lb.handover}): its
    #: lines go there instead of to the commands.
    delegate: Optional[LineSession] = None

    def connectionMade(self) -> None:
        """
        Start the idle timer on the factory's clock.
        """
        factory: AdminFactory = self.factory  # type: ignore[assignment]
        self.callLater = factory.clock.callLater  # type: ignore[method-assign]
        self.setTimeout(factory.timeout)

    def dataReceived(self, data: bytes) -> None:
        """
        Restart the idle timer, then read the lines.
        """
        self.resetTimeout()
        super().dataReceived(data)

    def timeoutConnection(self) -> None:
        """
        Close an idle connection.  One that does not take what is still
        to be written to it within another timeout is aborted, so that a
        client that stopped reading cannot hold the descriptor.
        """
        factory: AdminFactory = self.factory  # type: ignore[assignment]
        self.transport.loseConnection()  # type: ignore[union-attr]
        if factory.timeout is not None:
            self._abort = factory.clock.callLater(
                factory.timeout, self.transport.abortConnection  # type: ignore[union-attr]
            )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Stop the timers.
        """
        self.setTimeout(None)
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._abort = None
        if self.delegate is not None:
            self.delegate.connectionLost()
        super().connectionLost(reason)

    def lineReceived(self, line: bytes) -> None:
        """
        Run the commands on C{line} and answer them.
        """
        commands: AdminCommands = self.factory.commands  # type: ignore[attr-defined]
        text = line.decode("utf-8", "replace").strip()
        if self.delegate is not None:
            self.delegate.lineReceived(text)
            return
        word, _, rest = text.partition(" ")
        if word in ("upgrade", "_handover"):
            self._handover(commands, word, rest.strip())
            return
        for command in (c.strip() for c in text.split(";")):
            if command == "prompt":
                self.interactive = not self.interactive
                continue
            if command == "quit":
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
            try:
                answer = commands.run(command)
            except CommandError as e:
                answer = f"{e}\n"
            except Exception:
                _log.failure("l4lb: admin command {command!r} failed", command=command)
                answer = "Internal error; see the log.\n"
            else:
                if command and command.split()[0].lower() not in ("show", "help"):
                    _log.info("Runtime API: {command}", command=command)
            self.transport.write(answer.encode("utf-8") + b"\n")  # type: ignore[union-attr]
        if self.interactive:
            self.transport.write(b"> ")  # type: ignore[union-attr]
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _handover(self, commands: AdminCommands, word: str, rest: str) -> None:
        """
        C{upgrade}: start a new process that takes over, and answer with the
        outcome once it is known.  C{_handover}: the new process asks for
        the sockets and the state; the connection is then the handover's.
        """
        donor = getattr(commands.service, "handover", None)
        if donor is None:
            self._finish(
                "Handover refused: only a process run by 'twistd l4lb' hands over."
            )
            return
        # Waiting for a new process to start outlasts any idle timeout.
        self.setTimeout(None)
        if word == "upgrade":
            _log.info("Runtime API: upgrade")
            donor.upgrade().addCallback(lambda outcome: self._finish(outcome.text))
            return
        from l4lb.handover.donor import HandoverRefused

        try:
            self.delegate = donor.open_session(rest, self.transport)
        except HandoverRefused as e:
            _log.warn("Runtime API: {refusal}", refusal=str(e))
            self._finish(str(e))

    def _finish(self, text: str) -> None:
        """
        Answer C{text} and close the connection.
        """
        if self.transport is None or not self.connected:
            return
        self.transport.write(text.encode("utf-8") + b"\n\n")
        self.transport.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        Refuse an over-long line with a one-line error.
        """
        self.transport.write(b"Command line too long.\n\n")  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class AdminFactory(Factory):
    """
    Builds an L{AdminProtocol} per connection, all sharing one
    L{AdminCommands}.

    @ivar timeout: Seconds a connection may stay idle (C{stats timeout}),
        or C{None} for no limit.
    @ivar clock: The L{IReactorTime} the idle timers run on.
    """

    protocol = AdminProtocol
    noisy = False

    def __init__(
        self,
        commands: AdminCommands,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        clock: Any = None,
    ) -> None:
        """
        @param commands: Runs each command.
        @param timeout: The idle timeout in seconds, or C{None} for none.
        @param clock: The clock of the idle timers; the global reactor when
            C{None}.
        """
        if clock is None:
            from twisted.internet import reactor as clock
        self.commands = commands
        self.timeout = timeout
        self.clock = clock


def listen_admin(
    reactor: Any,
    path: str,
    mode: int,
    commands: AdminCommands,
    timeout: float = DEFAULT_TIMEOUT,
    maxconn: int = DEFAULT_MAXCONN,
    inherited: Optional[int] = None,
) -> Any:
    """
    Listen on the UNIX socket C{path} with permission bits C{mode}; a stale
    socket file left by an earlier process is removed first.  With
    C{inherited}, the listening socket a running process handed over
    (L{l4lb.handover}) is adopted instead: the file stays as it is.

    @param timeout: Seconds a connection may stay idle (C{stats timeout}).
    @param maxconn: The most connections served at once; more wait in the
        socket's backlog (L{l4lb.admin.cap}).
    @return: The listening port.
    """
    capped = CappedFactory(AdminFactory(commands, timeout, reactor), maxconn)
    if inherited is not None:
        from l4lb.handover.sockets import adopt_stream

        return capped.watch(adopt_stream(reactor, inherited, capped))
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    port = capped.watch(reactor.listenUNIX(path, capped, mode=mode))
    # listenUNIX applies the mode through chmod after bind, as wanted; the
    # explicit chmod keeps it exact whatever the umask.
    os.chmod(path, mode)
    return port
