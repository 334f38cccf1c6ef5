"""
Servers from etcd: a backend's C{servers-from = etcd URL PREFIX}.

Each key under the prefix is a server (its name after the prefix), its
value a server line's text, C{ADDR:PORT [options]}, with C{drain} or
C{maint} for the administrative state.  The keys are listed, then watched,
through etcd's v3 JSON gateway on Twisted's HTTP client
(L{l4lb.etcd._gateway}); each change goes through the runtime API's
methods, as C{add server} and C{del server} do (L{l4lb.etcd._sync}); an
outage keeps the servers as last known and the watch resumes from its
revision (L{l4lb.etcd._watch}).
"""

from typing import TYPE_CHECKING

from l4lb.lazyexports import lazy_exports

if TYPE_CHECKING:
    from l4lb.etcd._gateway import (
        EtcdError,
        EtcdGateway,
        Event,
        IEtcdGateway,
        IWatchStream,
        WatchMessage,
        parse_message,
    )
    from l4lb.etcd._providers import EtcdProviders
    from l4lb.etcd._sync import ServerSync, Wanted, parse_value
    from l4lb.etcd._watch import PrefixWatch

#: The module of each name, imported when the name is first used: a
#: configuration without C{servers-from} does not load Twisted's HTTP client.
_WHERE = {
    "EtcdError": "_gateway",
    "EtcdGateway": "_gateway",
    "Event": "_gateway",
    "IEtcdGateway": "_gateway",
    "IWatchStream": "_gateway",
    "WatchMessage": "_gateway",
    "parse_message": "_gateway",
    "EtcdProviders": "_providers",
    "ServerSync": "_sync",
    "Wanted": "_sync",
    "parse_value": "_sync",
    "PrefixWatch": "_watch",
}

__all__ = [
    "EtcdError",
    "EtcdGateway",
    "EtcdProviders",
    "Event",
    "IEtcdGateway",
    "IWatchStream",
    "PrefixWatch",
    "ServerSync",
    "Wanted",
    "WatchMessage",
    "parse_message",
    "parse_value",
]


__getattr__ = lazy_exports(__name__, _WHERE)
