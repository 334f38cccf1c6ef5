"""
A reload means what a restart with the same file means: for every field of
every configuration class, a service reloaded from a base file into a file
where that field differs describes itself (L{l4lb.describe.describe}, read
from the runtime objects) exactly as a service started from that file.

The fields are found with C{attr.fields}, so a field added later is walked
without editing this test; its other value comes from L{ALT}, a second
file where every setting differs from L{BASE}.  A field that L{ALT} cannot
change, or that needs a restart, is in L{NOT_WALKED} with the reason; the
coverage test fails on any field in neither.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Iterator, List, Set, Tuple

import attr
import pytest
from twisted.internet.testing import MemoryReactorClock

from l4lb.config import model, parse_config
from l4lb.config.model import Config
from l4lb.describe import describe
from l4lb.logs import MemorySink
from l4lb.reload import apply_config
from l4lb.runtime_state import plain
from l4lb.service import BalancerService

BASE = """\
[global]
maxconn = 100
maxpipes = 10
spread-checks = 0
hard-stop-after = 5s
tune.relay = lean
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s
[backend be]
tcp-check =
    expect ! string +OK
    send PING
server s1 = 127.0.10.1:80 check
server s2 = 127.0.10.2:80
[backend be2]
balance = random(2)
servers-from = etcd http://127.0.10.20:2379 /l4lb/be2/
server t1 = 127.0.10.3:80
server-template w = 2 _a._tcp.example.test resolvers dns
[resolvers dns]
nameserver ns1 = 127.0.10.30:53
[backend dns]
mode = udp
udp-check send = hi
server d1 = 127.0.10.5:53 check
[frontend fe]
bind = 127.0.0.1:8001
default_backend = be
use_backend be2 = sni b.example
tcp-request connection = accept if src 127.0.0.0/8
stick-table = type ip size 100 expire 30s
[frontend udp]
mode = udp
bind = 127.0.0.1:5353
default_backend = dns
"""

#: Every option of server s1 in L{ALT} differs from L{BASE}.
S1_OPTIONS = " ".join(
    [
        "check weight 3 backup maxconn 7 maxqueue 4 disabled inter 5s fastinter",
        "1s downinter 9s rise 4 fall 5 port 82 addr 127.0.10.12 init-state",
        "down agent-check agent-port 5555 agent-inter 3s agent-send ping",
        "agent-addr 127.0.10.13 observe layer4 error-limit 4 on-error mark-down",
        "on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions",
        "send-proxy-v2 check-send-proxy slowstart 10s id 5 hash-key addr",
    ]
)

ALT = (
    """\
[global]
maxconn = 200
maxpipes = 20
spread-checks = 20
hard-stop-after = 9s
grace = 2s
server-state-file = l4lb-alt.state
server-state-base = /nonexistent-l4lb-state
tune.relay = classic
log = stderr
nbproc = 2
stats timeout = 20s
stats maxconn = 20
stats auth = admin:secret
[defaults]
timeout connect = 6s
timeout client = 51s
timeout server = 51s
timeout tunnel = 1h
timeout client-fin = 3s
timeout server-fin = 4s
timeout queue = 7s
timeout check = 2s
timeout udp = 12s
[backend be]
balance = source
hash-type = consistent
hash-balance-factor = 150
load-server-state-from-file = local
server-state-file-name = be-alt.state
retries = 1
option redispatch = 1
option allbackups = true
option tcp-check = true
option log-health-checks = true
tcp-check =
    connect port 81 addr 127.0.10.14
    send PONG
server s1 = 127.0.10.11:81 """
    + S1_OPTIONS
    + """
