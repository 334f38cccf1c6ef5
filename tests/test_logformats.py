"""
C{log-format json}: the tcplog fields as one JSON object per line, for TCP
connections and UDP sessions, written once when the session ends.
"""

from __future__ import annotations

import json

import attr
from hypothesis import given, strategies as st
from twisted.internet.error import ConnectionDone

from l4lb.logformats import format_connection, format_udp_session, json_tcplog, json_udplog
from l4lb.logs import ConnectionRecord, format_date, format_tcplog
from l4lb.udp.log import UdpRecord, format_udplog
from tests.relaykit import Relay
from tests.udpkit import UdpRig

DONE = ConnectionDone()


def tcp_record(**changes: object) -> ConnectionRecord:
    """The reference tcplog example as a record, with changes."""
    values: dict = dict(
        client_host="127.0.1.2",
        client_port=33313,
        accepted=1233922371.443,
        frontend="fnt",
        backend="bck",
        server="srv1",
        queue_time=0.0,
        connect_time=0.002,
        total_time=5.007,
        bytes_out=212,
        termination="--",
        actconn=4,
        feconn=3,
        beconn=2,
        srvconn=1,
        retries=3,
        srv_queue=0,
        backend_queue=5,
    )
    values.update(changes)
    return ConnectionRecord(**values)


def udp_record() -> UdpRecord:
    """A finished UDP session."""
    return UdpRecord(
        client_host="192.0.2.1",
        client_port=5000,
        started=1233922371.443,
        frontend="dns",
        backend="dns",
        server="ns1",
        duration=0.002,
        datagrams_in=1,
        bytes_in=29,
        datagrams_out=1,
        bytes_out=45,
        dropped=0,
        termination="--",
        reason="responses",
        fe_sessions=3,
        be_sessions=3,
        srv_sessions=2,
    )


def test_tcp_json_has_the_tcplog_fields_named() -> None:
    """Every field of the tcplog line appears under HAProxy's name, with the same value."""
    r = tcp_record()
    line = format_tcplog(r)
    data = json.loads(json_tcplog(r))
    assert list(data) == [
        "mode", "client_ip", "client_port", "accept_date", "accept_ts",
        "frontend_name", "backend_name", "server_name", "Tw", "Tc", "Tt",
        "bytes_read", "termination_state", "actconn", "feconn", "beconn",
        "srv_conn", "retries", "redispatched", "srv_queue", "backend_queue",
    ]
    assert data["mode"] == "tcp"
    assert f"{data['client_ip']}:{data['client_port']} [{data['accept_date']}]" in line
    assert data["accept_ts"] == 1233922371.443
    assert (data["frontend_name"], data["backend_name"], data["server_name"]) == ("fnt", "bck", "srv1")
    assert (data["Tw"], data["Tc"], data["Tt"]) == (0, 2, 5007)
    assert data["bytes_read"] == 212 and data["termination_state"] == "--"
    assert [data[k] for k in ("actconn", "feconn", "beconn", "srv_conn", "retries")] == [4, 3, 2, 1, 3]
    assert (data["srv_queue"], data["backend_queue"]) == (0, 5)
    assert data["redispatched"] is False


def test_tcp_json_unreached_phases() -> None:
    """A connection that reached no server has <NOSRV> and -1 timers, as in tcplog."""
    data = json.loads(json_tcplog(tcp_record(server=None, queue_time=None, connect_time=None)))
    assert data["server_name"] == "<NOSRV>" and (data["Tw"], data["Tc"]) == (-1, -1)


def test_tcp_json_names_the_routed_server_name() -> None:
    """On an SNI-routing frontend the name the client asked for is the last key, as it ends the tcplog line."""
    r = tcp_record(sni="db.example.com")
    data = json.loads(json_tcplog(r))
    assert list(data)[-1] == "sni" and data["sni"] == "db.example.com"
    assert format_tcplog(r).endswith(" {db.example.com}")
    assert "sni" not in json.loads(json_tcplog(tcp_record()))


_names = st.text(max_size=12)


