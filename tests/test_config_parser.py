"""
Tests for L{l4lb.config.parser}: sections, keys, inheritance and the
problems reported for a wrong C{lb.ini}.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import attr
import pytest

from l4lb.config import (
    Backend,
    BindSpec,
    Config,
    ConfigError,
    Frontend,
    GlobalSettings,
    LogTarget,
    Problem,
    ServerSpec,
    Timeouts,
    load_config,
    load_config_with_warnings,
    parse_config,
    parse_config_with_warnings,
)

ROOT = Path(__file__).resolve().parent.parent

SEED = """\
[global]
maxconn = 4096
log = stdout

[defaults]
mode = tcp
timeout connect = 5000ms
timeout client = 50s
timeout server = 50s
retries = 3
option redispatch = true

[frontend layer4_frontend]
bind = *:80
default_backend = layer4_backend

[backend layer4_backend]
balance = roundrobin
server server1 = 192.168.1.101:80 check
server server2 = 192.168.1.102:80 check inter 2000 rise 2 fall 3 weight 10
"""

TIMEOUTS = Timeouts(connect=5.0, client=50.0, server=50.0)

EXPECTED_SEED = Config(
    global_settings=GlobalSettings(maxconn=4096, log=LogTarget(kind="stdout")),
    frontends=(
        Frontend(
            name="layer4_frontend",
            binds=(BindSpec(endpoint="tcp:80", text="*:80", line=14),),
            default_backend="layer4_backend",
            timeouts=TIMEOUTS,
        ),
    ),
    backends=(
        Backend(
            name="layer4_backend",
            servers=(
                ServerSpec(
                    name="server1",
                    host="192.168.1.101",
                    port=80,
                    address="192.168.1.101",
                    check=True,
                    options=(("check", None),),
                    line=19,
                ),
                ServerSpec(
                    name="server2",
                    host="192.168.1.102",
                    port=80,
                    address="192.168.1.102",
                    weight=10,
                    check=True,
                    inter=2.0,
                    rise=2,
                    fall=3,
                    options=(
                        ("check", None),
                        ("inter", "2000"),
                        ("rise", "2"),
                        ("fall", "3"),
                        ("weight", "10"),
                    ),
                    line=20,
                ),
            ),
            balance="roundrobin",
            retries=3,
            redispatch=-1,
            timeouts=TIMEOUTS,
        ),
    ),
    source="etc/lb.ini",
)

TIMED = """\
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s

"""


def errors_of(text: str, source: str = "lb.ini") -> List[Problem]:
    """
    Parse C{text}, which must fail, and return its errors.
    """
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source)
    return caught.value.problems


def only_error(text: str) -> Problem:
    """
    Parse C{text}, which must have exactly one error, and return it.
    """
    problems = errors_of(text)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def backend_config(body: str) -> str:
    """
    A valid file around a backend section whose keys are C{body}.
    """
    return (
        TIMED
        + "[frontend fe]\nbind = :80\ndefault_backend = be\n\n[backend be]\n"
        + body
    )


def test_seed_parses_to_expected_objects() -> None:
    """The seed lb.ini parses, without warnings, to exactly these objects."""
    config, warnings = parse_config_with_warnings(SEED, "etc/lb.ini")
    assert warnings == []
    assert config == EXPECTED_SEED


def without_lines(config: Config) -> Config:
    """
    C{config} with every line number set to 0 and no source.
    """
    return attr.evolve(
        config,
        source="",
        frontends=tuple(
            attr.evolve(f, binds=tuple(attr.evolve(b, line=0) for b in f.binds))
            for f in config.frontends
        ),
        backends=tuple(
            attr.evolve(b, servers=tuple(attr.evolve(s, line=0) for s in b.servers))
            for b in config.backends
        ),
    )


def test_shipped_lb_ini_matches_seed() -> None:
    """etc/lb.ini, when present, parses to the seed's objects."""
    path = ROOT / "etc" / "lb.ini"
    config, warnings = load_config_with_warnings(str(path))
    assert warnings == []
    assert without_lines(config) == without_lines(EXPECTED_SEED)


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    """load_config reads the file and records its path as the source."""
    path = tmp_path / "lb.ini"
    path.write_text(SEED)
    config = load_config(str(path))
    assert config.source == str(path)
    assert config.backends[0].servers[1].weight == 10


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming the file, not an OSError."""
    path = str(tmp_path / "missing.ini")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problem = caught.value.problems[0]
    assert problem.file == path and problem.line == 0
    assert "cannot read the configuration" in str(caught.value)


def test_error_message_format() -> None:
    """An error reads 'file:line: [section] key 'k': message; allowed'."""
    problem = only_error(backend_config("balanse = roundrobin\nserver s = 10.0.0.1:80\n"))
    assert (problem.file, problem.line, problem.section, problem.key) == (
        "lb.ini",
        11,
        "backend be",
        "balanse",
    )
    text = str(problem)
    assert text.startswith(
        "lb.ini:11: [backend be] key 'balanse': unknown key;"
        " did you mean 'balance'? Allowed: balance, default-server,"
    )
    assert "server NAME" in text


def test_every_error_is_reported_together() -> None:
    """All errors of a file are collected, in line order, in one ConfigError."""
    text = """\
