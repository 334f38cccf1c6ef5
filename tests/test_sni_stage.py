"""
Routing by TLS server name: the name-to-backend rules (L{l4lb.sni.routes})
and the frontend stage (L{l4lb.sni.stage}) driving sessions in memory.
"""

from __future__ import annotations

from typing import Tuple

import attr
from zope.interface.verify import verifyObject

from l4lb.balancers import find_factory
from l4lb.config.model import Backend, ServerSpec, SniRoute, Timeouts
from l4lb.interfaces import IClientStage
from l4lb.pool import BackendState
from l4lb.sni.routes import SniRoutes
from l4lb.sni.stage import FALLBACK_REJECT, SniStage, build_sni_stage
from l4lb.tcp.stagelist import build_stages
from tests.hellokit import frame, handshake_of, python_hello
from tests.relaykit import Relay

HELLO = python_hello("db.example.com")


def test_exact_and_wildcard_names() -> None:
    """
    An exact name matches itself only; C{*.example.com} matches names under
    it at any depth but not C{example.com}; case is ignored.
    """
    routes = SniRoutes([("db", ["db.example.com", "*.db.internal"]), ("web", ["*.example.com"])])
    assert routes.lookup("db.example.com") == "db"
    assert routes.lookup("DB.Example.com") == "db"
    assert routes.lookup("a.db.internal") == "db"
    assert routes.lookup("a.b.db.internal") == "db"
    assert routes.lookup("db.internal") is None
    assert routes.lookup("www.example.com") == "web"
    assert routes.lookup("example.com") is None
    assert routes.lookup("other.org") is None


def test_first_rule_in_order_wins() -> None:
    """As HAProxy's C{use_backend} rules, the first matching rule wins."""
    routes = SniRoutes([("any", ["*.example.com"]), ("db", ["db.example.com"])])
    assert routes.lookup("db.example.com") == "any"
    routes = SniRoutes([("db", ["db.example.com"]), ("any", ["*.example.com"])])
    assert routes.lookup("db.example.com") == "db"
    routes = SniRoutes([("deep", ["*.a.example.com"]), ("shallow", ["*.example.com"])])
    assert routes.lookup("x.a.example.com") == "deep"
    routes = SniRoutes([("shallow", ["*.example.com"]), ("deep", ["*.a.example.com"])])
    assert routes.lookup("x.a.example.com") == "shallow"


def db_backend(retries: int = 0, connect: float = 2.0) -> BackendState:
    spec = Backend(
        name="db",
        servers=(ServerSpec(name="d1", host="127.0.11.1", port=5432, address="127.0.11.1"),),
        retries=retries,
        timeouts=Timeouts(connect=connect, server=50.0),
    )
    return BackendState(spec, find_factory("roundrobin"))


def sni_relay(fallback: str = "default", max_hello: int = 16384) -> Tuple[Relay, BackendState]:
    """A frontend whose C{db.example.com} connections go to backend db."""
    relay = Relay()
    db = db_backend()
    relay.frontend.spec = attr.evolve(
        relay.frontend.spec, sni_routes=(SniRoute("db", ("db.example.com",)),)
    )
    relay.frontend.stages = [
        SniStage(SniRoutes([(db, ["db.example.com"])]), fallback, max_hello)
    ]
    relay.frontend.inspect_delay = 5.0
    return relay, db


def test_stage_provides_the_interface() -> None:
    """The SNI stage implements IClientStage."""
    assert verifyObject(IClientStage, SniStage(SniRoutes([])))


def test_hello_in_pieces_routes_to_its_backend_and_is_replayed() -> None:
    """
    A hello arriving in pieces over several records picks backend db; the
    server receives every byte of it first, then the rest; the log line
    names the backend and ends with the name in braces.
    """
    relay, db = sni_relay()
    hello = frame(handshake_of(HELLO), [200])
    leg, _ = relay.accept()
    for i in range(0, len(hello), 37):
        assert relay.attempts() == []
        leg.dataReceived(hello[i : i + 37])
    assert relay.attempts() == [("127.0.11.1", 5432)]
    assert leg.session.sni == "db.example.com"
    assert db.current == 1 and db.total == 1
    assert relay.backend.current == 0 and relay.backend.total == 0
    server_leg, server = relay.complete()
    leg.dataReceived(b"finished")
    assert server.value() == hello + b"finished"
    assert server_leg is not None
    leg.connectionLost()
    server_leg.connectionLost()
    assert db.current == 0
    (line,) = relay.sink.lines
    assert " fe db/d1 " in line and line.endswith(" {db.example.com}")


def test_routed_session_uses_its_backends_timeouts_and_retries() -> None:
    """
    A session routed to backend db connects with db's C{timeout connect}
    and gives up after db's C{retries}, not those of the default backend.
    """
    relay, db = sni_relay()
    leg, client = relay.accept()
    leg.dataReceived(HELLO)
    assert relay.attempts() == [("127.0.11.1", 5432)]
    relay.reactor.advance(2.1)
    # db has retries 0: one timed-out attempt ends it (the default has 3).
    assert client.aborted
    assert len(relay.attempts()) == 1
    leg.connectionLost()
    assert " fe db/d1 " in relay.sink.lines[0] and " sC " in relay.sink.lines[0]


