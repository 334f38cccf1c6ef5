"""
The listening sockets a handover passes, and how the new process adopts
them.

Each socket is known by a key both processes compute from their files: a
frontend's bind by its kind and endpoint description, the runtime API by
its path, the statistics pages by their address.  A bind the new file
still has (whatever frontend it is under now) takes the socket of the
same key; a new one is bound; one the new file dropped is left to the old
process, which closes it when it exits.
"""

from __future__ import annotations

import socket
from typing import Any, Dict, List, Optional, Tuple

from l4lb._twistedcompat import share_listening_port, stream_port_socket
from l4lb.adoption import nonblocking_adoption

#: A socket's key: C{(kind, where)}.
Key = Tuple[str, str]

#: Endpoint descriptions whose sockets can be adopted: plain listening
#: sockets.  An C{ssl:} endpoint wraps TLS around its port inside Twisted,
#: which an adopted socket would lose: it is bound afresh instead.
_ADOPTABLE = ("tcp:", "tcp6:", "unix:", "systemd:", "udp:")


def bind_key(udp: bool, bind: Any) -> Optional[Key]:
    """
    The key of a frontend's bind, or C{None} when its socket is not
    passed.
    """
    endpoint = bind.endpoint
    if not endpoint.startswith(_ADOPTABLE):
        return None
    return ("udp" if udp else "tcp", endpoint)


def admin_key(path: str) -> Key:
    """
    The key of the runtime API's socket at C{path}.
    """
    return ("stats socket", path)


def stats_key(host: str, port: int) -> Key:
    """
    The key of the statistics pages' socket.
    """
    return ("stats bind", f"{host}:{port}")


def family_of(fd: int) -> int:
    """
    The address family of the socket C{fd}, which stays open (and in the
    mode it was: L{nonblocking_adoption}).
    """
    with nonblocking_adoption():
        probe = socket.socket(fileno=fd)
    try:
        return int(probe.family)
    finally:
        probe.detach()


def adopt_stream(reactor: Any, fd: int, factory: Any, backlog: int = 0) -> Any:
    """
    Listen with C{factory} on the passed listening socket C{fd} (closed
    here: the port holds its own duplicate), with the backlog the new
    file asks for when it gives one.
    """
    try:
        # The process that handed the socket over shares its mode.
        with nonblocking_adoption():
            port = reactor.adoptStreamPort(fd, family_of(fd), factory)
    finally:
        _close(fd)
    sock = stream_port_socket(port)
    if backlog > 0 and sock is not None:
        # listen() again on a listening socket only changes its backlog.
        sock.listen(backlog)
    # The process that handed it over listens on the same socket until it
    # commits: closing this port before then must leave it listening there.
    share_listening_port(port)
    return port


def adopt_datagram(reactor: Any, fd: int, protocol: Any, max_packet: int) -> Any:
    """
    Read with C{protocol} from the passed UDP socket C{fd} (closed here).
    """
    try:
        with nonblocking_adoption():
            return reactor.adoptDatagramPort(fd, family_of(fd), protocol, max_packet)
    finally:
        _close(fd)


def listening_sockets(service: Any) -> List[Tuple[Key, int]]:
    """
    The key and descriptor of every listening socket of a running service
    that a new process may take: the frontends' binds that can be adopted,
    the runtime API's socket and the statistics pages' socket.
    """
    found: List[Tuple[Key, int]] = []
    for ports in service.ports.values():
        for port in ports:
            key = service.bind_keys.get(port)
            if key is not None:
                found.append((key, port.fileno()))
    settings = service.config.global_settings
    if service.admin_port is not None and settings.stats_socket is not None:
        found.append((admin_key(settings.stats_socket.path), service.admin_port.fileno()))
    if service.stats_port is not None and settings.stats_bind is not None:
        where = settings.stats_bind
        found.append((stats_key(where.host, where.port), service.stats_port.fileno()))
    return found


def release_socket_files(service: Any) -> None:
    """
    Once a handover is committed, make the UNIX listening sockets a
    process adopted remove their files again when they close, as those it
    bound itself do.
    """
    ports = [port for group in service.ports.values() for port in group]
    for port in [*ports, service.admin_port, service.stats_port]:
        if port is not None:
            share_listening_port(port, False)


def close_unused(inherited: Dict[Key, int]) -> None:
    """
    Close the passed descriptors that no bind of the new file took.
    """
    for fd in inherited.values():
        _close(fd)
    inherited.clear()


def _close(fd: int) -> None:
    import os

    try:
        os.close(fd)
    except OSError:
        pass
