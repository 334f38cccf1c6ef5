"""
DNS service discovery: the C{[resolvers]} section, the server options and
C{server-template} (L{l4lb.config.dns}), what answers mean
(L{l4lb.dns.records}) and how they reach the servers
(L{l4lb.dns.discovery}), with a Clock and a fake name server.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher, formatEvent
from zope.interface import implementer

from l4lb.balancers import find_factory
from l4lb.config import parse_config
from l4lb.config.dns import ResolversSpec, read_resolv_conf
from l4lb.config.errors import ConfigError
from l4lb.dns import DnsDiscovery, IDnsQuerier, Record, Resolution, ResolutionFailed
from l4lb.dns.records import assign, follow, order_addresses, server_weight
from l4lb.pool import BackendState

CONFIG = """\
[resolvers dns]
nameserver ns1 = 127.0.0.1:5353
nameserver ns2 = tcp@127.0.0.1:5354
timeout resolve = 2s
hold obsolete = 5s
hold timeout = 30s

[backend be]
timeout connect = 1s
timeout server = 5s
server-template sv = 3 _app._tcp.example.test resolvers dns check
server web = web.example.test:8080 resolvers dns init-addr none
"""


# -- configuration -----------------------------------------------------------


def test_resolvers_section_and_template_slots() -> None:
    """A [resolvers] section keeps HAProxy's defaults for what it does not
    set, and a template makes numbered slots without an address."""
    config = parse_config(CONFIG)
    (spec,) = config.resolvers
    assert [(n.name, n.port, n.tcp) for n in spec.nameservers] == [
        ("ns1", 5353, False),
        ("ns2", 5354, True),
    ]
    assert (spec.resolve_retries, spec.timeout_retry, spec.accepted_payload_size) == (3, 1.0, 512)
    assert (spec.hold_for("obsolete"), spec.hold_for("valid"), spec.hold_for("nx")) == (5.0, 10.0, 30.0)
    backend = config.backends[0]
    (template,) = backend.templates
    assert template.names == ("sv1", "sv2", "sv3") and template.srv
    slots = [s for s in backend.servers if s.name.startswith("sv")]
    assert [(s.address, s.port, s.check) for s in slots] == [(None, 0, True)] * 3


@pytest.mark.parametrize(
    "line, message",
    [
        ("server-template sv = 3 _a._tcp.example.test", "needs 'resolvers NAME'"),
        ("server-template sv = 0 _a._tcp.example.test resolvers dns", "not a slot range"),
        ("server-template sv = 3 app.example.test resolvers dns", "write the port"),
        ("server-template sv = 3 _a._tcp.example.test resolvers other", "no [resolvers other]"),
        ("server s = a.example.test:80 resolvers dns init-addr bogus", "not an init-addr method"),
        ("server s = a.example.test:80 resolvers dns resolve-opts dup", "not a resolve-opts word"),
        ("server-template s = 2-3 _a._tcp.example.test resolvers dns\nserver s2 = 127.0.0.1:1",
         "duplicate server name 's2'"),
    ],
)
def test_bad_dns_lines(line: str, message: str) -> None:
    """A bad template or DNS option is an error at its line saying what is
    allowed."""
    text = (
        "[resolvers dns]\nnameserver ns1 = 127.0.0.1:53\n"
        "[backend be]\ntimeout connect = 1s\ntimeout server = 1s\n" + line + "\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert message in str(caught.value)


def test_resolvers_needs_a_name_server() -> None:
    """A [resolvers] section without a name server is an error."""
    with pytest.raises(ConfigError) as caught:
        parse_config("[resolvers dns]\ntimeout resolve = 1s\n")
    assert "no name server" in str(caught.value)


def test_resolv_conf_lines() -> None:
    """parse-resolv-conf takes the nameserver lines that are IP addresses."""
    found = read_resolv_conf("# x\nnameserver 127.0.0.53\nnameserver bad\nsearch example\n")
    assert [(n.host, n.port) for n in found] == [("127.0.0.53", 53)]


# -- records -----------------------------------------------------------------


def test_srv_weight_mapping() -> None:
    """SRV weights 0-65535 map to server weights 1-256 as HAProxy maps them."""
    assert [server_weight(w) for w in (0, 255, 256, 1000, 65535)] == [1, 1, 2, 4, 256]


def test_obsolete_records_are_held() -> None:
    """A record missing from valid answers stays for hold obsolete, then goes."""
    resolution = Resolution(ResolversSpec("dns", hold=(("obsolete", 5.0),)))
    a, b = Record("127.0.0.1", 80, 1, "a"), Record("127.0.0.2", 80, 1, "b")
    assert resolution.answered([a, b], 0.0) == [a, b]
    assert resolution.answered([a], 4.0) == [a, b]
    assert resolution.answered([a], 6.0) == [a]


def test_failures_keep_the_last_valid_answer_for_their_hold() -> None:
    """After a failed resolution the last valid records stay for the hold of
    that failure, then none stay."""
    resolution = Resolution(ResolversSpec("dns", hold=(("timeout", 30.0), ("nx", 3.0))))
    a = Record("127.0.0.1")
    resolution.answered([a], 0.0)
    assert resolution.failed("timeout", 29.0) == [a]
    assert resolution.failed("nx", 2.0) == [a]
    assert resolution.failed("nx", 4.0) == []
    assert resolution.reason == "DNS NX status"


def test_slots_keep_their_records() -> None:
    """A record keeps its slot; a gone record empties its slot; new records
    fill empty slots in order."""
    a, b, c = (Record(f"127.0.0.{i}", 80, 1, t) for i, t in ((1, "a"), (2, "b"), (3, "c")))
    moved_b = Record("127.0.0.9", 80, 10, "b")
    assert assign([None, None, None], [a, b]) == [a, b, None]
    assert assign([a, b, None], [moved_b, c]) == [c, moved_b, None]


def test_address_choice() -> None:
    """resolve-net networks come first, then the preferred family; a server
    keeps its address while the answer holds it and avoids taken ones."""
    assert order_addresses(["127.0.0.1", "::1", "127.0.0.2"], "ipv6") == ["::1", "127.0.0.1", "127.0.0.2"]
    assert order_addresses(["127.0.0.1", "127.0.0.2"], "ipv4", ["127.0.0.2/32"]) == ["127.0.0.2", "127.0.0.1"]
    assert follow("127.0.0.2", ["127.0.0.1", "127.0.0.2"]) == "127.0.0.2"
    assert follow(None, ["127.0.0.1", "127.0.0.2"], ["127.0.0.1"]) == "127.0.0.2"


# -- discovery -----------------------------------------------------------------


@implementer(IDnsQuerier)
class FakeNameServer:
    """
    Answers from a dictionary; a name mapped to a kind string fails so.
    """

    def __init__(self) -> None:
        self.zone: Dict[str, Any] = {}
        self.asked: List[str] = []

    def records(self, name: str, srv: bool, prefer: str = "ipv6", nets: Any = ()) -> "Deferred[List[Record]]":
        """
        Answer from the zone.
        """
        self.asked.append(name)
        value = self.zone.get(name, "nx")
        if isinstance(value, str):
            return fail(ResolutionFailed(value))
        return succeed(list(value))


class FakeRuntime:
    """
    The runtime API methods discovery uses, over real backends.
    """

    def __init__(self, text: str, reactor: Clock) -> None:
        self.config = parse_config(text)
        self.reactor = reactor
        self.backends = {
            spec.name: BackendState(spec, find_factory(spec.balance)) for spec in self.config.backends
        }
        self.moves: List[Tuple[str, str, int, str]] = []
        self.added_servers: Dict[Tuple[str, str], Any] = {}
        self.monitor: Any = None

    def find_server(self, backend: str, name: str) -> Any:
        """
        The server C{backend/name}.
        """
        return self.backends[backend].server(name)

    def set_server_admin(self, server: Any, admin: str, cause: str = "runtime") -> None:
        """
        Set the administrative state.
        """
        server.set_admin(admin, cause)

    def set_server_address(self, server: Any, host: str, port: Optional[int] = None, cause: str = "runtime") -> str:
        """
        Move the server.
        """
        self.moves.append((server.name, host, port or server.port, cause))
        balancer = server.backend.balancer
        if server.eligible:
            balancer.server_down(server)
        server.address, server.port = host, port or server.port
        if server.eligible:
            balancer.server_up(server)
        return ""


@pytest.fixture
def logged() -> Any:
    """
    The messages logged during the test.
    """
    lines: List[str] = []

    def observe(event: Any) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def start(text: str = CONFIG) -> Tuple[DnsDiscovery, FakeRuntime, FakeNameServer, Clock]:
    """
    A running discovery over a fake runtime and name server.
    """
    clock = Clock()
    runtime = FakeRuntime(text, clock)
    names = FakeNameServer()
    discovery = DnsDiscovery(runtime, clock, lambda spec, reactor: names)  # type: ignore[arg-type]
    return discovery, runtime, names, clock


def slots(runtime: FakeRuntime) -> List[Tuple[str, Optional[str], int, int, str]]:
    """
    Each slot's address, port, weight and administrative state.
    """
    return [
        (s.name, s.address, s.port, s.user_weight, s.admin)
        for s in runtime.backends["be"].servers
        if s.name.startswith("sv")
    ]


SRV = "_app._tcp.example.test"


def test_srv_records_fill_slots_with_ports_and_weights(logged: List[str]) -> None:
    """SRV records fill the slots with their targets' addresses, ports and
    mapped weights; the other slots stay in maintenance."""
    discovery, runtime, names, clock = start()
    names.zone[SRV] = [Record("127.0.0.1", 8001, 0, "a"), Record("127.0.0.2", 8002, 2560, "b")]
    discovery.startService()
    clock.advance(0)
    assert slots(runtime) == [
        ("sv1", "127.0.0.1", 8001, 1, "ready"),
        ("sv2", "127.0.0.2", 8002, 11, "ready"),
        ("sv3", None, 0, 1, "maint"),
    ]
    assert ("sv1", "127.0.0.1", 8001, "DNS cache") in runtime.moves
    assert runtime.find_server("be", "web").admin == "maint"
    assert discovery.claims("be", "sv3") and not discovery.claims("be", "other")
    discovery.stopService()


def test_removed_record_empties_its_slot_after_hold_obsolete(logged: List[str]) -> None:
    """A record that disappears keeps its slot for hold obsolete, then the
    slot goes into maintenance without an address, logged in HAProxy's
    words."""
    discovery, runtime, names, clock = start()
    names.zone[SRV] = [Record("127.0.0.1", 8001, 0, "a"), Record("127.0.0.2", 8002, 0, "b")]
    discovery.startService()
    clock.advance(0)
    names.zone[SRV] = [Record("127.0.0.1", 8001, 0, "a")]
    clock.advance(2)
    assert slots(runtime)[1][4] == "ready"
    clock.advance(2)
    clock.advance(2)
    # The emptied slot forgets the address, as HAProxy's does: a restart
    # from the state file or an operator's 'ready' cannot send to it.
    assert slots(runtime)[1] == ("sv2", None, 0, 1, "maint")
    assert slots(runtime)[0][4] == "ready"
    assert "Server be/sv2 is going DOWN for maintenance (No IP for server )." in logged
    discovery.stopService()


def test_changed_address_moves_a_server(logged: List[str]) -> None:
    """A server following its name moves when the A record changes, and a
    slot refilled leaves maintenance."""
    discovery, runtime, names, clock = start()
    names.zone["web.example.test"] = [Record("127.0.0.5")]
    discovery.startService()
    clock.advance(0)
    web = runtime.find_server("be", "web")
    assert (web.address, web.admin) == ("127.0.0.5", "ready")
    names.zone["web.example.test"] = [Record("127.0.0.6")]
    clock.advance(2)
    # The old address is still held (hold obsolete = 5s), and kept.
    assert web.address == "127.0.0.5"
    clock.advance(2)
    clock.advance(2)
    assert web.address == "127.0.0.6"
    assert ("web", "127.0.0.6", 8080, "DNS cache") in runtime.moves
    discovery.stopService()


def test_name_server_down_keeps_servers_for_hold_timeout() -> None:
    """While the name servers do not answer, the servers stay as last known
    for hold timeout; after it they go into maintenance."""
    discovery, runtime, names, clock = start()
    names.zone[SRV] = [Record("127.0.0.1", 8001, 0, "a")]
    discovery.startService()
    clock.advance(0)
    names.zone[SRV] = "timeout"
    for _ in range(14):
        clock.advance(2)
    assert slots(runtime)[0] == ("sv1", "127.0.0.1", 8001, 1, "ready")
    for _ in range(2):
        clock.advance(2)
    assert slots(runtime)[0][4] == "maint"
    discovery.stopService()


def test_operator_maintenance_is_left_alone() -> None:
    """A slot an operator put in maintenance stays there when DNS fills it."""
    discovery, runtime, names, clock = start()
    names.zone[SRV] = [Record("127.0.0.1", 8001, 0, "a")]
    discovery.startService()
    clock.advance(0)
    runtime.set_server_admin(runtime.find_server("be", "sv1"), "maint", "runtime")
    clock.advance(2)
    assert slots(runtime)[0][4] == "maint"
    discovery.stopService()


def test_reload_gives_fresh_servers_their_records() -> None:
    """After a reload builds the servers afresh, the watch of the same name
    gives them the records it had at once, before any new answer."""
    discovery, runtime, names, clock = start()
    names.zone[SRV] = [Record("127.0.0.1", 8001, 0, "a")]
    discovery.startService()
    clock.advance(0)
    names.zone[SRV] = "timeout"
    fresh = FakeRuntime(CONFIG, clock)
    runtime.backends = fresh.backends
    runtime.config = fresh.config
    discovery.apply(runtime.config)
    assert slots(runtime)[0] == ("sv1", "127.0.0.1", 8001, 1, "ready")
    assert slots(runtime)[1][4] == "maint"
    discovery.stopService()


def test_resolutions_run_every_timeout_resolve_and_stop() -> None:
    """Each name is resolved every timeout resolve, and no more once the
    service stops."""
    discovery, runtime, names, clock = start()
    discovery.startService()
    clock.advance(0)
    clock.advance(0)
    assert sorted(names.asked) == sorted([SRV, "web.example.test"])
    clock.advance(2)
    assert len(names.asked) == 4
    discovery.stopService()
    clock.advance(10)
    assert len(names.asked) == 4 and not clock.getDelayedCalls()


# -- the querier on twisted.names' messages ------------------------------------


def reply_to(port: Any, answers: List[Any] = (), additional: List[Any] = (), rcode: int = 0) -> None:
    """
    Answer the question written on C{port} with these sections.
    """
    from twisted.names import dns

    question = dns.Message()
    question.fromStr(port.written[-1][0])
    message = dns.Message(id=question.id, answer=1, rCode=rcode)
    message.queries = question.queries
    message.answers = list(answers)
    message.additional = list(additional)
    port.reply(message.toStr())


def querier(*nameservers: Tuple[str, int]) -> Tuple[Any, Any]:
    """
    A L{NamesQuerier} on a fake UDP reactor, with 2 attempts of 1 second.
    """
    from l4lb.config.dns import Nameserver
    from l4lb.dns import NamesQuerier
    from tests.udpkit import FakeUdpReactor

    reactor = FakeUdpReactor()
    spec = ResolversSpec(
        "dns",
        tuple(Nameserver(f"ns{i}", host, port) for i, (host, port) in enumerate(nameservers)),
        resolve_retries=2,
        timeout_retry=1.0,
    )
    return NamesQuerier(spec, reactor), reactor


def test_srv_answer_becomes_records() -> None:
    """An SRV answer's targets, ports and weights, with the targets'
    addresses from the additional section, become records."""
    from twisted.names import dns

    names, reactor = querier(("127.0.0.1", 5353))
    results: List[Any] = []
    names.records(SRV, True, "ipv4").addBoth(results.append)
    reply_to(
        reactor.port_to("127.0.0.1", 5353),
        [
            dns.RRHeader(SRV, dns.SRV, payload=dns.Record_SRV(0, 2560, 8001, "T1.example.test")),
            dns.RRHeader(SRV, dns.SRV, payload=dns.Record_SRV(0, 0, 8002, "t2.example.test")),
        ],
        [
            dns.RRHeader("t1.example.test", dns.A, payload=dns.Record_A("127.0.0.1")),
            dns.RRHeader("t2.example.test", dns.A, payload=dns.Record_A("127.0.0.2")),
        ],
    )
    assert results == [[
        Record("127.0.0.1", 8001, 2560, "t1.example.test"),
        Record("127.0.0.2", 8002, 0, "t2.example.test"),
    ]]
    assert reactor.open_ports() == []


def test_unanswered_queries_are_retried_then_time_out() -> None:
    """Every attempt asks every UDP name server; after resolve_retries
    attempts of timeout retry the resolution fails as a timeout, and no
    socket stays open."""
    names, reactor = querier(("127.0.0.1", 5353), ("127.0.0.2", 5353))
    results: List[Any] = []
    names.records("web.example.test", False, "ipv4").addBoth(results.append)
    assert len(reactor.open_ports()) == 2
    reactor.advance(1.0)
    assert len(reactor.ports) == 4 and results == []
    reactor.advance(1.0)
    assert isinstance(results[0].value, ResolutionFailed) and results[0].value.kind == "timeout"
    assert reactor.open_ports() == []


def test_nxdomain_and_family_fallback() -> None:
    """NXDOMAIN fails as nx; a name without an address of the preferred
    family is asked again for the other."""
    from twisted.names import dns

    names, reactor = querier(("127.0.0.1", 5353))
    results: List[Any] = []
    names.records("gone.example.test", False, "ipv4").addBoth(results.append)
    reply_to(reactor.port_to("127.0.0.1", 5353), rcode=dns.ENAME)
    assert results[0].value.kind == "nx"
    names.records("six.example.test", False, "ipv4").addBoth(results.append)
    reply_to(reactor.port_to("127.0.0.1", 5353))
    reply_to(
        reactor.port_to("127.0.0.1", 5353),
        [dns.RRHeader("six.example.test", dns.AAAA, payload=dns.Record_AAAA("::1"))],
    )
    assert results[1] == [Record("::1")]


def test_check_resolves_only_what_the_system_must() -> None:
    """At start (and in l4lb check) template slots and servers whose
    init-addr falls back to none are not looked up by the system's
    resolver; a server with resolvers and the default init-addr is, and
    fails the check when its name does not resolve."""
    from l4lb.config import resolve_config
    from tests.test_config_resolve import FakeResolver

    system = FakeResolver({})
    config = parse_config(CONFIG)
    resolved: List[Any] = []
    resolve_config(config, system).addBoth(resolved.append)
    assert system.asked == [] and resolved == [config]
    strict = parse_config(CONFIG.replace(" init-addr none", ""))
    resolve_config(strict, system).addBoth(resolved.append)
    assert system.asked == ["web.example.test"]
    assert isinstance(resolved[1].value, ConfigError)
    assert "add 'init-addr last,libc,none'" in str(resolved[1].value)


def test_state_file_leaves_empty_slots_to_the_resolvers(tmp_path: Any) -> None:
    """An empty slot is written to the server-state file with HAProxy's
    resolution maintenance (0x20), not a forced one, so that after a
    restart from the file the first answer takes it out of maintenance."""
    from tests.test_statefile import config_text, rows, started

    state = tmp_path / "servers.state"
    text = config_text(
        state,
        f"server-template sv = 2 {SRV} resolvers dns\n[resolvers dns]\nnameserver ns1 = 127.0.10.30:53\n",
    )
    first, commands = started(text, str(tmp_path / "lb.ini"))
    written = commands.run("show servers state")
    assert rows(written)["sv1"][6] == "32"
    state.write_text(written)
    second, _ = started(text, str(tmp_path / "lb.ini"))
    slot = second.find_server("be", "sv1")
    assert (slot.admin, slot.admin_cause) == ("maint", "resolvers")
    (watch,) = second.dns.watches.values()
    second.dns.update(watch, [Record("127.0.10.7", 8001, 0, "t1.example.test")])
    assert (slot.admin, slot.address, slot.port) == ("ready", "127.0.10.7", 8001)