def test_unknown_name_and_no_name_go_to_the_default_backend() -> None:
    """A hello for another name, or without one, uses default_backend."""
    for hello, logged in ((python_hello("www.example.com"), "{www.example.com}"), (python_hello(None), "{}")):
        relay, db = sni_relay()
        leg, _ = relay.accept()
        leg.dataReceived(hello)
        assert relay.attempts()[0][0] in ("127.0.10.1", "127.0.10.2")
        assert db.total == 0
        server_leg, server = relay.complete()
        assert server.value() == hello
        leg.connectionLost()
        assert server_leg is not None
        server_leg.connectionLost()
        assert relay.sink.lines[0].endswith(" " + logged)


def test_plain_text_goes_to_the_default_backend_at_once() -> None:
    """
    With C{sni-fallback default}, a client speaking plain text goes to the
    default backend on its first byte, which the server receives.
    """
    relay, db = sni_relay()
    leg, _ = relay.accept()
    leg.dataReceived(b"G")
    assert relay.attempts() != []
    _, server = relay.complete()
    leg.dataReceived(b"ET /")
    assert server.value() == b"GET /"


def test_silent_client_goes_to_the_default_backend_after_inspect_delay() -> None:
    """
    A client that sends nothing (its server speaks first) waits for
    C{inspect-delay}, then goes to the default backend.
    """
    relay, db = sni_relay()
    leg, _ = relay.accept()
    relay.reactor.advance(4.9)
    assert relay.attempts() == []
    relay.reactor.advance(0.2)
    assert relay.attempts()[0][0] in ("127.0.10.1", "127.0.10.2")


def test_reject_closes_plain_text_malformed_and_slow_clients() -> None:
    """
    With C{sni-fallback reject}, a plain-text or malformed client, and an
    incomplete hello at C{inspect-delay}, are closed (PR, counted as
    denied, as HAProxy's C{tcp-request content reject}); none reaches a
    server.
    """
    relay, db = sni_relay(FALLBACK_REJECT)
    leg, client = relay.accept()
    leg.dataReceived(b"GET / HTTP/1.0\r\n")
    assert client.aborted
    leg.connectionLost()
    leg, client = relay.accept()
    leg.dataReceived(HELLO[:5] + b"\x02" + HELLO[6:])
    assert client.aborted
    leg.connectionLost()
    leg, client = relay.accept()
    leg.dataReceived(HELLO[:100])
    relay.reactor.advance(5.1)
    assert client.aborted
    leg.connectionLost()
    assert relay.attempts() == []
    assert relay.frontend.denied == 3
    terminations = [line.split()[6] for line in relay.sink.lines]
    assert terminations == ["PR", "PR", "PR"]
    assert all("<NOSRV>" in line and line.endswith(" {}") for line in relay.sink.lines)


def test_hello_over_the_cap() -> None:
    """A hello larger than C{sni-max-hello} is handled as malformed."""
    relay, db = sni_relay(FALLBACK_REJECT, max_hello=512)
    leg, client = relay.accept()
    leg.dataReceived(HELLO)
    assert len(HELLO) > 512 and client.aborted


def test_a_gone_client_leaves_nothing_behind() -> None:
    """The reader of a client that closes mid-hello is dropped with it."""
    import gc

    relay, db = sni_relay()
    stage = relay.frontend.stages[0]
    leg, _ = relay.accept()
    leg.dataReceived(HELLO[:50])
    assert len(stage._readers) == 1
    leg.connectionLost()
    del leg
    gc.collect()
    assert len(stage._readers) == 0


def test_stage_list_has_the_sni_stage_only_with_rules() -> None:
    """A frontend gets an SNI stage when it has C{use_backend} rules."""
    relay = Relay()
    db = db_backend()
    spec = relay.frontend.spec
    assert build_sni_stage(spec, {"db": db}) is None
    assert build_stages(spec, {"db": db}) == []
    spec = attr.evolve(spec, sni_routes=(SniRoute("db", ("*.db.internal",)),), sni_fallback="reject")
    (stage,) = build_stages(spec, {"db": db, "be": relay.backend})
    assert isinstance(stage, SniStage)
    assert stage.fallback == "reject" and stage.routes.lookup("x.db.internal") is db


def test_tcplog_prints_the_name_only_on_sni_frontends() -> None:
    """
    The tcplog line ends with the name in braces when the record has one,
    with C{{}} when it is empty, and is HAProxy's plain line otherwise.
    """
    from l4lb.logs import ConnectionRecord, format_tcplog

    record = ConnectionRecord(
        "192.0.2.7", 50711, 0.0, "tls", "db", "db1", 0.0, 0.001, 5.0, 4120, "--", 1, 1, 1, 1, 0
    )
    plain = format_tcplog(record)
    assert plain.endswith(" 0/0")
    assert format_tcplog(attr.evolve(record, sni="db.example.com")) == plain + " {db.example.com}"
    assert format_tcplog(attr.evolve(record, sni="")) == plain + " {}"


def test_frontend_stats_count_sessions_routed_elsewhere() -> None:
    """
    The frontend's stats row counts the bytes of its open sessions that
    SNI routing sent to another backend than its default one.
    """
    from l4lb.admin.stats import frontend_row

    relay, db = sni_relay()
    leg, _ = relay.accept()
    leg.dataReceived(HELLO)
    relay.complete()
    leg.dataReceived(b"12345")
    row = frontend_row(relay.frontend, 1, 1, {"be": relay.backend, "db": db})
    assert row["bin"] == str(len(HELLO) + 5)
