"""
One DNS question over UDP, asked of every UDP name server at once as
HAProxy asks it, on l4lb's quiet connected UDP sockets
(L{l4lb.udp.sockets.connect_server}): C{twisted.names}' own UDP client
opens a listening port per query and logs two lines for each, which a
resolution every second would flood the log with.

Every query announces the section's C{accepted_payload_size} in an EDNS0
OPT pseudo-record (RFC 6891), and a datagram longer than that size is
dropped, as HAProxy drops it: the name server must truncate (TC) instead,
and the question then goes over TCP.
"""

from __future__ import annotations

import random
from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.names import dns

from l4lb.udp.sockets import connect_server

#: The UDP payload size announced when none is configured: RFC 6891's
#: minimum, HAProxy's default.
DEFAULT_PAYLOAD_SIZE = 512


def opt_record(payload_size: int) -> dns.RRHeader:
    """
    The EDNS0 OPT pseudo-record announcing C{payload_size} (RFC 6891
    section 6.1.2): the root name, type OPT (41), the payload size in the
    CLASS field, a zero TTL (extended RCODE 0, version 0, no DO bit) and
    no options.
    """
    return dns.RRHeader(name=b"", type=dns.OPT, cls=payload_size, ttl=0, payload=None)


def build_query(query: dns.Query, query_id: int, payload_size: int) -> bytes:
    """
    The datagram of one recursive question with C{query_id}, announcing
    C{payload_size} (ARCOUNT 1: the OPT record of L{opt_record}).
    """
    message = dns.Message(id=query_id, recDes=1)
    message.queries = [query]
    message.additional = [opt_record(payload_size)]
    return bytes(message.toStr())


class _Socket(DatagramProtocol):
    """
    The socket of one name server for one attempt.
    """

    noisy = False

    def __init__(self, exchange: "UdpExchange", query_id: int) -> None:
        self.exchange = exchange
        self.query_id = query_id

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """
        Take the answer to our question; anything else is ignored, and so
        is a datagram longer than the payload size announced.
        """
        if len(datagram) > self.exchange.payload_size:
            return
        message = dns.Message()
        try:
            message.fromStr(datagram)
        except Exception:
            return
        if message.id == self.query_id and message.answer:
            self.exchange.answered(message)


class UdpExchange:
    """
    Ask C{query} of C{servers}, C{retries} times C{timeout} seconds at
    most; L{start} fires with the first answer (a L{dns.Message}) or fails
    with L{defer.TimeoutError}.

    @ivar payload_size: The UDP payload size announced (EDNS0), in bytes:
        the longest answer taken.
    """

    def __init__(
        self,
        reactor: Any,
        servers: Sequence[Tuple[str, int]],
        query: dns.Query,
        timeout: float,
        retries: int,
        payload_size: int = DEFAULT_PAYLOAD_SIZE,
    ) -> None:
        self.reactor = reactor
        self.payload_size = payload_size
        self.servers = list(servers)
        self.query = query
        self.timeout = timeout
        self.left = retries
        self.done: Deferred[dns.Message] = Deferred(lambda d: self._close())
        self._sockets: List[Any] = []
        self._timer: Optional[Any] = None

    def start(self) -> "Deferred[dns.Message]":
        """
        Send the first attempt.
        """
        self._attempt()
        return self.done

    def _attempt(self) -> None:
        self._close()
        if self.left <= 0:
            self.done.errback(defer.TimeoutError(f"no answer for {self.query.name}"))
            return
        self.left -= 1
        query_id = random.randrange(1, 65536)
        data = build_query(self.query, query_id, self.payload_size)
        for host, port in self.servers:
            try:
                sock = connect_server(self.reactor, _Socket(self, query_id), host, port)
            except Exception:
                continue
            self._sockets.append(sock)
            try:
                sock.write(data)
            except OSError:
                pass
        self._timer = self.reactor.callLater(self.timeout, self._attempt)

    def answered(self, message: dns.Message) -> None:
        """
        The first answer ends the exchange.
        """
        if self.done.called:
            return
        self._close()
        self.done.callback(message)

    def _close(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.stopListening()
