"""
Asking a C{[resolvers]} section's name servers, on C{twisted.names}.

L{NamesQuerier} sends each query over UDP to every UDP name server at
once (C{timeout retry} per attempt, C{resolve_retries} attempts; the first
answer wins), announcing C{accepted_payload_size} in an EDNS0 OPT record,
then over TCP to each C{tcp@} name server while none answers; an answer
that does not fit in that size (TC bit) is asked again over TCP.  Messages are C{twisted.names}'; nothing blocks the reactor.
"""

from __future__ import annotations

import socket
from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.names import client, dns, error
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from l4lb.config.dns import ResolversSpec
from l4lb.dns._udp import UdpExchange
from l4lb.dns.records import NX, OTHER, REFUSED, TIMEOUT, Record, order_addresses


class ResolutionFailed(Exception):
    """
    A name could not be resolved; C{kind} says how (L{NX}, L{REFUSED},
    L{TIMEOUT} or L{OTHER}), as C{hold} names it.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class IDnsQuerier(Interface):
    """
    Resolves the names of servers.
    """

    def records(name: str, srv: bool, prefer: str, nets: Sequence[str]) -> "Deferred[List[Record]]":
        """
        Look C{name} up.

        @param srv: C{name} is an SRV name: the answer's targets, ports and
            weights make the records (their addresses from the answer's
            additional section, else looked up).
        @param prefer: C{"ipv4"} or C{"ipv6"}: the family asked first.
        @param nets: C{resolve-net} networks whose addresses come first.
        @return: A L{Deferred} firing with the records (an empty list when
            the name has none), or failing with L{ResolutionFailed}.
        """


def failure_kind(failure: Failure) -> str:
    """
    The kind of a failed query, as C{hold} names it.
    """
    if failure.check(error.DNSNameError):
        return NX
    if failure.check(error.DNSQueryRefusedError):
        return REFUSED
    if failure.check(error.DNSQueryTimeoutError, defer.TimeoutError):
        return TIMEOUT
    return OTHER


_TYPES = {"ipv4": (dns.A, dns.AAAA), "ipv6": (dns.AAAA, dns.A)}


def _name(name: dns.Name) -> str:
    return bytes(name.name).decode("ascii", "replace")


def _address_text(payload: Any) -> str:
    if isinstance(payload, dns.Record_A):
        return str(payload.dottedQuad())
    return socket.inet_ntop(socket.AF_INET6, payload.address)


def _addresses(section: Sequence[Any], name: str, kind: int) -> List[str]:
    wanted = name.lower().rstrip(".")
    return [
        _address_text(record.payload)
        for record in section
        if record.type == kind and _name(record.name).lower().rstrip(".") == wanted
    ]


@implementer(IDnsQuerier)
class NamesQuerier:
    """
    L{IDnsQuerier} on C{twisted.names}' client for one C{[resolvers]}
    section.
    """

    def __init__(self, spec: ResolversSpec, reactor: Any) -> None:
        self.spec = spec
        self.reactor = reactor
        self._udp = [(ns.host, ns.port) for ns in spec.nameservers if not ns.tcp]
        tcp = [(ns.host, ns.port) for ns in spec.nameservers if ns.tcp]
        # Over TCP (tcp@ name servers, and answers too large for a
        # datagram) twisted.names' client keeps one connection per server.
        self._tcp = [client.Resolver(servers=[server], reactor=reactor) for server in tcp]
        self._fallback = client.Resolver(servers=self._udp or tcp, reactor=reactor)
        for resolver in self._tcp + [self._fallback]:
            factory: Any = resolver.factory
            factory.noisy = False

    def _filter(self, resolver: client.Resolver, message: dns.Message) -> Any:
        """
        The sections of an answer, asked again over TCP when truncated, or
        the failure its response code means.
        """
        if message.trunc:
            timeout = self.spec.timeout_retry * self.spec.resolve_retries
            return resolver.queryTCP(message.queries, timeout).addCallback(
                lambda m: self._filter(resolver, m)
            )
        if message.rCode != dns.OK:
            return Failure(resolver.exceptionForCode(message.rCode)(message))
        # The name server's own OPT record is about the exchange, not a
        # record of the answer.
        additional = [r for r in message.additional if r.type != dns.OPT]
        return (message.answers, message.authority, additional)

    def _ask(self, name: str, kind: int) -> "Deferred[Tuple[list, list, list]]":
        """
        One question to the name servers: the UDP ones all at once, then
        each TCP one while the previous ones do not answer.
        """
        query = dns.Query(name, kind, dns.IN)
        attempts: List[Any] = []
        if self._udp:
            attempts.append(
                lambda: UdpExchange(
                    self.reactor, self._udp, query, self.spec.timeout_retry,
                    self.spec.resolve_retries, self.spec.accepted_payload_size,
                ).start().addCallback(lambda m: self._filter(self._fallback, m))
            )
        for tcp in self._tcp:
            attempts.append(
                lambda tcp=tcp: tcp.queryTCP(
                    [query], self.spec.timeout_retry * self.spec.resolve_retries
                ).addCallback(lambda m: self._filter(tcp, m))
            )

        def attempt(index: int) -> "Deferred[Tuple[list, list, list]]":
            d: Deferred[Tuple[list, list, list]] = attempts[index]()

            def next_one(failure: Failure) -> Any:
                if index + 1 < len(attempts) and failure_kind(failure) in (TIMEOUT, OTHER):
                    return attempt(index + 1)
                return failure

            return d.addErrback(next_one)

        return attempt(0)

    def _family(
        self, name: str, prefer: str, additional: Sequence[Any] = ()
    ) -> "Deferred[List[str]]":
        first, second = _TYPES[prefer]
        for kind in (first, second):
            found = _addresses(additional, name, kind)
            if found:
                return defer.succeed(found)

        def one(kind: int) -> "Deferred[List[str]]":
            return self._ask(name, kind).addCallback(lambda r: _addresses(r[0], name, kind))

        def fallback(found: List[str]) -> Any:
            return found or one(second)

        return one(first).addCallback(fallback)

    def records(
        self, name: str, srv: bool, prefer: str = "ipv6", nets: Sequence[str] = ()
    ) -> "Deferred[List[Record]]":
        """
        See L{IDnsQuerier.records}.
        """

        def failed(failure: Failure) -> List[Record]:
            if failure.check(ResolutionFailed):
                failure.raiseException()
            raise ResolutionFailed(failure_kind(failure), failure.getErrorMessage())

        if not srv:
            d = self._family(name, prefer).addCallback(
                lambda found: [Record(a) for a in order_addresses(found, prefer, nets)]
            )
            return d.addErrback(failed)

        def targets(result: Tuple[list, list, list]) -> "Deferred[List[Record]]":
            answers, _, additional = result
            services = [r.payload for r in answers if r.type == dns.SRV]

            def one(srv: Any) -> "Deferred[Optional[Record]]":
                target = _name(srv.target).lower().rstrip(".")

                def made(found: List[str]) -> Optional[Record]:
                    ordered = order_addresses(found, prefer, nets)
                    if not ordered:
                        return None
                    return Record(ordered[0], srv.port, srv.weight, target)

                # A target that does not resolve leaves its slot empty
                # rather than failing the whole answer.
                return self._family(target, prefer, additional).addCallbacks(
                    made, lambda f: None
                )

            gathered = defer.gatherResults([one(s) for s in services])
            return gathered.addCallback(lambda found: [r for r in found if r is not None])

        return self._ask(name, dns.SRV).addCallback(targets).addErrback(failed)
