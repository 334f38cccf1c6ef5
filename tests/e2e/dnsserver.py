"""
A DNS server for the UDP end-to-end tests, run as its own process:

    python dnsserver.py ADDRESS

It listens on a free UDP port of 127.0.0.1, prints C{READY PORT}, and
answers every A query with C{ADDRESS} (TTL 0), so that a client can tell
which server answered.  It exits on SIGTERM, or by itself after ten
minutes so that nothing is left running.
"""

from __future__ import annotations

import sys
from typing import Any, List, Optional, Tuple

from twisted.internet import defer, reactor
from twisted.names import dns, server

LIFETIME = 600.0
"""Seconds after which the server exits by itself."""


class FixedAnswer:
    """
    A resolver that answers every query with one address.
    """

    def __init__(self, address: str) -> None:
        self.address = address

    def query(self, query: dns.Query, timeout: Optional[Any] = None) -> "defer.Deferred[Tuple[List[dns.RRHeader], list, list]]":
        """
        Answer C{query} with the fixed address.
        """
        record = dns.RRHeader(
            name=query.name.name, type=dns.A, ttl=0, payload=dns.Record_A(self.address, ttl=0)
        )
        return defer.succeed(([record], [], []))


def main(argv: List[str]) -> None:
    """
    Serve until stopped.
    """
    factory = server.DNSServerFactory(clients=[FixedAnswer(argv[1])])
    protocol = dns.DNSDatagramProtocol(controller=factory)
    port = reactor.listenUDP(0, protocol, interface="127.0.0.1")  # type: ignore[attr-defined]
    print(f"READY {port.getHost().port}", flush=True)
    reactor.callLater(LIFETIME, reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)
