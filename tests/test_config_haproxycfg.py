"""
Reading HAProxy's C{haproxy.cfg}: words, quotes, variables, C{.if} blocks,
sections and keywords, into the same objects as the equivalent C{lb.ini},
with every problem at its C{haproxy.cfg} line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple

import attr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l4lb.config import ConfigError, load_config_with_warnings, parse_config
from l4lb.config._cfgwords import evaluate, read_lines, split_line
from l4lb.config.errors import InvalidValue, Problem
from l4lb.config.haproxycfg import is_haproxy_format, parse_haproxy_config_with_warnings
from l4lb.config.model import Config, LogTarget
from tests.cfgkit import unlined

ROOT = Path(__file__).resolve().parent.parent

TIMEOUTS = """\
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 50s
    timeout server 50s
"""


def parse(text: str, env: Any = None) -> Tuple[Config, List[Problem]]:
    """
    Parse C{haproxy.cfg} text named C{haproxy.cfg}, with no environment
    unless given.
    """
    return parse_haproxy_config_with_warnings(text, "haproxy.cfg", env or {})


def errors_of(text: str, env: Any = None) -> List[Problem]:
    """
    The errors of a C{haproxy.cfg} text that must have some.
    """
    with pytest.raises(ConfigError) as raised:
        parse(text, env)
    return raised.value.problems


@pytest.mark.parametrize(
    "line, words, comment",
    [
        ("bind *:80 # web", ["bind", "*:80"], " web"),
        ("  server s1\t127.0.0.1:80   check", ["server", "s1", "127.0.0.1:80", "check"], None),
        ('send "a b"', ["send", "a b"], None),
        ("send 'a $HOME \\n'", ["send", "a $HOME \\n"], None),
        ('send "x\\r\\n" \\#no', ["send", "x\r\n", "#no"], None),
        ("a\\ b \\x41", ["a b", "A"], None),
        ('bind "${ADDR}:${PORT}"', ["bind", "127.0.0.2:81"], None),
        ("bind $ADDR:$PORT", ["bind", "127.0.0.2:81"], None),
        ("bind ${UNSET-127.0.0.3}:${PORT}", ["bind", "127.0.0.3:81"], None),
        ("bind ${UNSET}x", ["bind", "x"], None),
        ('x ""', ["x", ""], None),
        ("expect rstring ^\\d+\\.", ["expect", "rstring", "^\\d+\\."], None),
        ("#all comment", [], "all comment"),
    ],
)
def test_lines_split_as_haproxy_splits_them(line: str, words: List[str], comment: Any) -> None:
    """Spaces separate words; quotes, escapes, variables and '#' work as in HAProxy."""
    assert split_line(line, {"ADDR": "127.0.0.2", "PORT": "81"}) == (words, comment)


@pytest.mark.parametrize("line", ['send "open', "send 'open", "bad \\xZZ", "end \\"])
def test_malformed_lines_are_invalid(line: str) -> None:
    """An unclosed quote or a malformed escape is an error, not a guess."""
    with pytest.raises(InvalidValue):
        split_line(line, {})


@pytest.mark.parametrize(
    "condition, expected",
    [
        ("defined(HOME)", True),
        ("defined(NOPE)", False),
        ("!defined(NOPE)", True),
        ("streq(a,a)", True),
        ("strneq(a,a)", False),
        ("version_atleast(2.4)", True),
        ("version_before(2.4)", False),
        ("feature(OPENSSL)", True),
        ("1", True),
        ("0", False),
        ("defined(NOPE) || streq(x,x)", True),
        ("defined(HOME) && (0 || !0)", True),
    ],
)
def test_conditions_are_haproxys(condition: str, expected: bool) -> None:
    """The .if predicates and operators give HAProxy's answers."""
    assert evaluate(condition, {"HOME": "/root"}) is expected


def test_if_blocks_keep_the_taken_branch_only() -> None:
    """.if/.elif/.else/.endif keep the lines of the first true branch; .warning is a warning and .alert an error."""
    text = (
        ".if defined(NOPE)\nkeep 1\n.elif streq(a,a)\nkeep 2\n.warning careful\n.else\nkeep 3\n.alert no\n.endif\n"
        ".if 1\n.if 0\nkeep 4\n.else\nkeep 5\n.endif\n.endif\n"
    )
    lines, errors, warnings = read_lines(text, {})
    assert [cfg.words for cfg in lines] == [("keep", "2"), ("keep", "5")]
    assert errors == []
    assert warnings == [(5, "careful")]
    _, errors, _ = read_lines(".if 1\n.alert stop here\n.endif\n.if 1\nx\n", {})
    assert errors == [(2, "stop here"), (4, "'.if' without its '.endif'")]


