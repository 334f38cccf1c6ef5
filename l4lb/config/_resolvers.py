"""
Assembling the DNS parts of a configuration: C{[resolvers]} sections, the
C{server-template} lines of a backend, and the references between them.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

from l4lb.config._sections import Section
from l4lb.config.dns import (
    HOLD_DEFAULTS,
    RESOLV_CONF,
    Nameserver,
    ResolversSpec,
    ServerTemplate,
    parse_nameserver,
    read_resolv_conf,
    server_dns,
)
from l4lb.config.errors import InvalidValue
from l4lb.config.model import Backend, ServerSpec
from l4lb.config.servers import Option
from l4lb.config.templates import parse_template

#: Reports an error: line, section header, key, message.
Report = Callable[[int, str, str, str], None]


def _system_nameservers() -> Tuple[Nameserver, ...]:
    try:
        with open(RESOLV_CONF, encoding="utf-8", errors="replace") as f:
            return read_resolv_conf(f.read())
    except OSError:
        return ()


def build_resolvers(
    section: Section,
    error: Report,
    system: Callable[[], Tuple[Nameserver, ...]] = _system_nameservers,
) -> ResolversSpec:
    """
    Make the L{ResolversSpec} of one C{[resolvers NAME]} section.

    @param system: Reads the name servers of C{/etc/resolv.conf}, for
        C{parse-resolv-conf}.
    """
    nameservers: List[Nameserver] = []
    for name, entry in section.nameservers:
        try:
            host, port, tcp = parse_nameserver(entry.value or "")
        except InvalidValue as problem:
            error(entry.line, section.header, entry.key, problem.message)
            continue
        nameservers.append(Nameserver(name, host, port, tcp))
    def value(key: str, default: Any) -> Any:
        setting = section.settings.get(key)
        return default if setting is None else setting.value

    parse_resolv_conf = bool(value("parse-resolv-conf", False))
    if parse_resolv_conf:
        nameservers.extend(system())
    if not nameservers:
        error(
            section.line,
            section.header,
            "",
            "no name server; add 'nameserver NAME = IP:PORT' or 'parse-resolv-conf'"
            + (f" ({RESOLV_CONF} lists none)" if parse_resolv_conf else ""),
        )
    hold = tuple(sorted((kind, value("hold " + kind, default)) for kind, default in HOLD_DEFAULTS.items()))
    return ResolversSpec(
        name=section.name,
        nameservers=tuple(nameservers),
        parse_resolv_conf=parse_resolv_conf,
        accepted_payload_size=value("accepted_payload_size", 512),
        resolve_retries=value("resolve_retries", 3),
        timeout_resolve=value("timeout resolve", 1.0),
        timeout_retry=value("timeout retry", 1.0),
        hold=hold,
        line=section.line,
    )


def build_templates(
    section: Section, defaults: Sequence[Option], error: Report
) -> Tuple[Tuple[ServerTemplate, ...], List[ServerSpec]]:
    """
    Parse the C{server-template} lines of a backend section.

    @return: The templates and their slots, in file order.
    """
    templates: List[ServerTemplate] = []
    slots: List[ServerSpec] = []
    for prefix, entry in section.templates:
        template, servers, messages = parse_template(prefix, entry.value, entry.line, defaults)
        for message in messages:
            error(entry.line, section.header, entry.key, message)
        if template is not None:
            templates.append(template)
            slots.extend(servers)
    return tuple(templates), slots


def check_references(
    sections: Sequence[Section],
    backends: Sequence[Backend],
    resolvers: Sequence[ResolversSpec],
    error: Report,
) -> None:
    """
    Report a server that names a C{[resolvers]} section that does not
    exist, and a template slot whose name another server of the backend
    has.
    """
    names = [spec.name for spec in resolvers]
    headers: Dict[str, str] = {s.name: s.header for s in sections if s.kind in ("backend", "listen")}
    for backend in backends:
        header = headers.get(backend.name, f"backend {backend.name}")
        seen: Dict[str, int] = {}
        for server in backend.servers:
            key = f"server {server.name}"
            if server.name in seen:
                error(
                    server.line,
                    header,
                    key,
                    f"duplicate server name {server.name!r}; the first is at line"
                    f" {seen[server.name]} (a server-template's slots are named"
                    " PREFIX1, PREFIX2, ...)",
                )
            seen.setdefault(server.name, server.line)
            wanted = server_dns(server.options).resolvers
            if wanted is not None and wanted not in names:
                error(
                    server.line,
                    header,
                    key,
                    f"no [resolvers {wanted}] section; resolvers defined:"
                    f" {', '.join(names) or 'none'}",
                )
