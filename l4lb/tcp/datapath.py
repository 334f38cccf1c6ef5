"""
The data path of an established TCP session: what carries bytes between
its two sockets once the server accepted.

L{IDataPath} is the seam between the session's state machine
(L{l4lb.tcp.session}) and the way bytes move.  It has two implementations:

  - L{l4lb.tcp.classic.ClassicPath}: Twisted's transports, each registered as the streaming
    producer of the other (a slow reader on one side pauses reading on the
    other), and half-closed through C{IHalfCloseableProtocol}.  TLS legs
    are always carried here;
  - L{l4lb.tcp.lean.LeanRelay}: the sockets taken from their transports
    and relayed with C{recv}/C{send} (or C{splice}), on Linux, for plain
    TCP legs (unless C{tune.relay = classic}).

The session chooses one, once, when its server accepted
(L{l4lb.tcp.session.Session.server_connected}), and then only calls the
interface.  Either way the bytes are counted
in the session (C{bytes_in}, C{bytes_out}) and each chunk notes the time
in its C{last_activity}, which the idle timeouts read.
"""

from __future__ import annotations

from typing import Any, Tuple

from zope.interface import Attribute, Interface


class IDataPath(Interface):
    """
    Carries the bytes of one established session between its client and
    server sockets.
    """

    session = Attribute(
        "The L{l4lb.tcp.session.Session} it carries: its byte counts and"
        " activity time are kept there, and its C{client_eof} and"
        " C{server_eof} are called when a side ends its stream."
    )

    def start(first: bytes, watcher: Any, dialer: Any) -> None:
        """
        Start relaying: the server receives C{first} (a PROXY header, bytes
        read while inspecting) before anything relayed from the client.

        @param watcher: The L{l4lb.tcp.watch.HangupWatcher} of the client
            socket, or C{None}; it stops (or hands its registration over).
        @param dialer: The L{l4lb.tcp.dial.Dialer} that connected the
            server socket, or C{None}; likewise.
        """

    def shut_write(to_server: bool) -> None:
        """
        One side ended its stream: shut the write half of the other socket
        (the server's when C{to_server}, else the client's), once what is
        still buffered for it is sent.  The session calls it from its
        C{client_eof}/C{server_eof}.
        """

    def held_up() -> Tuple[bool, bool]:
        """
        Whether data waits for a server that does not read it (the client
        is not read meanwhile), and whether data waits for a client that
        does not read it.
        """

    def close() -> None:
        """
        Close both sockets gracefully: what is buffered for a slow reader
        is still sent.  The session may end during the call.
        """

    def abort() -> None:
        """
        Close both sockets now, dropping what is buffered.  A socket the
        session knows closed already is left alone.
        """