def test_formats_are_told_apart_by_content() -> None:
    """A file whose first statement is a section keyword or '.if' is a haproxy.cfg; '[...]' is an lb.ini."""
    assert is_haproxy_format("# c\n\nglobal\n  maxconn 10\n")
    assert is_haproxy_format(".if defined(X)\n.endif\n")
    assert is_haproxy_format("frontend fe\n")
    assert not is_haproxy_format("; c\n[global]\nmaxconn = 10\n")
    assert not is_haproxy_format("")
    assert not is_haproxy_format("maxconn = 10\n")


def test_the_guides_file_means_the_seed_lb_ini() -> None:
    """etc/haproxy.cfg, the Layer 4 guide's file, gives the objects of etc/lb.ini but for the syslog target."""
    config, warnings = load_config_with_warnings(str(ROOT / "etc" / "haproxy.cfg"))
    seed = parse_config((ROOT / "etc" / "lb.ini").read_text(), "etc/lb.ini")
    syslog = LogTarget("syslog", "/dev/log", facility="local0")
    expected = attr.evolve(seed, global_settings=attr.evolve(seed.global_settings, log=syslog))
    assert unlined(config) == unlined(expected)
    assert config.source == str(ROOT / "etc" / "haproxy.cfg")
    assert [(w.line, w.key) for w in warnings] == [(9, "log")]
    assert "one target" in warnings[0].message


def test_lines_in_the_objects_are_the_haproxy_cfg_lines() -> None:
    """Binds and servers carry their haproxy.cfg line, for start-up messages."""
    text = TIMEOUTS + "\nfrontend fe\n  bind 127.0.0.1:8080\n\n  bind 127.0.0.1:8081\n  default_backend be\n" \
        "backend be\n  server s1 127.0.0.1:9000\n"
    config, _ = parse(text)
    assert [b.line for b in config.frontends[0].binds] == [9, 11]
    assert config.backends[0].servers[0].line == 14


def test_problems_are_at_their_haproxy_cfg_lines() -> None:
    """Errors found by l4lb's parser are reported at the file's own lines and name."""
    text = TIMEOUTS + "frontend fe\n  bind 127.0.0.1:8080\n  default_backend web\n" \
        "backend be\n  timeout connect 5 parsecs\n  server s1 127.0.0.1:9000 wieght 2\n"
    problems = errors_of(text)
    shown = [str(p) for p in problems]
    assert [(p.file, p.line) for p in problems] == [("haproxy.cfg", 9), ("haproxy.cfg", 11), ("haproxy.cfg", 12)]
    assert "no backend named 'web'" in shown[0]
    assert shown[1].startswith("haproxy.cfg:11: [backend be] key 'timeout connect':")
    assert "wieght" in shown[2] and "weight" in shown[2]


@pytest.mark.parametrize(
    "line, keyword",
    [
        ("mode http", "mode http"),
        ("option httplog", "option httplog"),
        ("http-request deny", "http-request"),
        ("option forwardfor", "option forwardfor"),
        ("timeout http-request 5s", "timeout http-request"),
        ("stats uri /stats", "stats uri"),
        ("errorfile 503 /etc/haproxy/errors/503.http", "errorfile"),
        ("balance uri", "balance uri"),
    ],
)
def test_http_keywords_are_errors_that_say_layer_4(line: str, keyword: str) -> None:
    """An HTTP-only keyword is an error naming it and saying l4lb is a Layer 4 balancer."""
    text = TIMEOUTS + f"listen app\n  bind 127.0.0.1:8080\n  {line}\n  server s1 127.0.0.1:9000\n"
    (problem,) = errors_of(text)
    assert problem.line == 9
    assert f"'{keyword}'" in problem.message and "Layer 4" in problem.message


@pytest.mark.parametrize(
    "line, keyword, advice",
    [
        ("option mysql-check user haproxy", "option mysql-check", "tcp-check"),
        ("stick on src", "stick", "balance source"),
        ("acl bad src 127.0.0.9", "acl", "tcp-request connection"),
        ("option tcpka", "option tcpka", "timeouts"),
        ("use-server s1 if { src 127.0.0.1 }", "use-server", "balance"),
    ],
)
def test_tcp_keywords_l4lb_lacks_are_errors_with_advice(line: str, keyword: str, advice: str) -> None:
    """A TCP-mode keyword l4lb does not implement is an error saying so and what to use instead."""
    text = TIMEOUTS + f"listen app\n  bind 127.0.0.1:8080\n  {line}\n  server s1 127.0.0.1:9000\n"
    (problem,) = errors_of(text)
    assert problem.line == 9 and problem.key == keyword
    assert "not implemented by l4lb" in problem.message and advice in problem.message


