"""
The health keywords in lb.ini: tcp-check rules (one per continuation
line, each error at its own line), option tcp-check, option
log-health-checks and the typed server fields; the agent reply grammar;
the service starting and stopping the checks.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.testing import MemoryReactorClock

from l4lb.config import ConfigError, parse_config_with_warnings
from l4lb.config.tcpcheck import parse_rule, split_rule_words
from l4lb.health.agent import parse_agent_reply
from l4lb.service import BalancerService

HEAD = """
[defaults]
timeout connect = 1s
timeout server = 1s
timeout client = 1s
"""


def test_tcp_check_rules_one_per_line() -> None:
    """A tcp-check value holds one rule per continuation line, in order, with escapes applied."""
    config, warnings = parse_config_with_warnings(
        HEAD
        + r"""
[backend redis]
option tcp-check = true
tcp-check = connect
            send PING\r\n
            expect string +PONG
server r1 = 127.0.0.1:6379 check
"""
    )
    backend = config.backends[0]
    assert backend.tcp_check and warnings == []
    assert [(r.action, r.data, r.match, r.line) for r in backend.tcp_check_rules] == [
        ("connect", b"", "", 9),
        ("send", b"PING\r\n", "", 10),
        ("expect", b"+PONG", "string", 11),
    ]


def test_each_bad_rule_is_reported_at_its_line() -> None:
    """Every bad rule is an error at its own line, with what is allowed."""
    with pytest.raises(ConfigError) as caught:
        parse_config_with_warnings(
            HEAD
            + """
[backend be]
option tcp-check
tcp-check = connect
            sned PING
            expect strng +PONG
            send-binary 0g
server s1 = 127.0.0.1:80 check
""",
            "lb.ini",
        )
    text = str(caught.value)
    assert "lb.ini:10: [backend be] key 'tcp-check': unknown tcp-check action 'sned'; did you mean 'send'?" in text
    assert "lb.ini:11:" in text and "did you mean 'string'?" in text
    assert "lb.ini:12:" in text and "not hexadecimal" in text


def test_rules_without_option_warn() -> None:
    """tcp-check rules in a backend without option tcp-check are a warning: they are not used."""
    _, warnings = parse_config_with_warnings(
        HEAD + "[backend be]\ntcp-check = expect string OK\nserver s1 = 127.0.0.1:80 check\n"
    )
    assert any("option tcp-check" in str(w) for w in warnings)


def test_defaults_carry_health_options() -> None:
    """option tcp-check, option log-health-checks and tcp-check rules may come from [defaults]."""
    config, _ = parse_config_with_warnings(
        HEAD
        + """option tcp-check
option log-health-checks
tcp-check = expect string 220

[backend smtp]
server m1 = 127.0.0.1:25 check
"""
    )
    backend = config.backends[0]
    assert backend.tcp_check and backend.log_health_checks
    assert backend.tcp_check_rules[0].data == b"220"


def test_server_health_options_fill_fields() -> None:
    """Server options for agents, passive checks, init-state and on-marked-* fill typed fields."""
    config, _ = parse_config_with_warnings(
        HEAD
        + """[backend be]
server s1 = 127.0.0.1:80 check agent-check agent-port 9999 agent-inter 5s agent-send "hi\\n" agent-addr 127.0.0.2 init-state fully-down observe layer4 error-limit 3 on-error sudden-death on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions
"""
    )
    s = config.backends[0].servers[0]
    assert (s.agent_check, s.agent_port, s.agent_inter, s.agent_send, s.agent_addr) == (
        True, 9999, 5.0, "hi\\n", "127.0.0.2",
    )
    assert (s.init_state, s.observe, s.error_limit, s.on_error) == ("fully-down", "layer4", 3, "sudden-death")
    assert (s.on_marked_down, s.on_marked_up) == ("shutdown-sessions", "shutdown-backup-sessions")


@pytest.mark.parametrize(
    "text, words",
    [
        (r"send PING\r\n", ["send", "PING\r\n"]),
        (r"send info\ replication\r\n", ["send", "info replication\r\n"]),
        ('send "a b\\x41"', ["send", "a bA"]),
        (r"expect rstring '^\d+ ok'", ["expect", "rstring", "^\\d+ ok"]),
        (r"expect rstring ^\d+$", ["expect", "rstring", "^\\d+$"]),
    ],
)
def test_rule_words(text: str, words: List[str]) -> None:
    """Quotes group words; escapes apply outside single quotes; unknown escapes such as \\d stay for regexes."""
    assert split_rule_words(text) == words


def test_rule_negation_and_connect_options() -> None:
    """expect ! and connect port/addr are understood."""
    assert parse_rule("expect ! string -ERR").negate
    assert parse_rule("expect !string -ERR").negate
    rule = parse_rule("connect port 26379 addr 127.0.0.2")
    assert (rule.port, rule.addr) == (26379, "127.0.0.2")


@pytest.mark.parametrize(
    "line, expected",
    [
        ("75%", {"weight_percent": 75}),
        ("weight:12", {"weight": 12}),
        ("maxconn:30", {"maxconn": 30}),
        ("75%,maxconn:30,maint", {"weight_percent": 75, "maxconn": 30, "admin": "maint"}),
        ("drain\tup", {"admin": "drain", "health": "up"}),
        ("stopped # going away", {"health": "down", "description": "going away"}),
        ("fail", {"health": "down"}),
        ("READY", {"admin": "ready"}),
        ("hello 7", {"ignored": ("hello", "7")}),
    ],
)
def test_agent_reply_grammar(line: str, expected: Any) -> None:
    """Agent replies: weight in percent or weight:N, maxconn:N, ready/drain/maint, up/down/fail/stopped, '# description', words separated by spaces, tabs or commas."""
    reply = parse_agent_reply(line)
    for field, value in expected.items():
        assert getattr(reply, field) == value


def test_service_starts_and_stops_the_checks() -> None:
    """The balancer service checks its servers from the start and cancels the checks when it stops."""
    config, _ = parse_config_with_warnings(
        HEAD + "[backend be]\nserver s1 = 127.0.0.1:6379 check inter 1s\nserver s2 = 127.0.0.1:6380\n"
    )
    reactor = MemoryReactorClock()
    service = BalancerService(config, reactor, sink=object())
    service.startService()
    reactor.advance(0)
    assert [c[:2] for c in reactor.tcpClients] == [("127.0.0.1", 6379)]
    assert service.monitor.running
    stopped: List[Any] = []
    service.stopService().addCallback(stopped.append)
    assert stopped and reactor.connectors[0].stoppedConnecting
    assert not service.monitor.running
    reactor.advance(5)
    assert len(reactor.tcpClients) == 1