[global]
maxconn = lots

[defaults]
timeout client = 30 parsecs
frobnicate = yes

[frontend fe]
bind = 127.0.0.1:8080
default_backend = nowhere

[backend be]
server s1 = 127.0.0.1:9000 wieght 3
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "bad.ini")
    lines = [p.line for p in caught.value.problems]
    assert lines == [2, 5, 6, 10, 13]
    rendered = str(caught.value).splitlines()
    assert len(rendered) == 5
    assert all(line.startswith("bad.ini:") for line in rendered)
    assert "did you mean 'weight'?" in rendered[-1]


def test_config_error_carries_warnings() -> None:
    """A ConfigError also carries the warnings found."""
    with pytest.raises(ConfigError) as caught:
        parse_config("[frontend fe]\nbind = :80\ndefault_backend = x\n")
    assert [w.severity for w in caught.value.warnings] == ["warning"]


# Sections


@pytest.mark.parametrize(
    "header, message",
    [
        ("[server x]", "unknown section kind 'server'; allowed: backend, defaults,"),
        ("[fronted x]", "did you mean 'frontend'?"),
        ("[frontend]", "a frontend section needs a name: [frontend NAME]"),
        ("[backend a b]", "[backend NAME], with no spaces in NAME"),
        ("[global x]", "[global] takes no name"),
        ("[backend we/b]", "use letters, digits and - _ . :"),
        ("[DEFAULT]", "did you mean 'defaults'? Allowed: backend, defaults,"),
    ],
)
def test_bad_section_headers(header: str, message: str) -> None:
    """A malformed or unknown section header is an error at its line."""
    problems = errors_of(f"[global]\nmaxconn = 10\n{header}\nkey = value\n")
    assert problems[0].line == 3
    assert message in problems[0].message


def test_section_kind_is_case_insensitive() -> None:
    """[Frontend NAME] is a frontend; NAME keeps its case."""
    config = parse_config(
        TIMED + "[Frontend Web]\nbind = :80\nDefault_Backend = Pool\n"
        "[BACKEND Pool]\nserver A = 10.0.0.1:80\n"
    )
    assert config.frontends[0].name == "Web"
    assert config.backends[0].name == "Pool"
    assert config.backends[0].servers[0].name == "A"


def test_duplicate_section_is_an_error_at_the_second() -> None:
    """A section defined twice is an error at the second header."""
    problem = only_error(backend_config("server a = 10.0.0.1:80\n") + "[backend be]\n")
    assert problem.line == 12
    assert "duplicate section: [backend be] at line 10" in problem.message


def test_listen_clashes_with_backend_of_same_name() -> None:
    """A listen section and a backend of the same name cannot coexist."""
    problem = only_error(
        backend_config("server a = 10.0.0.1:80\n") + "[listen be]\nbind = :81\n"
    )
    assert problem.line == 12 and "already defines the backend 'be'" in problem.message


def test_frontend_and_backend_may_share_a_name() -> None:
    """As in HAProxy, a frontend and a backend may have the same name."""
    config = parse_config(
        TIMED + "[frontend web]\nbind = :80\ndefault_backend = web\n"
        "[backend web]\nserver a = 10.0.0.1:80\n"
    )
    assert config.frontends[0].default_backend == config.backends[0].name == "web"


def test_key_outside_section() -> None:
    """A key before the first section is an error at its line."""
    problems = errors_of("maxconn = 3\n[global]\nmaxconn = 3\n")
    assert problems[0].line == 1
    assert "outside any section" in problems[0].message


# Keys


def test_key_in_wrong_section_lists_allowed_keys() -> None:
    """A key of another section is an error listing what is allowed here."""
    problem = only_error("[global]\nbalance = roundrobin\n")
    assert problem.key == "balance" and problem.line == 2
    assert "not allowed in a [global] section" in problem.message
    allowed = problem.message.split("allowed here: ", 1)[1].split(", ")
    assert allowed == sorted(allowed)
    assert {"hard-stop-after", "log", "maxconn", "nbproc", "server-state-file"} <= set(allowed)
    assert problem.message.endswith("tune.relay")


