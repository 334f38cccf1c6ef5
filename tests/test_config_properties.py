"""
Property tests of lb.ini values: whatever text a key is given, the value
parsers only ever raise L{InvalidValue}, and a whole file only ever raises
L{ConfigError}, each problem with its file, line and key.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l4lb.config import ConfigError, parse_config
from l4lb.config.binds import parse_binds
from l4lb.config.errors import InvalidValue
from l4lb.config.keywords import (
    BACKEND,
    BARE_VALUES,
    DEFAULTS,
    FRONTEND,
    GLOBAL,
    KEYS,
    LISTEN,
    SIMPLE_VALUES,
    parse_global_log,
    parse_proxy_log,
)
from l4lb.config.servers import parse_options, parse_server, split_words
from l4lb.config.sni import parse_sni_names
from l4lb.config.tcpcheck import parse_rules

#: Words that mean something in some value, so that random values often
#: come close to valid ones.
TOKENS = [
    "0", "1", "-1", "+5", "256", "65535", "65536", "99999999999999999999999", "1" * 5000,
    "5s", "10ms", "3m", "2h", "1d", "100us", "5x", "1.5s", "s",
    "*", "*:80", "127.0.0.1", "127.0.0.1:80", "[::1]:443", "::1", "[::1]", "10.0.0.300:1",
    "a.example.com", "*.example.com", "host:0", ":80", "tcp:80", "tcp6:80:interface=\\:\\:1",
    "ssl:443", "unix:/tmp/x", "systemd:domain=INET:index=0", "udp:53",
    "check", "inter", "rise", "fall", "weight", "backup", "maxconn", "maxqueue", "port",
    "addr", "agent-check", "agent-port", "observe", "layer4", "on-error", "error-limit",
    "init-state", "fully-up", "disabled", "slowstart", "send-proxy", "send-proxy-v2",
    "ssl", "crt", "verify", "none", "required", "ca-file", "sni", "check-ssl",
    "accept-proxy", "roundrobin", "leastconn", "random(2)", "random(", "source", "first",
    "map-based", "consistent", "true", "off", "reject", "default", "lean", "classic",
    "tcp", "udp", "http", "global", "stdout", "/var/log/x.log", "syslog", "udp@127.0.0.1:514",
    "local0", "json", "tcplog", "connect", "send", "send-binary", "expect", "string",
    "rstring", "binary", "rbinary", "!", "a(", "[", "]", "(", ")", ",", "=", "%", "50%",
    "\\", "\\x", "\\n", "'", '"', "#", ";", "mode", "0600", "user:pass", "A", "ANY",
]

#: Characters that do not end a line.
LINE_TEXT = st.characters(
    blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
    blacklist_characters="\x1c\x1d\x1e\x1f\x85",
)

VALUES = st.one_of(
    st.text(LINE_TEXT, max_size=30),
    st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6).map(" ".join),
    st.lists(st.one_of(st.sampled_from(TOKENS), st.text(LINE_TEXT, max_size=6)), max_size=6).map(" ".join),
    st.integers(-(10**25), 10**25).map(str),
)

PROPERTY = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

#: Every value parser that takes text alone.
PARSERS: Dict[str, Callable[[str], object]] = {
    **SIMPLE_VALUES,
    **{k: v for k, v in BARE_VALUES.items()},
    "log (global)": parse_global_log,
    "log (proxy)": parse_proxy_log,
    "use_backend": parse_sni_names,
    "server options": lambda text: parse_options(split_words(text)),
}


@pytest.mark.parametrize("keyword", sorted(PARSERS))
@PROPERTY
@given(text=VALUES)
def test_value_parsers_raise_only_invalid_value(keyword: str, text: str) -> None:
    """Each value parser returns a value or raises InvalidValue with a message."""
    try:
        PARSERS[keyword](text)
    except InvalidValue as error:
        assert error.message.strip()


@PROPERTY
@given(value=VALUES, line=st.integers(1, 10_000))
def test_server_binds_and_rules_report_their_problems(value: str, line: int) -> None:
    """
    C{server}, C{bind} and C{tcp-check} return problems as messages, each on
    its line, and never raise.
    """
    server, messages = parse_server("s1", value, line)
    assert server is not None or messages
    assert all(m.strip() for m in messages)
    for parse in (parse_binds, parse_rules):
        _, located = parse([(line, value)])  # type: ignore[operator]
        assert all(where == line and m.strip() for where, m in located)


TEMPLATE: Dict[str, List[Tuple[str, str]]] = {
    GLOBAL: [],
    DEFAULTS: [("timeout connect", "1s"), ("timeout client", "5s"), ("timeout server", "5s")],
    FRONTEND: [("bind", "127.0.0.1:8080"), ("default_backend", "b")],
    BACKEND: [("server s1", "127.0.0.1:9000")],
    LISTEN: [("bind", "127.0.0.1:8081"), ("server s1", "127.0.0.1:9001")],
}
HEADERS = {GLOBAL: "global", DEFAULTS: "defaults", FRONTEND: "frontend f", BACKEND: "backend b", LISTEN: "listen l"}


def written(keyword: str) -> str:
    """The key as written in a file: named keys get a name."""
    if keyword == "server":
        return "server s9"
    if keyword == "use_backend":
        return "use_backend b"
    return keyword


KEY_CASES = sorted((kind, written(k)) for kind, keys in KEYS.items() for k in keys)


def config_with(kind: str, key: str, value: str) -> Tuple[str, int]:
    """
    A small valid configuration with C{key = value} in its section of
    C{kind}, replacing the key there if it has it.

    @return: The text and the line of the key.
    """
    lines: List[str] = []
    where = 0
    for section, entries in TEMPLATE.items():
        lines.append(f"[{HEADERS[section]}]")
        entries = [(k, v) for k, v in entries if not (section == kind and k == key)]
        if section == kind:
            entries.append((key, value))
        for k, v in entries:
            lines.append(f"{k} = {v}")
            if section == kind and k == key:
                where = len(lines)
        lines.append("")
    return "\n".join(lines), where


@pytest.mark.parametrize("kind, key", KEY_CASES)
@settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(value=VALUES)
def test_any_value_of_any_key_is_a_config_error_at_its_line(kind: str, key: str, value: str) -> None:
    """
    Any value of any key in its section gives a configuration or a
    ConfigError whose problems each name the file and a line, and name the
    key when they are on its line.
    """
    text, line = config_with(kind, key, value)
    try:
        parse_config(text, "lb.ini")
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.file == "lb.ini" and problem.line >= 1, str(problem)
            assert str(problem).startswith(f"lb.ini:{problem.line}: ")
            if problem.line == line:
                assert problem.key.split()[0].lower() == key.split()[0].lower(), str(problem)