server s9 = 127.0.10.2:80 check ssl verify none sni str(db.example) verifyhost db.example check-ssl
[backend be2]
balance = random(5)
servers-from = etcd http://127.0.10.21:2379,http://127.0.10.22:2379 /l4lb/other/
server t1 = 127.0.10.3:80
server-template w = 1-3 _b._tcp.example.test:8080 resolvers dns resolve-prefer ipv4
[resolvers dns]
nameserver ns1 = tcp@127.0.10.31:5353
accepted_payload_size = 1024
resolve_retries = 2
timeout resolve = 2s
timeout retry = 2s
hold valid = 5s
hold obsolete = 6s
hold nx = 7s
hold refused = 8s
hold timeout = 9s
hold other = 10s
[backend dns]
mode = udp
udp-responses = 1
udp-requests = 2
retries = 2
timeout udp = 13s
udp-check dns = example.org AAAA
udp-check expect = string ok
server d1 = 127.0.10.5:53 check
[frontend fe]
bind = 127.0.0.1:8001 backlog 64 accept-proxy, 127.0.0.1:8002
default_backend = be2
maxconn = 50
option dontlognull
log-format = json
log = none
tcp-request inspect-delay = 3s
use_backend be = sni a.example
sni-fallback = reject
sni-max-hello = 4096
accept-proxy-from = 127.0.0.1
tcp-request connection = reject unless { src_conn_rate gt 5 }
stick-table = type ipv6 size 200 expire 60s store conn_rate(20s) ipv6-prefix 64
rate-limit sessions = 4
backlog = 128
[frontend udp]
mode = udp
bind = 127.0.0.1:5354
default_backend = dns
maxsessions = 64
timeout udp = 11s
"""
)

#: Fields no second value is walked for, with the reason.
NOT_WALKED: Dict[Tuple[str, str], str] = {
    ("GlobalSettings", "nbproc"): "needs a restart: the worker processes are started once",
    ("GlobalSettings", "log"): (
        "needs a restart: the log file or socket is opened before privileges drop"
    ),
    ("GlobalSettings", "stats_socket"): "needs a restart: bound before privileges drop",
    ("GlobalSettings", "stats_bind"): "needs a restart: bound before privileges drop",
    ("GlobalSettings", "stats_auth"): "needs a restart: the stats pages are built at start",
    ("GlobalSettings", "stats_timeout"): "needs a restart: l4lb's own listeners are built at start",
    ("GlobalSettings", "stats_maxconn"): "needs a restart: l4lb's own listeners are built at start",
    ("StatsSocket", "*"): "needs a restart (the global stats_socket)",
    ("StatsBind", "*"): "needs a restart (the global stats_bind)",
    ("Frontend", "mode"): "alone it makes an invalid file (the backend's mode must match)",
    ("Backend", "mode"): "alone it makes an invalid file (the frontend's mode must match)",
    ("Backend", "name"): "alone it makes an invalid file (frontends name their backend)",
    ("Frontend", "name"): "walked by test_renamed_frontend",
    ("LogTarget", "*"): "the global log needs a restart",
    ("Config", "source"): "the file's name, not a setting",
    ("Config", "global_settings"): "walked field by field (some need a restart)",
    ("BindSpec", "text"): "the bind as written, for messages",
    ("SourceRule", "text"): "the rule as written, for messages",
    ("BindSpec", "crt"): "needs a certificate file; TLS binds are tested in the TLS tests",
    ("ServerSpec", "ca_file"): "needs a CA file; read when the file is loaded",
    ("ServerSpec", "crt"): "needs a certificate file; read when the file is loaded",
    ("ServersFrom", "provider"): "etcd is the only store servers-from reads",
}

#: Classes the coverage test requires: every attrs class of the model.
MODEL_CLASSES = [
    cls
    for _, cls in inspect.getmembers(model, inspect.isclass)
    if attr.has(cls) and cls.__module__ == model.__name__
]


class Reactor(MemoryReactorClock):
    """
    A memory reactor with stand-in listening ports.
    """

    def listenTCP(
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:
        """
        A TCP port that only records reading.
        """
        super().listenTCP(port, factory, backlog, interface)
        return _Port()

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> Any:
        """
        A UDP port that only records reading.
        """
        udp = _Port()
        udp.protocol = protocol
        return udp


class _Port:
    """
    A listening port that only records whether it reads.
    """

    reading = False
    numberAccepts = 100
    protocol: Any = None

    def startReading(self) -> None:
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def stopListening(self) -> None:
        self.reading = False

    def doRead(self) -> None:
        pass


def _service(config: Config) -> BalancerService:
    service = BalancerService(config, Reactor(), sink=MemorySink())
    service.startService()
    return service


def fresh(config: Config) -> Dict[str, Any]:
    """
    The description of a service started from C{config}.
    """
    return describe(_service(config))


def reloaded(base: Config, config: Config) -> Dict[str, Any]:
    """
    The description of a service started from C{base} and reloaded into
    C{config}.
    """
    service = _service(base)
    apply_config(service, config)
    return describe(service)


Path = Tuple[Any, ...]


def _walk(value: Any, path: Path = ()) -> Iterator[Tuple[Path, Any]]:
    """
    Every configuration object inside C{value}, with its path (attribute
    names and tuple indexes).
    """
    if attr.has(type(value)):
        yield path, value
        for f in attr.fields(type(value)):
            yield from _walk(getattr(value, f.name), path + (f.name,))
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from _walk(item, path + (index,))


def _get(value: Any, path: Path) -> Any:
    for step in path:
        value = value[step] if isinstance(step, int) else getattr(value, step)
    return value


def _set(value: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    step, rest = path[0], path[1:]
    if isinstance(step, int):
        items = list(value)
        items[step] = _set(items[step], rest, new)
        return tuple(items)
    return attr.evolve(value, **{step: _set(getattr(value, step), rest, new)})


def _skipped(cls: type, name: str) -> bool:
    return (cls.__name__, name) in NOT_WALKED or (cls.__name__, "*") in NOT_WALKED


def cases() -> List[Any]:
    """
    One case per field of each configuration object of L{BASE} whose
    value in L{ALT} (same place) differs.
    """
    base, alt = parse_config(BASE, "lb.ini"), parse_config(ALT, "lb.ini")
    found = []
    for path, obj in _walk(base):
        try:
            other = _get(alt, path)
        except (AttributeError, IndexError):
            continue
        if type(other) is not type(obj):
            continue
        for f in attr.fields(type(obj)):
            if f.name == "line" or _skipped(type(obj), f.name):
                continue
            new = getattr(other, f.name)
            if plain(new) != plain(getattr(obj, f.name)):
                where = ".".join(str(step) for step in path + (f.name,))
                found.append(pytest.param(path + (f.name,), new, id=where))
    return found


CASES = cases()


def _covered() -> Set[Tuple[str, str]]:
    base = parse_config(BASE, "lb.ini")
    covered = set()
    for case in CASES:
        path = case.values[0]
        owner = _get(base, path[:-1])
        covered.add((type(owner).__name__, path[-1]))
    return covered


def test_every_field_is_walked_or_listed() -> None:
    """
    Every field of every configuration class is either changed by a case
    below or listed in L{NOT_WALKED} with a reason (line numbers aside).
    """
    covered = _covered()
    missing = [
        f"{cls.__name__}.{f.name}"
        for cls in MODEL_CLASSES
        for f in attr.fields(cls)
        if f.name != "line"
        and (cls.__name__, f.name) not in covered
        and not _skipped(cls, f.name)
    ]
    assert missing == [], "give these a second value in ALT, or list them with a reason"


@pytest.mark.parametrize("path, value", CASES)
def test_reload_equals_restart(path: Path, value: Any) -> None:
    """
    Reloading L{BASE} into BASE with one field changed gives the runtime a
    fresh start from that file gives.
    """
    base = parse_config(BASE, "lb.ini")
    changed = _set(base, path, value)
    expected = fresh(changed)
    got = reloaded(base, changed)
    differ = {
        key: (got.get(key), expected.get(key))
        for key in set(got) | set(expected)
        if got.get(key) != expected.get(key)
    }
    assert differ == {}


def test_whole_alternative_file_reload_equals_restart() -> None:
    """
    Reloading L{BASE} into L{ALT} (every field changed at once; the
    restart-only globals kept) gives the runtime a fresh start gives.
    """
    base = parse_config(BASE, "lb.ini")
    alt = parse_config(ALT, "lb.ini")
    alt = attr.evolve(alt, global_settings=base.global_settings)
    assert reloaded(base, alt) == fresh(alt)


def test_renamed_frontend() -> None:
    """
    A renamed frontend is the old one removed and a new one added: the
    same runtime as a start.
    """
    base = parse_config(BASE, "lb.ini")
    changed = parse_config(BASE.replace("[frontend fe]", "[frontend web]"), "lb.ini")
    assert reloaded(base, changed) == fresh(changed)
