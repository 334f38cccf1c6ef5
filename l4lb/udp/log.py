"""
The log line of a UDP session, written once when the session ends.

The layout follows HAProxy's C{tcplog} where the fields mean the same::

    %ci:%cp [%t] %ft %b/%s %Tt %dgin/%Bin %dgout/%Bout %drop %ts %reason %fs/%bs/%ss
    127.0.0.1:40312 [06/Feb/2026:12:12:51.443] dns dns/ns1 2 1/29 1/45 0 -- responses 3/3/2

client address:port, session start, frontend, backend/server, duration in
ms, datagrams/bytes from the client, datagrams/bytes from the server,
datagrams dropped, the two-character termination state, the reason in a
word, and the sessions open on the frontend, backend and server.
"""

from __future__ import annotations

import attr

from l4lb.logs import format_date

#: Termination states and reasons: (state, reason).  C{-- responses}: every
#: datagram from the client had its C{udp-responses} replies, so the line's
#: C{%dgout} is C{udp-responses} times its C{%dgin}.
RESPONSES = ("--", "responses")
IDLE = ("cD", "idle")
#: The session went idle while the server still owed replies to some of the
#: client's datagrams (C{udp-responses}): the server is blamed, as HAProxy
#: blames a server that leaves data unanswered (C{sD}).
UNANSWERED = ("sD", "unanswered")
EVICTED = ("PD", "evicted")
REFUSED = ("SC", "refused")
DOWN = ("DD", "down")
KILLED = ("KD", "killed")
STOPPED = ("KD", "stopped")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class UdpRecord:
    """
    What one UDP session log line says.

    @ivar client_host: The client's IP address.
    @ivar client_port: The client's port.
    @ivar started: When the first datagram arrived (POSIX time).
    @ivar frontend: The frontend's name.
    @ivar backend: The backend's name.
    @ivar server: The server's name.
    @ivar duration: Seconds from the first datagram to the end.
    @ivar datagrams_in: Datagrams from the client.
    @ivar bytes_in: Bytes from the client.
    @ivar datagrams_out: Datagrams from the server.
    @ivar bytes_out: Bytes from the server.
    @ivar dropped: Datagrams dropped in either direction.
    @ivar termination: The two-character termination state.
    @ivar reason: Why the session ended, in a word.
    @ivar fe_sessions: Sessions open on the frontend when it was logged.
    @ivar be_sessions: Sessions open on the backend.
    @ivar srv_sessions: Sessions open on the server.
    """

    client_host: str
    client_port: int
    started: float
    frontend: str
    backend: str
    server: str
    duration: float
    datagrams_in: int
    bytes_in: int
    datagrams_out: int
    bytes_out: int
    dropped: int
    termination: str
    reason: str
    fe_sessions: int
    be_sessions: int
    srv_sessions: int


def format_udplog(r: UdpRecord) -> str:
    """
    Format a record as one log line.
    """
    return (
        f"{r.client_host}:{r.client_port} [{format_date(r.started)}]"
        f" {r.frontend} {r.backend}/{r.server} {int(round(r.duration * 1000))}"
        f" {r.datagrams_in}/{r.bytes_in} {r.datagrams_out}/{r.bytes_out}"
        f" {r.dropped} {r.termination} {r.reason}"
        f" {r.fe_sessions}/{r.be_sessions}/{r.srv_sessions}"
    )