def test_unknown_two_word_key_suggests() -> None:
    """A misspelt 'timeout' name suggests the nearest timeout."""
    problem = only_error(TIMED.replace("timeout server", "timeout srever"))
    assert problem.key == "timeout srever"
    assert "did you mean 'timeout server'?" in problem.message


def test_keywords_are_case_insensitive() -> None:
    """'Timeout Connect' and 'OPTION redispatch' are understood."""
    config = parse_config(
        "[defaults]\nTimeout Connect = 1s\nTIMEOUT client = 2s\ntimeout Server = 3s\n"
        "OPTION Redispatch\n[listen x]\nbind = :80\nserver a = 10.0.0.1:80\n"
    )
    assert config.backends[0].timeouts == Timeouts(connect=1.0, client=2.0, server=3.0)
    assert config.backends[0].redispatch == -1


def test_repeated_key_is_an_error_at_the_second() -> None:
    """A key set twice (in any case) is an error at its second line."""
    problem = only_error(TIMED.replace("timeout server = 50s", "timeout server = 50s\nTimeout Server = 5s"))
    assert problem.line == 5 and problem.key == "Timeout Server"
    assert "repeated key 'timeout server'; it is first set at line 4" in problem.message


def test_key_without_value() -> None:
    """A key that needs a value and has no '=' says what to write."""
    problem = only_error("[global]\nmaxconn\n")
    assert problem.line == 2
    assert "missing value; expected 'maxconn = an integer >= 1'" == problem.message


def test_forgotten_equals_sign() -> None:
    """'bind *:80' (no '=') says where the '=' goes."""
    problems = errors_of("[frontend fe]\nbind *:80\ndefault_backend = x\n")
    (problem,) = [p for p in problems if p.line == 2]
    assert problem.key == "bind *:80"
    assert "missing '=' after 'bind'; write 'bind = *:80'" in problem.message


@pytest.mark.parametrize(
    "line, message",
    [
        ("maxconn = 0", "0 is out of range; expected an integer >= 1"),
        ("maxconn = many", "'many' is not an integer; expected an integer >= 1"),
        ("log = sislog", "allowed: stdout, stderr, none, a file path"),
        ("spread-checks = 51", "expected an integer from 0 to 50"),
        ("tune.relay = splice", "lean, classic"),
        ("maxpipes = -1", "expected an integer >= 0"),
    ],
)
def test_global_value_errors(line: str, message: str) -> None:
    """Bad global values name the allowed values."""
    problem = only_error(f"[global]\n{line}\n")
    assert problem.line == 2 and problem.key == line.split(" =")[0]
    assert message in problem.message


@pytest.mark.parametrize(
    "text, expected", [("", None), ("maxpipes = 0\n", 0), ("maxpipes = 500\n", 500)]
)
def test_global_maxpipes(text: str, expected: object) -> None:
    """C{maxpipes} is read as given; unset, the service derives it from C{maxconn}."""
    assert parse_config(f"[global]\n{text}").global_settings.maxpipes == expected


@pytest.mark.parametrize("text, expected", [("", "lean"), ("tune.relay = classic\n", "classic")])
def test_global_relay(text: str, expected: str) -> None:
    """C{tune.relay} picks the TCP data path; the lean one is the default."""
    assert parse_config(f"[global]\n{text}").global_settings.relay == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("stdout", LogTarget("stdout")),
        ("stderr", LogTarget("stderr")),
        ("none", LogTarget("none")),
        ("/var/log/l4lb.log", LogTarget("file", "/var/log/l4lb.log")),
    ],
)
def test_global_log_targets(text: str, expected: LogTarget) -> None:
    """The global log is stdout, stderr, none or an absolute file path."""
    config = parse_config(f"[global]\nlog = {text}\nspread-checks = 5\n")
    assert config.global_settings == GlobalSettings(log=expected, spread_checks=5)


@pytest.mark.parametrize(
    "line, message",
    [
        ("mode = http", "l4lb is a Layer 4 balancer"),
        ("mode = ftp", "'ftp' is not allowed; did you mean 'tcp'? Allowed: tcp, udp"),
        ("retries = -1", "expected an integer >= 0"),
        ("option redispatch = maybe", "expected true, yes, on"),
        ("option tcplog = sometimes", "allowed: true, yes, on, 1, false, no, off, 0"),
        ("balance = leastconnn", "unknown balance algorithm 'leastconnn'"),
        ("balance = round robin", "expected NAME or NAME(ARGUMENTS)"),
        ("hash-type = ring", "allowed: map-based, consistent"),
        ("hash-balance-factor = 50", "expected 0 (off) or an integer >= 100"),
        ("timeout connect = 5x", "allowed: us, ms, s, m, h, d"),
        ("log = syslog", "allowed: global, none"),
    ],
)
def test_defaults_value_errors(line: str, message: str) -> None:
    """Bad values in [defaults] are errors at their line naming what is allowed."""
    problem = only_error(f"[defaults]\n{line}\n")
    assert problem.line == 2 and problem.section == "defaults"
    assert message in problem.message