def test_process_keywords_point_at_twistd() -> None:
    """user, group and chroot are errors naming twistd's or systemd's way; daemon is a warning."""
    text = "global\n  user haproxy\n  chroot /var/lib/haproxy\n  daemon\n" + TIMEOUTS
    problems = errors_of(text + "frontend fe\n  bind 127.0.0.1:1\n  default_backend be\nbackend be\n")
    assert [(p.line, p.key) for p in problems] == [(2, "user"), (3, "chroot")]
    assert "--uid" in problems[0].message and "systemd" in problems[1].message


def test_unknown_keywords_are_errors_not_ignored() -> None:
    """A keyword nobody knows is an error with a suggestion, never dropped."""
    text = TIMEOUTS + "backend be\n  balanse roundrobin\n  server s1 127.0.0.1:9000\n"
    (problem,) = errors_of(text)
    assert problem.line == 8 and "balance" in problem.message


def test_other_sections_are_errors_that_say_why() -> None:
    """A section l4lb does not read (peers, userlist, resolvers ...) is an error at its header."""
    problems = errors_of("peers mine\n  peer a 127.0.0.1:1024\n" + TIMEOUTS)
    assert [(p.line, "peers" in p.message) for p in problems] == [(1, True)]


def test_named_defaults_and_from_give_each_proxy_its_own() -> None:
    """Each proxy takes the last defaults before it, or the one named by 'from', as HAProxy does."""
    text = (
        "defaults fast\n  mode tcp\n  timeout connect 1s\n  timeout client 2s\n  timeout server 3s\n  retries 1\n"
        "defaults slow\n  mode tcp\n  timeout connect 10s\n  timeout client 20s\n  timeout server 30s\n"
        "listen a\n  bind 127.0.0.1:8080\n  server s1 127.0.0.1:9000\n"
        "listen b from fast\n  bind 127.0.0.1:8081\n  server s1 127.0.0.1:9001\n"
    )
    config, _ = parse(text)
    a, b = config.backends
    assert (a.timeouts.connect, a.retries) == (10.0, 3)
    assert (b.timeouts.connect, b.timeouts.server, b.retries) == (1.0, 3.0, 1)


def test_repeated_lines_become_one_lb_ini_value() -> None:
    """Several bind, tcp-check and tcp-request connection lines, and use_backend SNI conditions, carry over."""
    text = TIMEOUTS + (
        "frontend fe\n  bind 127.0.0.1:8080\n  bind 127.0.0.1:8081\n"
        "  tcp-request connection reject if { src 127.0.0.9 }\n  tcp-request connection accept if { src 127.0.0.0/8 }\n"
        "  tcp-request inspect-delay 5s\n  tcp-request content accept if { req.ssl_hello_type 1 }\n"
        "  use_backend be if { req.ssl_sni -i db.example.com } || { req.ssl_sni -m end .example.org }\n"
        "  default_backend be\n"
        "backend be\n  option tcp-check\n  tcp-check connect\n  tcp-check send \"PING\\r\\n\"\n"
        "  tcp-check expect string +PONG\n  server s1 127.0.0.1:9000 check\n"
    )
    config, warnings = parse(text)
    fe, be = config.frontends[0], config.backends[0]
    assert [b.text for b in fe.binds] == ["127.0.0.1:8080", "127.0.0.1:8081"]
    assert [r.action for r in fe.source_rules] == ["reject", "accept"]
    assert fe.sni_routes[0].names == ("db.example.com", "*.example.org")
    assert [r.action for r in be.tcp_check_rules] == ["connect", "send", "expect"]
    assert be.tcp_check_rules[1].data == b"PING\r\n"
    assert warnings == []


def test_a_repeated_key_keeps_the_last_value_with_a_warning() -> None:
    """As in HAProxy, the last of two lines for the same key counts; l4lb warns."""
    text = TIMEOUTS + "backend be\n  retries 1\n  retries 5\n  server s1 127.0.0.1:9000\n"
    config, warnings = parse(text)
    assert config.backends[0].retries == 5
    assert [(w.line, "line 8" in w.message) for w in warnings] == [(9, True)]


def test_logs_follow_haproxys_rules() -> None:
    """Without a global log line nothing is logged, and a proxy logs only with 'log global'."""
    text = (
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n"
        "listen quiet\n  bind 127.0.0.1:8080\n  server s1 127.0.0.1:9000\n"
        "listen loud\n  log global\n  bind 127.0.0.1:8081\n  server s1 127.0.0.1:9001\n"
    )
    config, _ = parse(text)
    assert config.global_settings.log.kind == "none"
    assert [f.log for f in config.frontends] == [False, True]
    config, _ = parse("global\n  log stdout format raw local0\n" + text)
    assert config.global_settings.log.kind == "stdout"
    (problem,) = errors_of(TIMEOUTS.replace("log global", "log 127.0.0.1:514 local0") + "backend be\n")
    assert problem.line == 3 and "log global" in problem.message


