"""
A DNS server that answers from a JSON file, for the discovery tests, run
as its own process:

    python dnszone.py ZONE.json PORT

It serves UDP and TCP on 127.0.0.1:PORT (0: a free port), prints C{READY
PORT}, and reads the file again for every query, so that a test changes
the records by rewriting it.  The file maps record types to names:

    {"A": {"web.example.test": ["127.0.0.2"]},
     "SRV": {"_app._tcp.example.test": [[0, 10, 8001, "a.example.test"]]}}

An SRV answer carries its targets' A records in the additional section,
as name servers usually do.  A name it does not know gets NXDOMAIN.  Every
record has TTL 0.  It exits on SIGTERM, or by itself after ten minutes.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.names import dns, error, server

LIFETIME = 600.0
"""Seconds after which the server exits by itself."""


class ZoneFile:
    """
    A resolver answering from the JSON file at C{path}.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def _zone(self) -> Dict[str, Dict[str, Any]]:
        with open(self.path, encoding="utf-8") as f:
            return json.load(f)  # type: ignore[no-any-return]

    @staticmethod
    def _a(name: str, address: str) -> dns.RRHeader:
        return dns.RRHeader(name=name, type=dns.A, ttl=0, payload=dns.Record_A(address, ttl=0))

    def query(self, query: dns.Query, timeout: Optional[Any] = None) -> "defer.Deferred[Tuple[List[dns.RRHeader], list, list]]":
        """
        Answer C{query} from the file as it is now.
        """
        zone = self._zone()
        name = query.name.name.decode("ascii").lower().rstrip(".")
        answers: List[dns.RRHeader] = []
        additional: List[dns.RRHeader] = []
        if query.type == dns.SRV and name in zone.get("SRV", {}):
            for priority, weight, port, target in zone["SRV"][name]:
                answers.append(
                    dns.RRHeader(
                        name=name,
                        type=dns.SRV,
                        ttl=0,
                        payload=dns.Record_SRV(priority, weight, port, target, ttl=0),
                    )
                )
                for address in zone.get("A", {}).get(target, []):
                    additional.append(self._a(target, address))
        elif query.type == dns.A and name in zone.get("A", {}):
            answers = [self._a(name, address) for address in zone["A"][name]]
        elif not any(name in names for names in zone.values()):
            return defer.fail(error.DomainError(name))
        return defer.succeed((answers, [], additional))


def main(argv: List[str]) -> None:
    """
    Serve until stopped.
    """
    factory = server.DNSServerFactory(clients=[ZoneFile(argv[1])])
    wanted = int(argv[2])
    # A free UDP port may be taken in TCP: try others (a bounded number).
    for _ in range(1 if wanted else 50):
        protocol = dns.DNSDatagramProtocol(controller=factory)
        udp = reactor.listenUDP(wanted, protocol, interface="127.0.0.1")  # type: ignore[attr-defined]
        port = udp.getHost().port
        try:
            reactor.listenTCP(port, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
            break
        except CannotListenError:
            udp.stopListening()
            if wanted:
                raise
    else:
        raise SystemExit("no port free in both UDP and TCP")
    print(f"READY {port}", flush=True)
    reactor.callLater(LIFETIME, reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)
