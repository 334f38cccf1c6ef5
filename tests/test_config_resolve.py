"""
Tests for L{l4lb.config.resolve}: host names are resolved through an
L{IHostnameResolver}, never by a blocking call, and failures name the line.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Type

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IResolutionReceiver,
)
from zope.interface import implementer

from l4lb.config import Config, ConfigError, parse_config, resolve_config, resolve_host

TEXT = """\
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s
[frontend fe]
bind = :80
default_backend = be
[backend be]
server a = app.example:8080
server b = 10.0.0.2:80
server c = v6only.example:8080
server d = app.example:9090
"""


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        """Never called."""


@implementer(IHostnameResolver)
class FakeResolver:
    """
    Answers from a table, synchronously or when C{release} is called.
    """

    def __init__(self, table: Dict[str, List[IAddress]], delayed: bool = False) -> None:
        self.table = table
        self.delayed = delayed
        self.asked: List[str] = []
        self.pending: List[IResolutionReceiver] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Optional[Sequence[Type[IAddress]]] = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        self.asked.append(hostName)
        assert addressTypes is not None and set(addressTypes) == {IPv4Address, IPv6Address}
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        for address in self.table.get(hostName, []):
            resolutionReceiver.addressResolved(address)
        if self.delayed:
            self.pending.append(resolutionReceiver)
        else:
            resolutionReceiver.resolutionComplete()
        return resolution

    def release(self) -> None:
        for receiver in self.pending:
            receiver.resolutionComplete()


def result_of(d: "Deferred[Config]") -> Config:
    """
    The result of a Deferred that has fired successfully.
    """
    results: List[object] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    result = results[0]
    if not isinstance(result, Config):
        raise AssertionError(f"failed: {result}")
    return result


def test_names_are_resolved_ipv4_first() -> None:
    """Each name is asked once; IPv4 is preferred, IPv6 used when alone."""
    resolver = FakeResolver(
        {
            "app.example": [
                IPv6Address("TCP", "2001:db8::7", 8080),
                IPv4Address("TCP", "192.0.2.7", 8080),
            ],
            "v6only.example": [IPv6Address("TCP", "2001:db8::8", 8080)],
        }
    )
    config = result_of(resolve_config(parse_config(TEXT), resolver))
    addresses = [s.address for s in config.backends[0].servers]
    assert addresses == ["192.0.2.7", "10.0.0.2", "2001:db8::8", "192.0.2.7"]
    assert sorted(resolver.asked) == ["app.example", "v6only.example"]


def test_resolution_waits_for_the_resolver() -> None:
    """The result comes only when the resolver completes: nothing blocks."""
    resolver = FakeResolver(
        {"app.example": [IPv4Address("TCP", "192.0.2.7", 0)],
         "v6only.example": [IPv6Address("TCP", "2001:db8::8", 0)]},
        delayed=True,
    )
    d = resolve_config(parse_config(TEXT), resolver)
    assert not d.called
    resolver.release()
    assert result_of(d).backends[0].servers[0].address == "192.0.2.7"


def test_unresolvable_name_is_a_config_error_at_its_line() -> None:
    """A name without address fails with the file, line, server and host."""
    resolver = FakeResolver({"v6only.example": [IPv6Address("TCP", "2001:db8::8", 0)]})
    caught: List[ConfigError] = []
    d = resolve_config(parse_config(TEXT, "lb.ini"), resolver)
    d.addErrback(lambda f: caught.append(f.trap(ConfigError) and f.value))
    (error,) = caught
    assert [(p.line, p.key, p.section) for p in error.problems] == [
        (9, "server a", "backend be"),
        (12, "server d", "backend be"),
    ]
    assert str(error.problems[0]) == (
        "lb.ini:9: [backend be] key 'server a': cannot resolve host 'app.example':"
        " no IPv4 or IPv6 address; use a host name that resolves or an IP address"
    )


def test_resolver_exception_is_reported() -> None:
    """A resolver that raises gives a problem with its reason."""

    @implementer(IHostnameResolver)
    class Broken:
        def resolveHostName(self, *args: object, **kwargs: object) -> IHostResolution:
            raise OSError("resolver down")

    caught: List[ConfigError] = []
    d = resolve_config(parse_config(TEXT), Broken())
    d.addErrback(lambda f: caught.append(f.value))
    assert "cannot resolve host 'app.example': resolver down" in caught[0].problems[0].message


def test_literals_need_no_resolver() -> None:
    """A config of IP literals comes back unchanged without asking anything."""
    config = parse_config(TEXT.replace("app.example", "10.0.0.1").replace("v6only.example", "[::1]"))
    resolver = FakeResolver({})
    assert result_of(resolve_config(config, resolver)) is config
    assert resolver.asked == []


def test_resolve_host() -> None:
    """resolve_host gives the chosen address, or None when there is none."""
    resolver = FakeResolver({"h": [IPv4Address("TCP", "192.0.2.1", 0)]})
    found: List[Optional[str]] = []
    resolve_host(resolver, "h", 80).addCallback(found.append)
    resolve_host(resolver, "nothing", 80).addCallback(found.append)
    resolve_host(resolver, "::1", 80).addCallback(found.append)
    assert found == ["192.0.2.1", None, "::1"]