def test_stats_socket_expose_fd_carries_over() -> None:
    """Debian's 'stats socket ... expose-fd listeners' means what it means in HAProxy: a new process may take the listeners."""
    text = "global\n  stats socket /run/l4lb-test.sock mode 660 level admin expose-fd listeners\n" + TIMEOUTS
    config, warnings = parse(text + "backend be\n  server s1 127.0.0.1:9000\n")
    assert config.global_settings.stats_socket is not None
    assert config.global_settings.stats_socket.path == "/run/l4lb-test.sock"
    assert config.global_settings.stats_socket.expose_fd
    assert warnings == []


def test_environment_variables_in_addresses() -> None:
    """Addresses may come from environment variables, as in HAProxy."""
    text = TIMEOUTS + 'listen app\n  bind "${LB_ADDR}:${LB_PORT}"\n  server s1 ${SRV:-x}\n'
    config, _ = parse(text.replace("${SRV:-x}", "$SRV"), {"LB_ADDR": "127.0.0.1", "LB_PORT": "8443", "SRV": "127.0.0.1:9000"})
    assert config.frontends[0].binds[0].text == "127.0.0.1:8443"
    assert config.backends[0].servers[0].port == 9000


def test_load_config_reads_either_format(tmp_path: Path) -> None:
    """load_config_with_warnings (twistd l4lb, l4lb check, a reload) reads a haproxy.cfg by its content."""
    path = tmp_path / "haproxy.cfg"
    path.write_text(TIMEOUTS + "backend be\n  server s1 127.0.0.1:9000\n  server s1 127.0.0.1:9001\n")
    with pytest.raises(ConfigError) as raised:
        load_config_with_warnings(str(path))
    assert [str(p).split(": ")[0] for p in raised.value.problems] == [f"{path}:9"]


def test_resolvers_sections_and_server_templates_carry_over() -> None:
    """A resolvers section, servers naming it and server-template lines read as their lb.ini forms do."""
    text = (
        "resolvers dns\n  nameserver ns1 127.0.0.1:5353\n  resolve_retries 2\n  timeout resolve 2s\n"
        "  hold valid 5s\n" + TIMEOUTS
        + "backend be\n  server-template web 3 _http._tcp.example.com resolvers dns init-addr none\n"
        "  server db db.example.com:5432 resolvers dns init-addr none\n"
    )
    ini = (
        "[resolvers dns]\nnameserver ns1 = 127.0.0.1:5353\nresolve_retries = 2\ntimeout resolve = 2s\n"
        "hold valid = 5s\n[global]\nlog = none\n[defaults]\nmode = tcp\nlog = global\ntimeout connect = 5s\n"
        "timeout client = 50s\ntimeout server = 50s\n[backend be]\n"
        "server-template web = 3 _http._tcp.example.com resolvers dns init-addr none\n"
        "server db = db.example.com:5432 resolvers dns init-addr none\n"
    )
    config, _ = parse(text)
    assert unlined(config) == unlined(parse_config(ini))
    assert config.resolvers and config.backends[0].templates


CFG_WORDS = [
    "global", "defaults", "frontend", "backend", "listen", "resolvers", "peers", "fe", "be", "from", "no",
    "option", "redispatch", "tcplog", "httplog", "log", "mode", "tcp", "http", "bind", "*:80", "127.0.0.1:8080",
    "server", "s1", "127.0.0.1:9000", "check", "weight", "2", "timeout", "connect", "client", "5s", "use_backend",
    "if", "{", "}", "req.ssl_sni", "-i", "-m", "end", "||", "tcp-check", "send", "expect", "string", "stats",
    "socket", "/run/x.sock", "expose-fd", "listeners", "daemon", "user", "default_backend", ".if", ".elif",
    ".else", ".endif", ".alert", "defined(X)", "tcp-request", "connection", "content", "accept", "reject",
    "src", '"', "'", "\\", "#", "$X", "${X}", "${", "format", "raw", "stdout", "/dev/log", "local0", "nameserver",
]


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(
        st.tuples(st.booleans(), st.lists(st.sampled_from(CFG_WORDS), min_size=0, max_size=7)),
        max_size=14,
    )
)
def test_any_haproxy_cfg_is_a_config_or_a_config_error(lines: List[Tuple[bool, List[str]]]) -> None:
    """Whatever a haproxy.cfg holds, reading it gives a configuration or a ConfigError at its lines, never a crash."""
    text = "\n".join(("    " if indented else "") + " ".join(words) for indented, words in lines) + "\n"
    try:
        parse(text, {"X": "127.0.0.1:1"})
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.file == "haproxy.cfg" and 0 <= problem.line <= len(lines), str(problem)
            assert problem.message.strip()
