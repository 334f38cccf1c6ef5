"""
DNS service discovery, with HAProxy's semantics: C{[resolvers]} sections,
servers that follow their host name and C{server-template} slots filled
from A, AAAA or SRV records.

L{l4lb.dns.records} decides what answers mean (pure, time passed in),
L{l4lb.dns.client} asks the name servers on C{twisted.names}, and
L{l4lb.dns.watches} says which names are watched for which servers, and
L{l4lb.dns.discovery} applies the answers to the running servers through
the runtime API.
"""

from typing import TYPE_CHECKING

from l4lb.lazyexports import lazy_exports

if TYPE_CHECKING:
    from l4lb.dns.client import IDnsQuerier, NamesQuerier, ResolutionFailed
    from l4lb.dns.discovery import DnsDiscovery
    from l4lb.dns.watches import Watch, server_watch, watches_of
    from l4lb.dns.records import Record, Resolution, assign, follow, order_addresses, server_weight

#: The module of each name, imported when the name is first used: a
#: configuration without resolvers does not load C{twisted.names}.
_WHERE = {
    "IDnsQuerier": "client",
    "NamesQuerier": "client",
    "ResolutionFailed": "client",
    "DnsDiscovery": "discovery",
    "Watch": "watches",
    "server_watch": "watches",
    "watches_of": "watches",
    "Record": "records",
    "Resolution": "records",
    "assign": "records",
    "follow": "records",
    "order_addresses": "records",
    "server_weight": "records",
}

__all__ = [
    "DnsDiscovery",
    "IDnsQuerier",
    "NamesQuerier",
    "Record",
    "Resolution",
    "ResolutionFailed",
    "Watch",
    "assign",
    "follow",
    "order_addresses",
    "server_watch",
    "server_weight",
    "watches_of",
]


__getattr__ = lazy_exports(__name__, _WHERE)