def test_balance_with_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """'random(3)' is stored as balance 'random' with arguments ('3',)."""
    import l4lb.config.keywords as keywords

    monkeypatch.setattr(keywords, "available_balancers", lambda: ("random", "roundrobin"))
    config = parse_config(backend_config("balance = Random(3)\nserver a = 10.0.0.1:80\n"))
    assert (config.backends[0].balance, config.backends[0].balance_args) == ("random", ("3",))
    problem = only_error(backend_config("balance = random(0)\nserver a = 10.0.0.1:80\n"))
    assert "random(0): expected one number of draws from 1 to 100" in problem.message
    assert problem.line == 11


@pytest.mark.parametrize(
    "balance, message",
    [
        ("roundrobin(3)", "roundrobin(3): takes no arguments"),
        ("static-rr(1)", "static-rr(1): takes no arguments"),
        ("leastconn(1)", "leastconn(1): takes no arguments"),
        ("first(x)", "first(x): takes no arguments"),
        ("source(2)", "source(2): takes no arguments"),
        ("random(101)", "from 1 to 100"),
        ("random(2, 3)", "from 1 to 100"),
        ("random(two)", "from 1 to 100"),
        ("maglev(65536)", "prime table size"),
        ("maglev(1)", "prime table size"),
    ],
)
def test_balance_arguments_checked(balance: str, message: str) -> None:
    """Every algorithm's arguments are checked when the file is read, with its line."""
    problem = only_error(backend_config(f"balance = {balance}\nserver a = 10.0.0.1:80\n"))
    assert problem.key == "balance"
    assert problem.line == 11
    assert message in problem.message


@pytest.mark.parametrize(
    "balance, args",
    [("random", ()), ("random(1)", ("1",)), ("maglev(251)", ("251",)), ("static-rr", ())],
)
def test_balance_arguments_accepted(balance: str, args: tuple) -> None:
    """Valid arguments are kept as written."""
    config = parse_config(backend_config(f"balance = {balance}\nserver a = 10.0.0.1:80\n"))
    assert config.backends[0].balance_args == args


