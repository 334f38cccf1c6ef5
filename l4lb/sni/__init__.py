"""
Routing TLS connections by server name without terminating TLS.

L{clienthello} reads the name from a client's first bytes, L{routes} maps
names to backends, and L{stage} is the frontend stage that uses both.
"""

from l4lb.sni.clienthello import (
    DEFAULT_MAX_HELLO,
    MALFORMED,
    NEED_MORE,
    NOT_TLS,
    TOO_BIG,
    ClientHello,
    HelloReader,
    Verdict,
    parse_client_hello,
)
from l4lb.sni.routes import SniRoutes
from l4lb.sni.stage import SniStage, build_sni_stage

__all__ = [
    "DEFAULT_MAX_HELLO",
    "MALFORMED",
    "NEED_MORE",
    "NOT_TLS",
    "TOO_BIG",
    "ClientHello",
    "HelloReader",
    "SniRoutes",
    "SniStage",
    "Verdict",
    "build_sni_stage",
    "parse_client_hello",
]
