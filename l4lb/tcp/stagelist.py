"""
The stages (L{l4lb.interfaces.IClientStage}) a frontend's new connections
go through, in their fixed order:

 1. reading the PROXY protocol header (binds with C{accept-proxy});
 2. the source address rules and per-source limits;
 3. routing by TLS server name (C{use_backend NAME = sni HOST ...}).

Each later stage sees the client address the earlier ones settled on, and
the bytes they did not consume.
"""

from __future__ import annotations

from typing import Any, List, Mapping

from l4lb.protect.stage import build_source_stage
from l4lb.sni.stage import build_sni_stage


def build_stages(spec: Any, backends: Mapping[str, Any]) -> List[Any]:
    """
    The stages of a frontend, in order.

    Stage 1 is per bind: see L{bind_stages}.

    @param spec: The L{l4lb.config.model.Frontend}.
    @param backends: Every L{l4lb.pool.BackendState} by name.
    """
    stages: List[Any] = []
    source = build_source_stage(spec)
    if source is not None:
        stages.append(source)
    sni = build_sni_stage(spec, backends)
    if sni is not None:
        stages.append(sni)
    return stages


def bind_stages(spec: Any, bind: Any) -> List[Any]:
    """
    The stages of one bind's connections that come before the frontend's
    (L{build_stages}): reading the PROXY header when the bind has
    C{accept-proxy}.

    @param spec: The L{l4lb.config.model.Frontend}.
    @param bind: One of its L{l4lb.config.model.BindSpec}s.
    """
    if not bind.accept_proxy:
        return []
    # Only then: Twisted's PROXY protocol package imports its endpoints,
    # which import pyOpenSSL.
    from l4lb.tcp.acceptproxy import AcceptProxy, parse_networks

    return [AcceptProxy(parse_networks(spec.accept_proxy_from))]
