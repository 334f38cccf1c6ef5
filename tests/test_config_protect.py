"""
The protection keys of C{lb.ini}: C{tcp-request connection} rules with
their C{-f} files, C{stick-table} and C{rate-limit sessions}
(L{l4lb.config.protect}).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l4lb.config.errors import ConfigError, InvalidValue
from l4lb.config.parser import load_config, parse_config
from l4lb.config.protect import parse_rule, parse_stick_table

BASE = """\
[frontend f]
bind = 127.0.0.1:8000
default_backend = b
{extra}

[backend b]
server s1 = 127.0.0.1:9000
"""


def config_with(extra: str):  # type: ignore[no-untyped-def]
    return parse_config(BASE.format(extra=extra), "lb.ini")


def errors_of(extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        config_with(extra)
    return str(info.value)


def test_rules_are_read_in_order() -> None:
    """
    Each line of C{tcp-request connection} is one rule, kept in order with
    its line number, braces and negations understood.
    """
    spec = config_with(
        "stick-table = type ip size 100k expire 30s\n"
        "tcp-request connection =\n"
        "    accept if src 10.0.0.0/8\n"
        "    reject if { src_conn_cur ge 10 }\n"
        "    reject if !src 192.168.0.0/16 ::1\n"
    ).frontends[0]
    rules = spec.source_rules
    assert [(r.action, r.fetch, r.negate, r.line) for r in rules] == [
        ("accept", "src", False, 6),
        ("reject", "src_conn_cur", False, 7),
        ("reject", "src", True, 8),
    ]
    assert rules[1].operator == "ge" and rules[1].threshold == 10
    assert spec.stick_table is not None and spec.stick_table.size == 102400


def test_list_file_relative_to_the_configuration(tmp_path: Path) -> None:
    """
    C{src -f FILE} reads one range a line, skipping comments and blank
    lines, from a path relative to the configuration file.
    """
    (tmp_path / "deny.lst").write_text("# abusers\n10.9.0.0/16\n\n2001:db8::/32  # net\n")
    ini = tmp_path / "lb.ini"
    ini.write_text(BASE.format(extra="tcp-request connection = reject if src -f deny.lst"))
    rule = load_config(str(ini)).frontends[0].source_rules[0]
    assert "10.9.1.1" in rule.addresses and "2001:db8::5" in rule.addresses
    assert "10.8.1.1" not in rule.addresses and rule.addresses.count == 2


def test_bad_line_of_a_list_file_is_reported_at_its_line(tmp_path: Path) -> None:
    """
    A line of a C{-f} file that is not a range is an error naming that
    file and line, the key, the rule's position and what is allowed.
    """
    (tmp_path / "deny.lst").write_text("10.0.0.0/8\n10.0.0.300\n")
    ini = tmp_path / "lb.ini"
    ini.write_text(BASE.format(extra="tcp-request connection = reject if src -f deny.lst"))
    with pytest.raises(ConfigError) as info:
        load_config(str(ini))
    message = str(info.value)
    assert f"{tmp_path / 'deny.lst'}:2:" in message
    assert "key 'tcp-request connection'" in message
    assert "'10.0.0.300' is not an address or address range" in message
    assert f"{ini}:4" in message


def test_unreadable_list_file_is_a_config_error(tmp_path: Path) -> None:
    """
    A C{-f} file that cannot be read is an error at the rule's line naming
    the file.
    """
    message = errors_of(f"tcp-request connection = reject if src -f {tmp_path}/missing.lst")
    assert "lb.ini:4:" in message and "cannot read the address list" in message
    assert "missing.lst" in message


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("deny if src 10.0.0.0/8", "unknown action 'deny'"),
        ("reject when src 10.0.0.0/8", "expected 'if' or 'unless'"),
        ("reject if src 10.0.0.0/33", "'10.0.0.0/33' is not an address"),
        ("reject if src", "'src' needs addresses"),
        ("reject if", "is not a rule"),
        ("reject if src -f", "'-f' needs a file name"),
        ("reject if { src_conn_cur ge 10", "unbalanced braces"),
        ("reject if src_conn_cur above 10", "operators: ge, gt, le, lt, eq"),
        ("reject if src_conn_cur ge ten", "'ten' is not an integer"),
        ("reject if dst 10.0.0.0/8", "unknown condition 'dst'"),
        ("reject if !", "missing condition"),
    ],
)
def test_bad_rules_say_what_is_allowed(rule: str, expected: str) -> None:
    """
    A malformed rule is an error at its line saying what is wrong.
    """
    message = errors_of(f"tcp-request connection =\n    {rule}")
    assert "lb.ini:5:" in message and expected in message


def test_counter_rule_needs_a_stick_table_that_stores_it() -> None:
    """
    A rule on a counter without a C{stick-table}, or with one that does not
    store that counter, is an error telling what to add.
    """
    assert "add 'stick-table = type ip" in errors_of(
        "tcp-request connection = reject if { src_conn_rate ge 10 }"
    )
    assert "add conn_rate(PERIOD) to its 'store'" in errors_of(
        "stick-table = type ip size 10 expire 1s store conn_cur\n"
        "tcp-request connection = reject if { src_conn_rate ge 10 }"
    )


def test_stick_table_options() -> None:
    """
    C{stick-table} reads its type, size (k: 1024), expiry, stored counters
    with the rate's period, and the IPv6 prefix.
    """
    table = parse_stick_table("type ipv6 size 2k expire 1m store conn_rate(3s) ipv6-prefix 64")
    assert (table.size, table.expire, table.conn_cur, table.conn_rate, table.ipv6_prefix) == (
        2048, 60.0, False, 3.0, 64
    )
    defaults = parse_stick_table("type ip size 10 expire 30s")
    assert defaults.conn_cur and defaults.conn_rate == 10.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("type ip size 10", "missing 'expire'"),
        ("type string size 10 expire 1s", "type 'string' is not supported"),
        ("type ip size 0 expire 1s", "out of range"),
        ("type ip size 10 expire 1s store gpc0", "cannot store 'gpc0'"),
        ("type ip size 10 expire 1s peers x", "unknown stick-table option 'peers'"),
        ("type ip size 10 expire 0", "more than 0"),
    ],
)
def test_bad_stick_tables(text: str, expected: str) -> None:
    """
    A malformed C{stick-table} is refused with what is allowed.
    """
    with pytest.raises(InvalidValue) as info:
        parse_stick_table(text)
    assert expected in info.value.message


def test_rate_limit_sessions() -> None:
    """
    C{rate-limit sessions} is a number of new connections per second.
    """
    assert config_with("rate-limit sessions = 250").frontends[0].rate_limit_sessions == 250
    assert "not an integer" in errors_of("rate-limit sessions = fast")


def test_protection_keys_are_tcp_only() -> None:
    """
    Source rules, stick tables and session rates on a UDP frontend are
    errors.
    """
    text = BASE.format(
        extra="mode = udp\nstick-table = type ip size 10 expire 1s\nrate-limit sessions = 5\n"
        "tcp-request connection = reject if src 10.0.0.0/8"
    ).replace("[backend b]", "[backend b]\nmode = udp")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "lb.ini")
    message = str(info.value)
    assert message.count("'mode tcp' frontends only") == 3, message


_WORDS = st.sampled_from(
    ["accept", "reject", "if", "unless", "!", "{", "}", "src", "!src", "-f", "src_conn_cur",
     "sc0_conn_rate", "ge", "lt", "eq", "10", "-1", "10.0.0.0/8", "::1", "::ffff:1.2.3.4/120",
     "300.1.1.1", "/nonexistent", "\x00", "1" * 40]
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_WORDS, max_size=8).map(" ".join)))
def test_random_rules_fail_only_with_config_errors(text: str) -> None:
    """
    Any text given as a rule parses or is refused with L{InvalidValue};
    no other exception escapes.
    """
    try:
        parse_rule(text, 1, "/nonexistent-dir")
    except InvalidValue:
        pass


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=60))
def test_random_bytes_in_the_file_fail_only_with_config_errors(data: bytes) -> None:
    """
    Random bytes as the C{tcp-request connection} and C{stick-table}
    values give a configuration or a L{ConfigError}, nothing else.
    """
    text = data.decode("latin-1").replace("\r", "").replace("[", "")
    for extra in (f"tcp-request connection = {text}", f"stick-table = {text}"):
        try:
            config_with(extra)
        except ConfigError:
            pass


def test_table_smaller_than_maxconn_is_warned() -> None:
    """
    A stick table smaller than the frontend's C{maxconn} gives a warning:
    it could fill with sources that all have open connections.
    """
    from l4lb.config.parser import parse_config_with_warnings

    _, warnings = parse_config_with_warnings(
        BASE.format(extra="maxconn = 500\nstick-table = type ip size 100 expire 10s"), "lb.ini"
    )
    assert any("size 100 is below the frontend's maxconn 500" in str(w) for w in warnings)
    _, warnings = parse_config_with_warnings(
        BASE.format(extra="maxconn = 50\nstick-table = type ip size 100 expire 10s"), "lb.ini"
    )
    assert not any("stick-table" in str(w) for w in warnings)
