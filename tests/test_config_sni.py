"""
The lb.ini keys of SNI routing: C{use_backend NAME = sni HOST ...},
C{sni-fallback}, C{sni-max-hello} and C{tcp-request inspect-delay}.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import List

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from l4lb.config import ConfigError, parse_config
from l4lb.config.model import SniRoute

BASE = """\
[defaults]
timeout connect = 1s
timeout client = 5s
timeout server = 5s

[backend db]
server d1 = 127.0.0.1:5432

[backend web]
server w1 = 127.0.0.1:8443

[backend dns]
mode = udp
server n1 = 127.0.0.1:53

"""


def errors(text: str) -> List[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + text, "lb.ini")
    return [str(p) for p in caught.value.problems]


def test_rules_in_order_with_their_keys() -> None:
    """
    Rules keep file order and lowercase names (a trailing dot dropped);
    the other keys are read, C{inspect-delay} from [defaults] too.
    """
    config = parse_config(
        BASE.replace("[defaults]\n", "[defaults]\ntcp-request inspect-delay = 3s\n")
        + "[frontend tls]\nbind = 127.0.0.1:443\ndefault_backend = web\n"
        "use_backend db = sni DB.example.com *.db.internal\n"
        "use_backend web = sni www.example.com.\n"
        "sni-fallback = reject\nsni-max-hello = 4096\n"
    )
    (frontend,) = config.frontends
    assert frontend.sni_routes == (
        SniRoute("db", ("db.example.com", "*.db.internal"), 20),
        SniRoute("web", ("www.example.com",), 21),
    )
    assert frontend.sni_fallback == "reject"
    assert frontend.sni_max_hello == 4096
    assert frontend.inspect_delay == 3.0


def test_defaults_without_the_keys() -> None:
    """Without the keys a frontend has no rules and the documented defaults."""
    config = parse_config(BASE + "[frontend f]\nbind = 127.0.0.1:443\ndefault_backend = web\n")
    (frontend,) = config.frontends
    assert frontend.sni_routes == ()
    assert frontend.sni_fallback == "default"
    assert frontend.sni_max_hello == 16384
    assert frontend.inspect_delay is None


def test_use_backend_in_a_listen_section() -> None:
    """A listen section may route by name besides its own servers."""
    config = parse_config(
        BASE + "[listen l]\nbind = 127.0.0.1:443\nserver s = 127.0.0.1:1\n"
        "use_backend db = sni db.example.com\n"
    )
    assert config.frontends[0].sni_routes == (SniRoute("db", ("db.example.com",), 19),)


def test_unknown_backend_is_an_error_listing_the_backends() -> None:
    """A rule naming no backend says so, guesses, and lists them."""
    (problem,) = errors(
        "[frontend f]\nbind = 127.0.0.1:443\ndefault_backend = web\n"
        "use_backend dbs = sni db.example.com\n"
    )
    assert problem.startswith("lb.ini:19: [frontend f] key 'use_backend dbs':")
    assert "no backend named 'dbs'; did you mean 'db'?" in problem
    assert "backends defined: db, web, dns" in problem


@pytest.mark.parametrize(
    "value, message",
    [
        ("db.example.com", "expected 'sni HOST [HOST ...]'"),
        ("sni", "at least one host name"),
        ("sni db.example.com bad/name", "'bad/name' is not a host name"),
        ("sni *", "'*' is not a host name"),
        ("sni a.*.example.com", "only as the whole first label"),
        ("host db.example.com", "expected 'sni HOST"),
    ],
)
def test_bad_rules(value: str, message: str) -> None:
    """A rule that is not C{sni HOST ...} with host names is refused."""
    (problem,) = errors(
        f"[frontend f]\nbind = 127.0.0.1:443\ndefault_backend = web\nuse_backend db = {value}\n"
    )
    assert "lb.ini:19:" in problem and "key 'use_backend db'" in problem
    assert message in problem


def test_repeated_rule_and_missing_name() -> None:
    """One rule per backend, and C{use_backend} needs a backend name."""
    problems = errors(
        "[frontend f]\nbind = 127.0.0.1:443\ndefault_backend = web\n"
        "use_backend db = sni a.example.com\nuse_backend db = sni b.example.com\n"
        "use_backend = sni c.example.com\n"
    )
    assert "repeated 'use_backend db'; it is first set at line 19" in problems[0]
    assert "'use_backend NAME = sni HOST [HOST ...]'" in problems[1]


def test_udp_modes_are_refused() -> None:
    """Only a TCP frontend routes by name, and only to a TCP backend."""
    (problem,) = errors(
        "[frontend f]\nbind = 127.0.0.1:443\ndefault_backend = web\nuse_backend dns = sni a.example\n"
    )
    assert "backend 'dns' is not 'mode tcp'" in problem
    problems = errors(
        "[frontend u]\nmode = udp\nbind = 127.0.0.1:53\ndefault_backend = dns\n"
        "use_backend db = sni a.example\n"
    )
    assert any("routing by TLS server name needs 'mode tcp'" in p for p in problems)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("sni-fallback", "drop", "allowed: default, reject"),
        ("sni-max-hello", "100", "from 512 to 65536"),
        ("sni-max-hello", "", "missing value"),
        ("tcp-request inspect-delay", "soon", "not a time"),
    ],
)
def test_bad_values(key: str, value: str, message: str) -> None:
    """Bad values of the other keys name what is allowed."""
    (problem,) = errors(
        f"[frontend f]\nbind = 127.0.0.1:443\ndefault_backend = web\n{key} = {value}\n"
    )
    assert f"lb.ini:19: [frontend f] key '{key}':" in problem
    assert message in problem


def test_terminating_bind_cannot_route_by_name(tmp_path: Path) -> None:
    """
    A frontend whose bind terminates TLS sees no ClientHello: routing by
    name there is an error naming the bind.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "site.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (problem,) = errors(
        f"[frontend f]\nbind = 127.0.0.1:8443 ssl crt {pem}\ndefault_backend = web\n"
        "use_backend db = sni db.example.com\n"
    )
    assert "lb.ini:19: [frontend f] key 'use_backend db'" in problem
    assert "bind '127.0.0.1:8443' terminates TLS" in problem


def test_names_on_continuation_lines() -> None:
    """A rule's names may continue on indented lines."""
    config = parse_config(
        BASE + "[frontend f]\nbind = 127.0.0.1:443\ndefault_backend = web\n"
        "use_backend db = sni a.example.com\n    b.example.com *.c.example.com\n"
    )
    assert config.frontends[0].sni_routes[0].names == ("a.example.com", "b.example.com", "*.c.example.com")


def test_the_documented_example_parses() -> None:
    """The lb.ini example of docs/sni.md is a valid configuration."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "sni.md").read_text()
    example = doc.split("```ini\n", 1)[1].split("```", 1)[0]
    (frontend,) = parse_config(example).frontends
    assert [r.backend for r in frontend.sni_routes] == ["db", "api"]
    assert frontend.inspect_delay == 5.0 and frontend.default_backend == "web"
