"""
The runtime API's socket protocol, as HAProxy's stats socket speaks it.

A client sends one line; several commands on it are separated by C{;}.
Each command's answer is followed by an empty line, then the connection is
closed, so that C{echo 'show stat' | socat stdio UNIX-CONNECT:PATH} works.
The command C{prompt} keeps the connection open for more lines, each
answer followed by a C{> } prompt, until C{quit}.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from l4lb.admin.commands import AdminCommands, CommandError

_log = Logger(namespace="l4lb")


class AdminProtocol(LineOnlyReceiver):
    """
    One connection to the runtime API.
    """

    delimiter = b"\n"
    MAX_LENGTH = 16384
    interactive = False

    def lineReceived(self, line: bytes) -> None:
        """
        Run the commands on C{line} and answer them.
        """
        commands: AdminCommands = self.factory.commands  # type: ignore[attr-defined]
        text = line.decode("utf-8", "replace").strip()
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
    """

    protocol = AdminProtocol
    noisy = False

    def __init__(self, commands: AdminCommands) -> None:
        self.commands = commands


def listen_admin(reactor: Any, path: str, mode: int, commands: AdminCommands) -> Any:
    """
    Listen on the UNIX socket C{path} with permission bits C{mode}; a stale
    socket file left by an earlier process is removed first.

    @return: The listening port.
    """
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    port = reactor.listenUNIX(path, AdminFactory(commands), mode=mode)
    # listenUNIX applies the mode through chmod after bind, as wanted; the
    # explicit chmod keeps it exact whatever the umask.
    os.chmod(path, mode)
    return port
