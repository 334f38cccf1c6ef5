"""
Tests for L{l4lb.config.servers}: server addresses, every option word,
C{default-server}, and the errors for wrong ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from l4lb.config import ConfigError, Problem, ServerSpec, parse_config
from l4lb.config.servers import OPTION_WORDS, parse_server
from tests.tlskit import make_pki

HEAD = """\
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s
[frontend fe]
bind = :80
default_backend = be
[backend be]
"""
# The first line after HEAD is line 9.


def servers(body: str, defaults: str = "") -> List[ServerSpec]:
    """
    Parse a backend made of C{body}; return its servers.
    """
    text = HEAD.replace("[defaults]\n", "[defaults]\n" + defaults) + body
    return list(parse_config(text).backends[0].servers)


def server_problems(line: str) -> List[Problem]:
    """
    Parse a backend whose only key is C{line}; return its errors.
    """
    with pytest.raises(ConfigError) as caught:
        parse_config(HEAD + line + "\n")
    return caught.value.problems


@pytest.mark.parametrize(
    "address, host, port, resolved",
    [
        ("192.0.2.1:80", "192.0.2.1", 80, "192.0.2.1"),
        ("[2001:db8::1]:8080", "2001:db8::1", 8080, "2001:db8::1"),
        ("2001:db8::1:8080", "2001:db8::1", 8080, "2001:db8::1"),
        ("app.example.com:443", "app.example.com", 443, None),
        ("db_1:5432", "db_1", 5432, None),
        ("localhost:1", "localhost", 1, None),
    ],
)
def test_server_addresses(address: str, host: str, port: int, resolved: object) -> None:
    """IP literals get their address at once; host names wait for resolution."""
    (server,) = servers(f"server s1 = {address}\n")
    assert (server.host, server.port, server.address, server.line) == (host, port, resolved, 9)


@pytest.mark.parametrize(
    "address, message",
    [
        ("192.0.2.1", "'192.0.2.1' has no port; expected ADDRESS:PORT such as"),
        ("192.0.2.1:0", "0 is out of range; expected an integer from 1 to 65535"),
        ("192.0.2.1:99999", "expected an integer from 1 to 65535"),
        ("1.2.3.999:80", "'1.2.3.999' is not a valid IPv4 address"),
        ("[192.0.2.1]:80", "in brackets is not an IPv6 address"),
        ("[2001:db8::1]", "is not an address; expected ADDRESS:PORT"),
        ("bad!host:80", "is not a valid host name"),
        (":80", "has no host"),
        ("2001:db8:::1:80", "write IPv6 addresses in brackets"),
    ],
)
def test_bad_server_addresses(address: str, message: str) -> None:
    """A bad address is an error at the server's line naming the server."""
    (problem,) = server_problems(f"server s1 = {address}")
    assert (problem.line, problem.key, problem.section) == (9, "server s1", "backend be")
    assert message in problem.message


def test_every_option_word_is_accepted_and_recorded(tmp_path: Path) -> None:
    """Every HAProxy option word is validated and kept, in order."""
    pki = make_pki(str(tmp_path))
    line = (
        "server s1 = 10.0.0.1:80 check backup disabled enabled agent-check send-proxy"
        " send-proxy-v2 ssl check-ssl no-check inter 3s fastinter 500 downinter 1m"
        " rise 4 fall 5 weight 20 maxconn 100 maxqueue 10 port 8081 addr 10.0.0.9"
        " slowstart 30s init-state fully-down agent-port 9999 agent-inter 5s"
        " agent-send 'ready now' agent-addr 10.0.0.8 observe layer4 error-limit 5"
        " on-error mark-down on-marked-down shutdown-sessions"
        f" on-marked-up shutdown-backup-sessions id 7 ca-file {pki.ca} crt {pki.server}"
        " sni app.example verify required hash-key addr-port"
        " check-send-proxy no-send-proxy-v2 no-send-proxy no-ssl no-check-ssl ssl"
        " verifyhost app.example resolvers dns resolve-prefer ipv4"
        " resolve-net 127.0.0.0/8 resolve-opts allow-dup-ip init-addr last,none\n"
        "[resolvers dns]\nnameserver ns1 = 127.0.0.1:53\n"
    )
    (server,) = servers(line)
    words = [word for word, _ in server.options]
    assert sorted(set(words)) == sorted(OPTION_WORDS)
    assert ("agent-send", "ready now") in server.options
    assert ("inter", "3s") in server.options and ("check", None) in server.options
    assert (server.inter, server.fastinter, server.downinter) == (3.0, 0.5, 60.0)
    assert (server.rise, server.fall, server.weight) == (4, 5, 20)
    assert (server.maxconn, server.maxqueue) == (100, 10)
    assert (server.check_port, server.check_addr) == (8081, "10.0.0.9")
    # Later words win: 'enabled' after 'disabled', 'no-check' after 'check'.
    assert server.backup is True and server.disabled is False and server.check is False
    assert server.send_proxy == 0 and server.check_send_proxy is True
    # 'ssl' after 'no-ssl' wins; 'no-check-ssl' after 'check-ssl' wins.
    assert server.ssl is True and server.check_ssl is False
    assert (server.verifyhost, server.ca_file) == ("app.example", pki.ca)


