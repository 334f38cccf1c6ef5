"""
DNS service discovery in C{lb.ini}, with HAProxy's words.

A C{[resolvers NAME]} section lists the name servers and the timers::

    [resolvers dns]
    nameserver ns1 = 127.0.0.1:53
    nameserver ns2 = tcp@127.0.0.1:53
    resolve_retries = 3
    timeout resolve = 1s
    timeout retry = 1s
    hold valid = 10s
    hold obsolete = 30s

Servers name it with the option C{resolvers dns}, and take the options
C{resolve-prefer}, C{resolve-net}, C{resolve-opts} and C{init-addr}
(L{server_dns}).  C{server-template} is parsed by
L{l4lb.config.templates}.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Dict, Optional, Sequence, Tuple

import attr

from l4lb.config.errors import InvalidValue
from l4lb.config.units import is_ip_literal, parse_int, parse_ip, parse_port, parse_time

#: The section kind.
RESOLVERS = "resolvers"

#: The kinds of answer C{hold} is set for, and HAProxy's default periods.
HOLD_DEFAULTS: Dict[str, float] = {
    "nx": 30.0,
    "other": 30.0,
    "refused": 30.0,
    "timeout": 30.0,
    "valid": 10.0,
    "obsolete": 0.0,
}

#: The keys of a C{[resolvers]} section other than C{nameserver NAME}.
RESOLVERS_KEYS = (
    "accepted_payload_size",
    "parse-resolv-conf",
    "resolve_retries",
    "timeout resolve",
    "timeout retry",
) + tuple("hold " + kind for kind in sorted(HOLD_DEFAULTS))

#: Where C{parse-resolv-conf} reads the system's name servers.
RESOLV_CONF = "/etc/resolv.conf"

#: The words of C{resolve-opts}.
RESOLVE_OPTS = ("allow-dup-ip", "ignore-weight", "prevent-dup-ip")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Nameserver:
    """
    One C{nameserver NAME = [tcp@]IP:PORT}.

    @ivar name: Its name, for logs.
    @ivar host: Its IP address.
    @ivar port: Its port.
    @ivar tcp: Queries go over TCP (C{tcp@}) instead of UDP.
    """

    name: str
    host: str
    port: int = 53
    tcp: bool = False


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ResolversSpec:
    """
    One C{[resolvers NAME]} section, with HAProxy's defaults.

    @ivar name: The section's name, which servers give to C{resolvers}.
    @ivar nameservers: Its name servers, in file order (those of
        C{/etc/resolv.conf} after them with C{parse-resolv-conf}).
    @ivar parse_resolv_conf: C{parse-resolv-conf} is set.
    @ivar accepted_payload_size: The UDP payload size announced in each
        query's EDNS0 OPT record, in bytes (12-65535, as HAProxy; 512 by
        default): the longest UDP answer taken, a longer one being
        dropped.
    @ivar resolve_retries: Queries sent for one resolution before it
        counts as timed out (at least 1).
    @ivar timeout_resolve: Seconds between two resolutions of a name,
        whatever the last answer was.
    @ivar timeout_retry: Seconds to wait for an answer before asking again.
    @ivar hold: Seconds by kind of answer (L{HOLD_DEFAULTS}): how long the
        last valid answer stays in force after failures of that kind;
        C{obsolete}, how long a record missing from valid answers stays;
        C{valid}, how long a valid answer is trusted when a failed health
        check asks for an early resolution.
    @ivar line: The section's line.
    """

    name: str
    nameservers: Tuple[Nameserver, ...] = ()
    parse_resolv_conf: bool = False
    accepted_payload_size: int = 512
    resolve_retries: int = 3
    timeout_resolve: float = 1.0
    timeout_retry: float = 1.0
    hold: Tuple[Tuple[str, float], ...] = tuple(sorted(HOLD_DEFAULTS.items()))
    line: int = 0

    def hold_for(self, kind: str) -> float:
        """
        The C{hold} period of one kind of answer.
        """
        return dict(self.hold).get(kind, HOLD_DEFAULTS[kind])


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ServerDns:
    """
    The DNS options of one server.

    @ivar resolvers: The C{[resolvers]} section it follows, or C{None}.
    @ivar prefer: C{"ipv4"} or C{"ipv6"} (C{resolve-prefer}; HAProxy's
        default is C{ipv6}).
    @ivar nets: Networks whose addresses are preferred (C{resolve-net}).
    @ivar opts: The words of C{resolve-opts}.
    @ivar init_addr: The ways tried in turn for the first address
        (C{init-addr}): C{"last"}, C{"libc"}, C{"none"} or an IP address.
    """

    resolvers: Optional[str] = None
    prefer: str = "ipv6"
    nets: Tuple[str, ...] = ()
    opts: Tuple[str, ...] = ()
    init_addr: Tuple[str, ...] = ("last", "libc")

    @property
    def allow_dup_ip(self) -> bool:
        """
        Whether two servers of the backend may take the same address
        (C{resolve-opts allow-dup-ip}); by default they may not.
        """
        return "allow-dup-ip" in self.opts and "prevent-dup-ip" not in self.opts

    @property
    def ignore_weight(self) -> bool:
        """
        Whether SRV weights leave the server's weight alone.
        """
        return "ignore-weight" in self.opts


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ServerTemplate:
    """
    One C{server-template} line.

    @ivar prefix: The slots' name prefix.
    @ivar fqdn: The name looked up, without a trailing dot.
    @ivar port: The port written after the name, or 0 (an SRV record gives
        it).
    @ivar names: The slots' server names, in order.
    @ivar line: The line it is on.
    """

    prefix: str
    fqdn: str
    port: int
    names: Tuple[str, ...]
    line: int = 0

    @property
    def srv(self) -> bool:
        """
        Whether the name is an SRV name (C{_service._proto.domain}).
        """
        return self.fqdn.startswith("_")


def parse_nameserver(text: str) -> Tuple[str, int, bool]:
    """
    Parse C{[tcp@|udp@]IP[:PORT]}.

    @return: The address, the port (53 when not given) and whether TCP is
        asked for.
    """
    tcp = False
    body = text.strip()
    scheme, at, rest = body.partition("@")
    if at:
        if scheme.lower() not in ("tcp", "udp"):
            raise InvalidValue(
                f"{text!r}: unknown transport {scheme!r}; write IP:PORT (UDP)"
                " or tcp@IP:PORT"
            )
        tcp = scheme.lower() == "tcp"
        body = rest
    if body.startswith("["):
        host, _, port_text = body[1:].partition("]")
        port_text = port_text[1:] if port_text.startswith(":") else ""
    elif body.count(":") == 1:
        host, _, port_text = body.partition(":")
    else:
        host, port_text = body, ""
    try:
        address = parse_ip(host)
    except InvalidValue:
        raise InvalidValue(
            f"{text!r} is not a name server address; write IP:PORT such as"
            " 127.0.0.1:53, or tcp@IP:PORT (name servers are not themselves"
            " looked up)"
        )
    return address, parse_port(port_text) if port_text else 53, tcp


#: The range HAProxy accepts for C{accepted_payload_size}: a DNS header's
#: 12 bytes to the UDP length field's limit.
PAYLOAD_SIZE_RANGE = (12, 65535)


def _payload_size(text: str) -> int:
    return parse_int(text, *PAYLOAD_SIZE_RANGE)


#: Parsers of the simple keys of a C{[resolvers]} section.
RESOLVERS_VALUES: Dict[str, Callable[[str], object]] = {
    "accepted_payload_size": _payload_size,
    "resolve_retries": lambda text: parse_int(text, 1),
    "timeout resolve": parse_time,
    "timeout retry": parse_time,
}
RESOLVERS_VALUES.update({"hold " + kind: parse_time for kind in HOLD_DEFAULTS})


def read_resolv_conf(text: str) -> Tuple[Nameserver, ...]:
    """
    The C{nameserver} lines of a C{resolv.conf} text, named after their
    line (C{resolvconf1}, ...); lines that are not IP addresses are
    skipped.
    """
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver" and is_ip_literal(words[1]):
            found.append(Nameserver(f"resolvconf{number}", words[1], 53))
    return tuple(found)


def _choice_list(text: str, choices: Sequence[str], what: str) -> Tuple[str, ...]:
    words = tuple(w.strip().lower() for w in text.split(","))
    for word in words:
        if word not in choices:
            raise InvalidValue(
                f"{word!r} is not a {what} word; allowed: {', '.join(choices)}"
            )
    return words


def parse_resolve_opts(text: str) -> Tuple[str, ...]:
    """
    Parse C{resolve-opts WORD[,WORD...]}.
    """
    return _choice_list(text, RESOLVE_OPTS, "resolve-opts")


def parse_resolve_net(text: str) -> Tuple[str, ...]:
    """
    Parse C{resolve-net CIDR[,CIDR...]}.
    """
    nets = []
    for word in text.split(","):
        try:
            nets.append(str(ipaddress.ip_network(word.strip(), strict=False)))
        except ValueError:
            raise InvalidValue(
                f"{word!r} is not a network; write CIDR blocks separated by"
                " commas, such as 127.0.0.0/8,::1/128"
            )
    return tuple(nets)


def parse_init_addr(text: str) -> Tuple[str, ...]:
    """
    Parse C{init-addr METHOD[,METHOD...]}: C{last}, C{libc}, C{none} or an
    IP address, tried in turn.
    """
    methods = []
    for word in text.split(","):
        word = word.strip()
        if word.lower() in ("last", "libc", "none"):
            methods.append(word.lower())
        elif is_ip_literal(word):
            methods.append(parse_ip(word))
        else:
            raise InvalidValue(
                f"{word!r} is not an init-addr method; allowed: last, libc,"
                " none or an IP address, separated by commas"
            )
    return tuple(methods)


def parse_resolvers_name(text: str) -> str:
    """
    Check the section name given to C{resolvers}.
    """
    if not text or not all(c.isalnum() or c in "-_.:" for c in text):
        raise InvalidValue(f"{text!r} is not the name of a [resolvers] section")
    return text


#: The server options of this module and the parsers of their values.
DNS_SERVER_OPTIONS: Dict[str, Callable[[str], object]] = {
    "init-addr": parse_init_addr,
    "resolve-net": parse_resolve_net,
    "resolve-opts": parse_resolve_opts,
    "resolve-prefer": lambda text: _choice_list(text, ("ipv4", "ipv6"), "resolve-prefer")[0],
    "resolvers": parse_resolvers_name,
}


def server_dns(options: Sequence[Tuple[str, Optional[str]]]) -> ServerDns:
    """
    The DNS options of a server, from its option words (later ones win).

    @param options: L{ServerSpec.options <l4lb.config.model.ServerSpec>}.
    """
    changes: Dict[str, object] = {}
    fields = {
        "resolvers": "resolvers",
        "resolve-prefer": "prefer",
        "resolve-net": "nets",
        "resolve-opts": "opts",
        "init-addr": "init_addr",
    }
    for word, value in options:
        if word in fields and value is not None:
            changes[fields[word]] = DNS_SERVER_OPTIONS[word](value)
    return ServerDns(**changes)  # type: ignore[arg-type]
