"""
Which names DNS discovery watches and when it resolves them
(L{l4lb.dns.watches}, L{l4lb.dns.discovery}): servers added at run time
with C{resolvers}, and C{hold valid} as HAProxy uses it (the early
resolution a failed health check asks for), on a Clock with a fake name
server.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from l4lb.admin.commands import AdminCommands
from l4lb.config import parse_config
from l4lb.dns import Record
from l4lb.health.status import CheckResult, L4TOUT, L7STS
from l4lb.reload import apply_config
from l4lb.service import BalancerService
from tests.healthkit import PASS, REFUSED, Checked, spec
from tests.test_dns import FakeNameServer, start
from tests.test_reload import Reactor
from tests.test_reload import start as start_service

APP = "app.example.test"

SERVICE = """\
[defaults]
timeout connect = 5s
timeout client = 5s
timeout server = 5s
[resolvers dns]
nameserver ns1 = 127.0.0.1:5353
timeout resolve = 2s
[backend be]
server s1 = 127.0.10.1:80
[backend dyn]
server d1 = 127.0.10.2:80
[frontend fe]
bind = 127.0.0.1:8001
default_backend = be
"""

HOLD = """\
[resolvers dns]
nameserver ns1 = 127.0.0.1:5353
timeout resolve = 60s
hold valid = 10s

[backend be]
timeout connect = 1s
timeout server = 5s
server web = web.example.test:8080 resolvers dns init-addr none
"""


# -- servers added at run time -------------------------------------------------


def running() -> Tuple[BalancerService, AdminCommands, Reactor, FakeNameServer]:
    """
    A started service whose DNS discovery asks a fake name server that
    knows L{APP}.
    """
    service, reactor = start_service(SERVICE)
    names = FakeNameServer()
    names.zone[APP] = [Record("127.0.0.7")]
    service.dns.querier = lambda spec, reactor: names  # type: ignore[assignment]
    return service, AdminCommands(service, reactor), reactor, names


def test_added_server_with_resolvers_follows_its_name() -> None:
    """A server added by 'add server' with a host name and 'resolvers' is
    resolved by DNS discovery every timeout resolve, as a file server is,
    and takes the answer's address at its port."""
    service, commands, reactor, names = running()
    commands.run(f"add server be/w1 {APP}:8080 resolvers dns init-addr none enabled")
    server = service.backends["be"].server("w1")
    assert server.address is None and server.admin == "maint"
    reactor.advance(0)
    assert names.asked == [APP]
    assert (server.address, server.port, server.admin) == ("127.0.0.7", 8080, "ready")
    names.zone[APP] = [Record("127.0.0.8")]
    reactor.advance(2)
    assert names.asked == [APP, APP] and server.address == "127.0.0.8"


def test_deleted_server_is_no_longer_resolved() -> None:
    """'del server' stops the resolutions of the server it removes."""
    service, commands, reactor, names = running()
    commands.run(f"add server be/w1 {APP}:8080 resolvers dns init-addr none")
    reactor.advance(0)
    assert len(service.dns.watches) == 1
    commands.run("del server be/w1")
    reactor.advance(10)
    assert names.asked == [APP] and service.dns.watches == {}


def test_reload_keeps_or_drops_the_added_servers_watch() -> None:
    """A reload that keeps an added server keeps its watch and the records
    it had; one that drops the server (its backend is gone) drops the
    watch."""
    service, commands, reactor, names = running()
    commands.run(f"add server dyn/w1 {APP}:8080 resolvers dns init-addr none enabled")
    reactor.advance(0)
    apply_config(service, parse_config(SERVICE, "lb.ini"))
    server = service.backends["dyn"].server("w1")
    assert (server.address, server.admin) == ("127.0.0.7", "ready")
    assert [w.names for w in service.dns.watches.values()] == [("w1",)]
    without = SERVICE.replace("[backend dyn]\nserver d1 = 127.0.10.2:80\n", "")
    apply_config(service, parse_config(without, "lb.ini"))
    asked = len(names.asked)
    reactor.advance(10)
    assert service.dns.watches == {} and len(names.asked) == asked


def test_added_server_is_not_resolved_by_the_system() -> None:
    """The system's resolver leaves an added server with resolvers to DNS
    discovery (its init-addr decides where it starts)."""
    service, commands, reactor, names = running()
    commands.run(f"add server be/w1 {APP}:8080 resolvers dns init-addr none")
    assert service.dns.claims("be", "w1")
    assert not service.dns.claims("be", "s1")


# -- hold valid ----------------------------------------------------------------


def test_failed_check_resolves_early_once_hold_valid_has_passed() -> None:
    """A health check that cannot connect asks for a resolution at once
    rather than at the next timeout resolve, unless the last valid answer
    is younger than hold valid."""
    discovery, runtime, names, clock = start(HOLD)
    names.zone["web.example.test"] = [Record("127.0.0.1")]
    discovery.startService()
    clock.advance(0)
    assert names.asked == ["web.example.test"]
    backend = runtime.backends["be"]
    server = backend.server("web")
    clock.advance(5)
    discovery.check_failed(backend, server)
    clock.advance(0)
    assert len(names.asked) == 1
    clock.advance(15)
    discovery.check_failed(backend, server)
    clock.advance(0)
    assert len(names.asked) == 2
    # The resolution runs every timeout resolve from the early one.
    clock.advance(59)
    assert len(names.asked) == 2
    clock.advance(1)
    assert len(names.asked) == 3
    discovery.stopService()


def test_failed_check_after_a_failed_resolution_resolves_at_once() -> None:
    """After a failed resolution no answer is trusted: a check that cannot
    connect asks again at once."""
    discovery, runtime, names, clock = start(HOLD)
    names.zone["web.example.test"] = "timeout"
    discovery.startService()
    clock.advance(0)
    backend = runtime.backends["be"]
    discovery.check_failed(backend, backend.server("web"))
    clock.advance(0)
    assert len(names.asked) == 2
    discovery.stopService()


def test_timeout_resolve_paces_valid_answers_whatever_hold_valid() -> None:
    """hold valid does not stretch the interval: after valid answers the
    name is resolved again every timeout resolve (HAProxy since 2019)."""
    text = HOLD.replace("timeout resolve = 60s", "timeout resolve = 1s").replace(
        "hold valid = 10s", "hold valid = 30s"
    )
    discovery, runtime, names, clock = start(text)
    names.zone["web.example.test"] = [Record("127.0.0.1")]
    discovery.startService()
    clock.advance(0)
    for _ in range(3):
        clock.advance(1)
    assert len(names.asked) == 4
    discovery.stopService()


def test_checks_that_cannot_connect_are_reported() -> None:
    """The health monitor tells its connect_failures listeners of a check
    that could not connect (L4CON, L4TOUT), not of one that passed or got a
    wrong answer."""
    lab = Checked([spec("s1", 1)])
    told: List[Any] = []
    lab.monitor.connect_failures.append(lambda backend, server: told.append(server.name))
    health = lab.monitor.find("be", "s1")
    for result in (REFUSED, CheckResult(L4TOUT, "", 1.0), PASS, CheckResult(L7STS, "", 0.0)):
        health.apply_check(result)
    assert told == ["s1", "s1"]


def test_discovery_listens_to_the_monitor_while_it_runs() -> None:
    """A running service's DNS discovery is a connect_failures listener
    of its health monitor, and stops being one when it stops."""
    service, reactor = start_service(SERVICE)
    assert service.dns.check_failed in service.monitor.connect_failures
    service.dns.stopService()
    assert service.dns.check_failed not in service.monitor.connect_failures