def test_server_defaults() -> None:
    """A server without options has HAProxy's defaults."""
    (server,) = servers("server s1 = 10.0.0.1:80\n")
    assert server == ServerSpec("s1", "10.0.0.1", 80, address="10.0.0.1", line=9)


@pytest.mark.parametrize(
    "options, message",
    [
        ("chek", "unknown server option 'chek'; did you mean 'check'? Allowed: addr, agent-addr,"),
        ("inter", "server option 'inter' needs a value"),
        ("inter 0", "must be a time greater than 0"),
        ("inter 2x", "allowed: us, ms, s, m, h, d"),
        ("rise 0", "expected an integer >= 1"),
        ("fall x", "expected an integer >= 1"),
        ("weight 257", "server option 'weight': 257 is out of range; expected an integer from 0 to 256"),
        ("port 0", "expected an integer from 1 to 65535"),
        ("addr db.local", "is not an IP address"),
        ("init-state sideways", "allowed: up, down, fully-up, fully-down"),
        ("observe layer7", "did you mean 'layer4'? Allowed: layer4"),
        ("on-error panic", "allowed: fastinter, fail-check, sudden-death, mark-down"),
        ("on-marked-down kill", "allowed: shutdown-sessions"),
        ("on-marked-up kill", "allowed: shutdown-backup-sessions"),
        ("verify maybe", "allowed: none, required"),
        ("agent-check", "'agent-check' needs 'agent-port N'"),
        ("agent-send 'unclosed", "cannot split"),
    ],
)
def test_bad_server_options(options: str, message: str) -> None:
    """Each bad option word or value is an error naming what is allowed."""
    (problem,) = server_problems(f"server s1 = 10.0.0.1:80 {options}")
    assert (problem.line, problem.key) == (9, "server s1")
    assert message in problem.message


def test_unknown_option_with_value_is_one_error() -> None:
    """'wieght 3' is one error, not a second one for '3'."""
    (problem,) = server_problems("server s1 = 10.0.0.1:80 wieght 3 check")
    assert "did you mean 'weight'?" in problem.message


def test_address_and_option_errors_are_both_reported() -> None:
    """A bad address does not hide the bad options of the same line."""
    problems = server_problems("server s1 = 1.2.3.999:80 chek")
    assert len(problems) == 2


def test_duplicate_server_name() -> None:
    """A server name used twice in a backend is an error at the second line."""
    (problem,) = server_problems("server s1 = 10.0.0.1:80\nserver s1 = 10.0.0.2:80")
    assert (problem.line, problem.key) == (10, "server s1")
    assert "duplicate server name 's1'; the first is at line 9" in problem.message


def test_server_names_are_case_sensitive() -> None:
    """'server A' and 'server a' are two servers."""
    assert [s.name for s in servers("server A = 10.0.0.1:80\nserver a = 10.0.0.2:80\n")] == ["A", "a"]


def test_server_needs_a_name_and_an_address() -> None:
    """'server = ...' and 'server s1 =' are errors saying what to write."""
    problems = server_problems("server = 10.0.0.1:80\nserver s2 =")
    assert "'server' needs a name: 'server NAME = ADDRESS:PORT [options]'" in problems[0].message
    assert "missing value; expected 'server s2 = ADDRESS:PORT [options]'" in problems[1].message


def test_server_name_characters() -> None:
    """Server names use HAProxy's characters."""
    (problem,) = server_problems("server s/1 = 10.0.0.1:80")
    assert "use letters, digits and - _ . :" in problem.message


def test_default_server_applies_and_own_words_win() -> None:
    """default-server in [defaults] and the backend supply options; a server's own win."""
    first, second = servers(
        "default-server = inter 5s weight 5\n"
        "server s1 = 10.0.0.1:80 check\n"
        "server s2 = 10.0.0.2:80 weight 50 inter 1s no-check\n",
        defaults="default-server = check rise 3 maxconn 10\n",
    )
    assert (first.check, first.rise, first.maxconn, first.inter, first.weight) == (True, 3, 10, 5.0, 5)
    assert (second.check, second.rise, second.inter, second.weight) == (False, 3, 1.0, 50)
    assert second.options[:3] == (("check", None), ("rise", "3"), ("maxconn", "10"))


def test_default_server_errors() -> None:
    """Bad default-server options are errors at its line."""
    (problem,) = server_problems("default-server = weight 999")
    assert (problem.line, problem.key) == (9, "default-server")
    assert "expected an integer from 0 to 256" in problem.message


def test_default_server_not_in_frontend() -> None:
    """default-server is not a frontend key."""
    with pytest.raises(ConfigError) as caught:
        parse_config(HEAD.replace("default_backend = be\n", "default_backend = be\ndefault-server = check\n"))
    assert "not allowed in a [frontend] section" in caught.value.problems[0].message


def test_parse_server_directly() -> None:
    """parse_server returns the spec and no error for a good line."""
    spec, errors = parse_server("s", "10.0.0.1:80 weight 0", 3)
    assert errors == [] and spec is not None and spec.weight == 0 and spec.line == 3
