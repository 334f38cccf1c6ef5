"""
The runtime API's commands that add, delete and move servers:
C{add server}, C{del server} and C{set server B/S addr}, with HAProxy's
replies.  They call L{l4lb.interfaces.IBalancerRuntime.add_server},
C{remove_server} and C{set_server_address}.
"""

from __future__ import annotations

from typing import Any, List

from l4lb.config.errors import ConfigError
from l4lb.interfaces import IBalancerRuntime
from l4lb.runtime_servers import ServerChangeError, parse_backend_server

__all__ = ["add_server", "del_server", "set_server_addr", "ADD_USAGE", "ADDR_USAGE"]

#: How C{add server} is written.
ADD_USAGE = "add server B/S ADDR:PORT [server options]"

#: How C{set server ... addr} is written.
ADDR_USAGE = "set server B/S addr IP [port PORT]"


class ServerCommandError(Exception):
    """
    The command is refused; the message is the reply, one line or more.
    """


def add_server(service: IBalancerRuntime, args: List[str]) -> str:
    """
    C{add server B/S ADDR:PORT [options]}: the server starts in
    maintenance unless the options say C{enabled}.

    @raise ServerCommandError: With HAProxy's reply, or the configuration
        check's messages for an invalid line.
    """
    if not args:
        raise ServerCommandError("Require 'backend/server'.")
    try:
        backend, name = parse_backend_server(args[0])
    except ServerChangeError as e:
        raise ServerCommandError(str(e)) from None
    if len(args) < 2:
        raise ServerCommandError(
            "'server' expects <name> and <addr>[:<port>] as arguments;"
            f" usage: {ADD_USAGE}."
        )
    try:
        service.add_server(backend, name, " ".join(args[1:]))
    except ServerChangeError as e:
        raise ServerCommandError(str(e)) from None
    except ConfigError as e:
        raise ServerCommandError("\n".join(p.message for p in e.problems)) from None
    return "New server registered.\n"


def del_server(service: IBalancerRuntime, args: List[str]) -> str:
    """
    C{del server B/S}: refused unless the server is in maintenance with no
    connection.

    @raise ServerCommandError: With HAProxy's reply.
    """
    if len(args) != 1:
        raise ServerCommandError("Require 'backend/server'.")
    try:
        backend, name = parse_backend_server(args[0])
        service.remove_server(backend, name)
    except ServerChangeError as e:
        raise ServerCommandError(str(e)) from None
    return "Server deleted.\n"


def set_server_addr(service: IBalancerRuntime, server: Any, args: List[str]) -> str:
    """
    C{set server B/S addr IP [port PORT]}; C{args} start with C{B/S}.

    @raise ServerCommandError: With HAProxy's reply.
    """
    rest = args[2:]
    port = None
    if len(rest) == 3 and rest[1].lower() == "port":
        if not rest[2].isascii() or not rest[2].isdigit() or len(rest[2]) > 5:
            raise ServerCommandError("provided port is not valid.")
        port = int(rest[2])
    elif len(rest) != 1:
        raise ServerCommandError(
            "set server <b>/<s> addr requires an address and optionally a port."
        )
    try:
        reply = service.set_server_address(server, rest[0], port)
    except ServerChangeError as e:
        raise ServerCommandError(str(e)) from None
    return f"{reply}\n" if reply else ""