def test_unknown_balance_lists_available(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown algorithm lists the installed ones."""
    import l4lb.config.keywords as keywords

    monkeypatch.setattr(keywords, "available_balancers", lambda: ("leastconn", "roundrobin"))
    problem = only_error(backend_config("balance = leastcon\n"))
    assert problem.message == (
        "unknown balance algorithm 'leastcon'; did you mean 'leastconn'?"
        " Allowed: leastconn, roundrobin"
    )


@pytest.mark.parametrize(
    "value, expected",
    [("true", -1), ("yes", -1), ("on", -1), ("", -1), ("false", 0), ("off", 0), ("0", 0), ("1", 1), ("3", 3), ("-2", -2)],
)
def test_redispatch_values(value: str, expected: int) -> None:
    """option redispatch: booleans, or HAProxy's non-zero interval."""
    line = "option redispatch" + (f" = {value}" if value else "")
    config = parse_config(backend_config(f"{line}\nserver a = 10.0.0.1:80\n"))
    assert config.backends[0].redispatch == expected


def test_bare_options_mean_true() -> None:
    """'option dontlognull' without a value turns the option on."""
    config = parse_config(
        TIMED + "[listen web]\nbind = :80\noption dontlognull\noption tcplog\n"
        "option allbackups = yes\nserver a = 10.0.0.1:80\n"
    )
    assert config.frontends[0].dontlognull is True
    assert config.backends[0].allbackups is True


# Inheritance and listen


def test_defaults_are_inherited_and_overridden() -> None:
    """A frontend or backend inherits [defaults] keys it does not set itself."""
    config = parse_config(
        """\
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s
retries = 5
maxconn = 100
log = none
option dontlognull

[frontend fe]
bind = :80
default_backend = be
timeout client = 0
maxconn = 7

[backend be]
retries = 1
timeout tunnel = 1h
server a = 10.0.0.1:80
"""
    )
    frontend, backend = config.frontends[0], config.backends[0]
    assert frontend.maxconn == 7
    assert frontend.log is False and frontend.dontlognull is True
    assert frontend.timeouts.client is None
    assert backend.retries == 1
    assert backend.timeouts == Timeouts(connect=5.0, client=50.0, server=50.0, tunnel=3600.0)


def test_listen_is_a_frontend_and_a_backend() -> None:
    """[listen NAME] gives a frontend NAME whose default backend is NAME."""
    config = parse_config(
        TIMED
        + "[listen web]\nbind = 127.0.0.1:8080\nmaxconn = 50\nbalance = roundrobin\n"
        "retries = 2\nserver a = 10.0.0.1:80\nserver b = 10.0.0.2:80 backup\n"
    )
    (frontend,) = config.frontends
    (backend,) = config.backends
    assert frontend.name == "web" and frontend.default_backend == "web"
    assert frontend.maxconn == 50
    assert frontend.binds == (BindSpec("tcp:8080:interface=127.0.0.1", "127.0.0.1:8080", 7),)
    assert backend.name == "web" and backend.retries == 2
    assert [s.backup for s in backend.servers] == [False, True]


def test_listen_rejects_default_backend() -> None:
    """default_backend is not a listen key."""
    problem = only_error(TIMED + "[listen web]\nbind = :80\ndefault_backend = x\nserver a = 10.0.0.1:80\n")
    assert problem.key == "default_backend" and problem.line == 8
    assert "not allowed in a [listen] section" in problem.message


def test_listen_without_bind_is_only_a_backend() -> None:
    """As in HAProxy, a listen section without bind acts as a backend."""
    config, warnings = parse_config_with_warnings(
        TIMED + "[frontend fe]\nbind = :80\ndefault_backend = pool\n"
        "[listen pool]\nserver a = 10.0.0.1:80\n"
    )
    assert [f.name for f in config.frontends] == ["fe"]
    assert [b.name for b in config.backends] == ["pool"]
    assert warnings == []


# References and required keys


def test_default_backend_must_exist() -> None:
    """default_backend naming no backend is an error listing the backends."""
    problem = only_error(
        TIMED + "[frontend fe]\nbind = :80\ndefault_backend = web1\n"
        "[backend web]\nserver a = 10.0.0.1:80\n[backend db]\nserver a = 10.0.0.2:80\n"
    )
    assert problem.line == 8 and problem.key == "default_backend"
    assert problem.message == (
        "no backend named 'web1'; did you mean 'web'?; backends defined: web, db"
    )


def test_frontend_needs_bind_and_default_backend() -> None:
    """A frontend without bind or default_backend is an error at its header."""
    problems = errors_of(TIMED + "[frontend fe]\nmaxconn = 3\n")
    assert [(p.line, p.key) for p in problems] == [(6, "bind"), (6, "default_backend")]
    assert "needs at least one bind" in problems[0].message
    assert "backends defined: none" in problems[1].message


# Warnings


def test_backend_without_servers_is_a_warning() -> None:
    """A backend with no server is valid, with a warning at its header."""
    config, warnings = parse_config_with_warnings(backend_config(""))
    assert config.backends[0].servers == ()
    assert [(w.line, w.severity) for w in warnings] == [(10, "warning")]
    assert "<NOSRV>" in warnings[0].message


def test_missing_timeouts_warn_like_haproxy() -> None:
    """Missing client/connect/server timeouts are warnings, not errors."""
    _, warnings = parse_config_with_warnings(
        "[frontend fe]\nbind = :80\ndefault_backend = be\n[backend be]\nserver a = 10.0.0.1:80\n"
    )
    assert [(w.line, w.section) for w in warnings] == [(1, "frontend fe"), (4, "backend be")]
    assert "timeout client" in warnings[0].message
    assert "timeout connect, timeout server" in warnings[1].message
    assert str(warnings[0]).startswith("<memory>:1: warning: [frontend fe]")


def test_timeout_on_the_wrong_side_is_a_warning() -> None:
    """A server-side timeout in a frontend is ignored with HAProxy's warning."""
    config, warnings = parse_config_with_warnings(
        TIMED + "[frontend fe]\nbind = :80\ndefault_backend = be\ntimeout server = 1s\n"
        "[backend be]\ntimeout client = 1s\nserver a = 10.0.0.1:80\n"
    )
    assert [(w.line, w.key) for w in warnings] == [(9, "timeout server"), (11, "timeout client")]
    assert "frontend has no backend capability" in warnings[0].message
    assert "backend has no frontend capability" in warnings[1].message
    assert config.frontends[0].timeouts.server == 50.0
