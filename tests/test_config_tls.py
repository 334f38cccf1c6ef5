"""
Tests for the TLS options of lb.ini: C{ssl crt} on binds, C{ssl},
C{verify}, C{ca-file}, C{sni}, C{verifyhost}, C{crt} and C{check-ssl} on
servers, and the checks of the files they name at load time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from l4lb.config import parse_config
from l4lb.config.errors import ConfigError, InvalidValue
from l4lb.config.tls import load_ca_file, load_certificate_file
from tests.tlskit import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: Any) -> Pki:
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def config(bind: str, server: str) -> str:
    return (
        "[frontend fe]\n"
        f"bind = {bind}\n"
        "default_backend = be\n"
        "[backend be]\n"
        f"server s1 = {server}\n"
    )


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "lb.ini")
    return str(caught.value)


def test_bind_ssl_crt_is_kept(pki: Pki) -> None:
    """A bind with ssl crt keeps its TCP endpoint and the certificate path."""
    cfg = parse_config(config(f"127.0.0.1:8443 ssl crt {pki.server}", "10.0.0.1:80"), "lb.ini")
    bind = cfg.frontends[0].binds[0]
    assert bind.endpoint == "tcp:8443:interface=127.0.0.1"
    assert bind.crt == pki.server


@pytest.mark.parametrize(
    "options, message",
    [
        ("ssl", "'ssl' needs 'crt PATH'"),
        ("crt /x.pem", "'crt' needs 'ssl'"),
        ("ssl crt", "bind option 'crt' needs a value"),
        ("ssl crt /nonexistent/site.pem", "certificate file '/nonexistent/site.pem' does not exist"),
        ("ssl crt /x.pem accept-proxy", "'accept-proxy' cannot be combined with 'ssl'"),
    ],
)
def test_bind_tls_errors_name_the_line(options: str, message: str) -> None:
    """Incomplete ssl/crt options are config errors at the bind's line."""
    text = error_of(config(f"*:8443 {options}", "10.0.0.1:80"))
    assert "lb.ini:2:" in text and message in text


def test_bind_crt_without_key_or_with_another_key(pki: Pki) -> None:
    """A certificate file without a key, without a certificate, or with a
    key of another certificate, is refused when the configuration is read."""
    assert "holds no private key" in error_of(config(f"*:1 ssl crt {pki.ca}", "10.0.0.1:80"))
    assert "holds no PEM certificate" in error_of(config(f"*:1 ssl crt {pki.key_only}", "10.0.0.1:80"))
    assert "does not belong" in error_of(config(f"*:1 ssl crt {pki.mismatched}", "10.0.0.1:80"))


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    """A directory or a file without PEM certificates is not a certificate
    file or a CA file."""
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    with pytest.raises(InvalidValue, match="is a directory"):
        load_certificate_file(str(tmp_path))
    with pytest.raises(InvalidValue, match="holds no PEM certificate"):
        load_ca_file(str(empty))


def test_certificate_file_keeps_the_chain(pki: Pki) -> None:
    """The server's certificate comes first, then its chain (the CA)."""
    certificates, key = load_certificate_file(pki.server)
    assert len(certificates) == 2
    assert certificates[1].subject == certificates[0].issuer


def test_server_tls_options(pki: Pki) -> None:
    """Every server TLS option fills its field; verify defaults to required
    and the name verified is the sni."""
    line = f"10.0.0.1:443 ssl ca-file {pki.ca} sni str(DB.internal) crt {pki.server} check check-ssl"
    server = parse_config(config("*:80", line), "lb.ini").backends[0].servers[0]
    assert server.ssl and server.check_ssl
    assert server.verify == "required"
    assert (server.ca_file, server.crt) == (pki.ca, pki.server)
    assert server.sni == "db.internal" and server.tls_name == "db.internal"


def test_server_tls_name_defaults() -> None:
    """Without sni the name verified is verifyhost, else the server's host."""
    spec = parse_config(config("*:80", "10.0.0.1:443 ssl verify none"), "lb.ini").backends[0].servers[0]
    assert spec.verify == "none" and spec.tls_name == "10.0.0.1"
    spec = parse_config(config("*:80", "10.0.0.1:443 ssl verifyhost a.example"), "lb.ini").backends[0].servers[0]
    assert spec.tls_name == "a.example"


@pytest.mark.parametrize(
    "options, message",
    [
        ("ssl ca-file /nonexistent/ca.pem", "server option 'ca-file': CA file '/nonexistent/ca.pem' does not exist"),
        ("ssl crt /nonexistent/c.pem", "server option 'crt': certificate file"),
        ("ssl sni a.example verifyhost b.example", "differ"),
        ("ssl sni req.hdr(host)", "sample expressions are not supported"),
        ("ssl verify maybe", "server option 'verify'"),
        ("ssl send-proxy", "'send-proxy' cannot be combined with 'ssl'"),
    ],
)
def test_server_tls_errors(options: str, message: str) -> None:
    """Wrong server TLS options are config errors at the server's line."""
    text = error_of(config("*:80", f"10.0.0.1:443 {options}"))
    assert "lb.ini:5:" in text and message in text, text


def test_no_ssl_undoes_default_server(pki: Pki) -> None:
    """no-ssl and no-check-ssl on a server undo default-server's ssl and
    check-ssl."""
    text = (
        "[frontend fe]\nbind = *:80\ndefault_backend = be\n[backend be]\n"
        f"default-server = ssl check-ssl ca-file {pki.ca}\n"
        "server s1 = 10.0.0.1:443\nserver s2 = 10.0.0.2:80 no-ssl no-check-ssl\n"
    )
    s1, s2 = parse_config(text, "lb.ini").backends[0].servers
    assert s1.ssl and s1.check_ssl and not s2.ssl and not s2.check_ssl