@given(
    host=_names,
    names=st.tuples(_names, _names, st.none() | _names, _names),
    sni=st.none() | _names,
    numbers=st.lists(st.integers(min_value=0, max_value=2**40), min_size=9, max_size=9),
    times=st.tuples(
        st.floats(min_value=0, max_value=4e9),
        st.none() | st.floats(min_value=0, max_value=1e5),
        st.none() | st.floats(min_value=0, max_value=1e5),
        st.floats(min_value=0, max_value=1e5),
    ),
    redispatched=st.booleans(),
)
def test_tcp_json_is_what_the_encoder_writes(
    host: str, names: tuple, sni: object, numbers: list, times: tuple, redispatched: bool
) -> None:
    """
    The hand-written line is, character for character, what C{json}'s
    compact encoder writes for the same fields in the same order, whatever
    the strings contain (quotes, control characters, non-ASCII).
    """
    frontend, backend, server, termination = names
    accepted, queue_time, connect_time, total_time = times
    port, out, act, fe, be, srv, retries, sq, bq = numbers
    r = tcp_record(
        client_host=host, client_port=port, accepted=accepted, frontend=frontend, backend=backend,
        server=server, queue_time=queue_time, connect_time=connect_time, total_time=total_time,
        bytes_out=out, termination=termination, actconn=act, feconn=fe, beconn=be, srvconn=srv,
        retries=retries, redispatched=redispatched, srv_queue=sq, backend_queue=bq, sni=sni,
    )

    def millis(seconds: object) -> int:
        return -1 if seconds is None else round(seconds * 1000)  # type: ignore[operator]

    fields: dict = {
        "mode": "tcp", "client_ip": host, "client_port": port,
        "accept_date": format_date(accepted), "accept_ts": round(accepted, 3),
        "frontend_name": frontend, "backend_name": backend, "server_name": server or "<NOSRV>",
        "Tw": millis(queue_time), "Tc": millis(connect_time), "Tt": millis(total_time),
        "bytes_read": out, "termination_state": termination, "actconn": act, "feconn": fe,
        "beconn": be, "srv_conn": srv, "retries": retries, "redispatched": redispatched,
        "srv_queue": sq, "backend_queue": bq,
    }
    if sni is not None:
        fields["sni"] = sni
    assert json_tcplog(r) == json.dumps(fields, separators=(",", ":"))


def test_json_is_one_line() -> None:
    """A JSON log is a single line, whatever the names contain."""
    line = json_tcplog(tcp_record(frontend='a"b\nc'))
    assert "\n" not in line and json.loads(line)["frontend_name"] == 'a"b\nc'


def test_udp_json_has_the_session_fields_named() -> None:
    """A UDP session's JSON carries the fields of its line under the same names as TCP where they mean the same."""
    data = json.loads(json_udplog(udp_record()))
    assert data == {
        "mode": "udp",
        "client_ip": "192.0.2.1",
        "client_port": 5000,
        "accept_date": json.loads(json_tcplog(tcp_record()))["accept_date"],
        "accept_ts": 1233922371.443,
        "frontend_name": "dns",
        "backend_name": "dns",
        "server_name": "ns1",
        "Tt": 2,
        "datagrams_in": 1,
        "bytes_uploaded": 29,
        "datagrams_out": 1,
        "bytes_read": 45,
        "dropped": 0,
        "termination_state": "--",
        "reason": "responses",
        "feconn": 3,
        "beconn": 3,
        "srv_conn": 2,
    }


def test_dispatch_by_style() -> None:
    """tcplog keeps HAProxy's line; json picks the JSON formatter."""
    assert format_connection("tcplog", tcp_record()) == format_tcplog(tcp_record())
    assert format_udp_session("tcplog", udp_record()) == format_udplog(udp_record())
    assert format_connection("json", tcp_record()).startswith('{"mode":"tcp",')
    assert format_udp_session("json", udp_record()).startswith('{"mode":"udp",')


def test_relay_writes_json_at_session_end() -> None:
    """A TCP frontend with log-format json writes one JSON line when the connection ends, none before."""
    relay = Relay()
    relay.frontend.spec = attr.evolve(relay.frontend.spec, log_format="json")
    client, ct = relay.accept()
    server, st = relay.complete()
    assert server is not None
    client.dataReceived(b"request")
    server.dataReceived(b"reply!")
    assert relay.sink.lines == []
    server.readConnectionLost()
    client.readConnectionLost()
    client.connectionLost(DONE)
    server.connectionLost(DONE)
    (line,) = relay.sink.lines
    data = json.loads(line)
    assert data["frontend_name"] == "fe" and data["server_name"] == "s1"
    assert data["bytes_read"] == 6 and data["termination_state"] == "--"


def test_udp_frontend_writes_json_at_session_end() -> None:
    """A UDP frontend with log-format json writes one JSON line when the session ends."""
    rig = UdpRig(timeout=5.0)
    rig.frontend.spec = attr.evolve(rig.frontend.spec, log_format="json")
    rig.send(b"query")
    rig.send(b"again")
    assert rig.sink.lines == []
    rig.reactor.advance(6.0)
    (line,) = rig.sink.lines
    data = json.loads(line)
    assert data["mode"] == "udp" and data["termination_state"] == "cD" and data["reason"] == "idle"
    assert (data["datagrams_in"], data["bytes_uploaded"]) == (2, 10)
