"""
C{server-template PREFIX = COUNT|LOW-HIGH FQDN[:PORT] [options]}.

A template makes numbered servers (C{PREFIX1} ... C{PREFIXn}, or
C{PREFIXlow} ... C{PREFIXhigh}) that share their options.  They start with
no address, in maintenance, and DNS fills them (L{l4lb.dns}): with an SRV
name (C{_service._proto.domain}) each record's target, port and weight fill
one slot; with another name each address does.
"""

from __future__ import annotations

import re
import shlex
from typing import List, Optional, Sequence, Tuple

import attr

from l4lb.config.dns import ServerTemplate, server_dns
from l4lb.config.errors import InvalidValue
from l4lb.config.model import ServerSpec
from l4lb.config.servers import Option, check_name, parse_server, split_words

#: The most slots one template may make.
MAX_SLOTS = 100000

_RANGE = re.compile(r"^(?P<low>[0-9]+)(?:-(?P<high>[0-9]+))?$")
_USAGE = "expected 'server-template PREFIX = COUNT|LOW-HIGH FQDN[:PORT] [options]'"


def parse_range(text: str) -> Tuple[int, int]:
    """
    Parse C{COUNT} (slots 1 to COUNT) or C{LOW-HIGH}.
    """
    match = _RANGE.match(text)
    if match is None:
        raise InvalidValue(f"{text!r} is not a slot count; {_USAGE}, e.g. 3 or 1-3")
    low, high = int(match["low"]), match["high"]
    first, last = (1, low) if high is None else (low, int(high))
    if first < 0 or last < first or last - first + 1 > MAX_SLOTS or last == 0:
        raise InvalidValue(
            f"{text!r} is not a slot range; COUNT is 1 to {MAX_SLOTS}, and"
            " LOW-HIGH has LOW <= HIGH"
        )
    return first, last


def parse_template(
    prefix: str, value: Optional[str], line: int, defaults: Sequence[Option] = ()
) -> Tuple[Optional[ServerTemplate], List[ServerSpec], List[str]]:
    """
    Parse one C{server-template} entry into its slots.

    @param defaults: Options from C{default-server}.
    @return: The template (C{None} when it cannot be used), its servers,
        and one message per problem.
    """
    try:
        check_name(prefix, "server-template")
        words = split_words(value or "")
    except InvalidValue as error:
        return None, [], [error.message]
    if len(words) < 2:
        return None, [], [f"missing slot count or name; {_USAGE}"]
    try:
        first, last = parse_range(words[0])
    except InvalidValue as error:
        return None, [], [error.message]
    target = words[1]
    host, colon, port_text = target.rpartition(":")
    if not colon or not port_text.isdigit():
        host, port_text = target, ""
    # The slot's address is only a placeholder: parse_server checks the
    # name and the options as for any server line.
    written = shlex.join([f"{host}:{port_text or 1}"] + list(words[2:]))
    names = tuple(f"{prefix}{number}" for number in range(first, last + 1))
    sample, errors = parse_server(names[0], written, line, defaults)
    if sample is None:
        return None, [], errors
    if sample.address is not None:
        errors.append(
            f"{host!r} is an address; server-template takes a name to look up"
            " (write 'server NAME = ADDRESS:PORT' for a fixed server)"
        )
    dns = server_dns(sample.options)
    if dns.resolvers is None:
        errors.append(
            "server-template needs 'resolvers NAME' naming a [resolvers] section"
        )
    if not port_text and not host.startswith("_"):
        errors.append(
            f"{host!r} is not an SRV name (_service._proto.domain): write the"
            f" port after it, such as {host}:80"
        )
    if errors:
        return None, [], errors
    port = int(port_text) if port_text else 0
    fqdn = host.rstrip(".").lower()
    template = ServerTemplate(prefix, fqdn, port, names, line)
    servers = [
        attr.evolve(sample, name=name, host=fqdn, port=port, address=None)
        for name in names
    ]
    return template, servers, []
