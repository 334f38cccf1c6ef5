"""
C{l4lb convert}: C{haproxy.cfg} to C{lb.ini} and back.  Over generated
configurations, converting a file and converting the result back gives the
same configuration (the same objects once parsed), and comments stay.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l4lb.cli import main
from l4lb.config import ConfigError, parse_config
from l4lb.config.convert import haproxy_to_ini, ini_to_haproxy
from l4lb.config.haproxycfg import parse_haproxy_config_with_warnings
from tests.cfgkit import unlined

ROOT = Path(__file__).resolve().parent.parent

TIMES = st.sampled_from(["1s", "500ms", "5000", "2m", "50s"])
LOGS = st.sampled_from(
    [None, "stdout", "stderr", "none", "/dev/log local0", "syslog local3 info", "udp@127.0.0.1:514 local0"]
)
SERVER_OPTIONS = st.lists(
    st.sampled_from(
        [
            "check", "weight 3", "weight 0", "inter 1s", "rise 3", "fall 2", "backup", "maxconn 5",
            "maxqueue 2", "send-proxy", "slowstart 10s", "observe layer4", "on-marked-down shutdown-sessions",
            "agent-check agent-port 7000", "port 9999",
        ]
    ),
    max_size=4,
    unique=True,
)
CHECK_RULES = st.lists(
    st.sampled_from(
        ["connect", 'send "PING\\r\\n"', "expect string +PONG", "send-binary 50494e47", "expect rstring ^\\+OK",
         "send 'a b'", "expect ! string ERR"]
    ),
    min_size=1,
    max_size=4,
)
SOURCE_RULES = st.lists(
    st.sampled_from(
        ["reject if src 127.0.0.9", "accept if { src 127.0.0.0/8 ::1 }", "reject unless src 127.0.0.0/8",
         "reject if !src 127.0.0.0/8"]
    ),
    min_size=1,
    max_size=3,
)
SNI = st.lists(st.sampled_from(["a.example.com", "*.example.org", "b.example.net", "*.x.example.com"]), min_size=1, max_size=3, unique=True)
COMMENTS = st.sampled_from(["", "# a comment", "; another one", "#"])


@st.composite
def lb_ini(draw: st.DrawFn) -> str:
    """
    A valid lb.ini: a global, maybe a resolvers and a defaults section, one
    to three backends, frontends and listen sections using them, with
    comments.
    """
    lines: List[str] = [draw(COMMENTS), "[global]"]
    log = draw(LOGS)
    if log is not None:
        lines.append(f"log = {log}")
    if draw(st.booleans()):
        lines.append(f"maxconn = {draw(st.integers(1, 10000))}")
    if draw(st.booleans()):
        lines.append(f"spread-checks = {draw(st.integers(0, 50))}")
    if draw(st.booleans()):
        lines.append(f"tune.relay = {draw(st.sampled_from(['lean', 'classic']))}")
    resolvers = draw(st.booleans())
    if resolvers:
        lines += ["", "[resolvers dns]", "nameserver ns1 = 127.0.0.1:5353"]
        if draw(st.booleans()):
            lines.append(f"hold valid = {draw(TIMES)}")
        if draw(st.booleans()):
            lines.append(f"resolve_retries = {draw(st.integers(1, 5))}")
    proxy_log_in_defaults = False
    if draw(st.booleans()):
        lines += ["", draw(COMMENTS), "[defaults]", "mode = tcp"]
        for key in ("timeout connect", "timeout client", "timeout server"):
            lines.append(f"{key} = {draw(TIMES)}")
        if draw(st.booleans()):
            lines.append(f"retries = {draw(st.integers(0, 5))}")
        if draw(st.booleans()):
            lines.append(f"option redispatch = {draw(st.sampled_from(['true', 'false', '2', '-1']))}")
        if draw(st.booleans()):
            proxy_log_in_defaults = True
            lines.append(f"log = {draw(st.sampled_from(['global', 'none']))}")
        if draw(st.booleans()):
            lines.append("option dontlognull")
        if draw(st.booleans()):
            lines.append("default-server = inter 3s fall 5")
    backends = [f"b{i}" for i in range(draw(st.integers(1, 3)))]
    port = [9000]

    def servers() -> None:
        for n in range(draw(st.integers(0, 3))):
            port[0] += 1
            options = " ".join(draw(SERVER_OPTIONS))
            if resolvers and draw(st.booleans()):
                options += " resolvers dns init-addr none"
            lines.append(f"server s{n} = 127.0.0.1:{port[0]} {options}".rstrip())

    for name in backends:
        lines += ["", draw(COMMENTS), f"[backend {name}]"]
        lines.append(f"balance = {draw(st.sampled_from(['roundrobin', 'static-rr', 'leastconn', 'first', 'source', 'random(2)']))}")
        if draw(st.booleans()):
            lines.append(f"hash-type = {draw(st.sampled_from(['map-based', 'consistent']))}")
        if draw(st.booleans()):
            lines.append("option tcp-check = true")
            rules = draw(CHECK_RULES)
            lines.append(f"tcp-check = {rules[0]}")
            lines += [f"    {rule}" for rule in rules[1:]]
        if draw(st.booleans()):
            lines.append(f"timeout queue = {draw(TIMES)}")
        servers()
    for index in range(draw(st.integers(0, 2))):
        lines += ["", draw(COMMENTS), f"[frontend f{index}]"]
        port[0] += 1
        binds = [f"127.0.0.1:{port[0] + i * 100}" for i in range(draw(st.integers(1, 3)))]
        lines.append(f"bind = {binds[0]}  # the first")
        lines += [f"    {b}" for b in binds[1:]]
        lines.append(f"default_backend = {draw(st.sampled_from(backends))}")
        if not proxy_log_in_defaults and draw(st.booleans()):
            lines.append(f"log = {draw(st.sampled_from(['global', 'none']))}")
        if draw(st.booleans()):
            lines.append(f"maxconn = {draw(st.integers(1, 500))}")
        if draw(st.booleans()):
            rules = draw(SOURCE_RULES)
            lines.append(f"tcp-request connection = {rules[0]}")
            lines += [f"    {rule}" for rule in rules[1:]]
        if draw(st.booleans()):
            lines.append(f"use_backend {draw(st.sampled_from(backends))} = sni {' '.join(draw(SNI))}")
        lines.append(f"timeout client = {draw(TIMES)}")
        if draw(st.booleans()):
            lines.append(f"log-format = {draw(st.sampled_from(['tcplog', 'json']))}")
        if draw(st.booleans()):
            lines.append("option tcplog")
    if draw(st.booleans()):
        port[0] += 1
        lines += ["", "[listen l0]", f"bind = 127.0.0.1:{port[0] + 500}", "timeout client = 1s",
                  "timeout connect = 1s", "timeout server = 1s"]
        servers()
    return "\n".join(lines) + "\n"


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=lb_ini())
def test_converting_and_back_gives_the_same_configuration(text: str) -> None:
    """lb.ini -> haproxy.cfg -> lb.ini: each file parses to the same objects as the first."""
    original = parse_config(text, "lb.ini")
    cfg = ini_to_haproxy(text, "lb.ini")
    from_cfg, _ = parse_haproxy_config_with_warnings(cfg, "haproxy.cfg", {})
    assert unlined(from_cfg) == unlined(original), cfg
    ini, problems = haproxy_to_ini(cfg, "haproxy.cfg")
    assert [p for p in problems if p.severity == "error"] == []
    assert unlined(parse_config(ini, "lb.ini")) == unlined(original), ini
    assert ini_to_haproxy(ini, "lb.ini").count("\n") >= 1
    assert unlined(parse_haproxy_config_with_warnings(ini_to_haproxy(ini), "x", {})[0]) == unlined(original)


def test_comments_stay_where_they_were() -> None:
    """Whole-line and end-of-line comments keep their place in both directions."""
    cfg = (
        "# before everything\nglobal\n    # about the log\n    log stdout format raw local0  # raw lines\n\n"
        "listen app # the app\n    log global\n    bind 127.0.0.1:8080\n    timeout client 1s\n"
        "    timeout connect 1s\n    timeout server 1s\n    # the only server\n    server s1 127.0.0.1:9000 check\n"
    )
    ini, problems = haproxy_to_ini(cfg, "haproxy.cfg")
    assert problems == []
    assert ini.splitlines()[:4] == ["# before everything", "[global]", "# about the log", "log = stdout  # raw lines"]
    assert "[listen app]  # the app" in ini
    assert ini.index("# the only server") < ini.index("server s1 = 127.0.0.1:9000 check")
    back = ini_to_haproxy(ini, "lb.ini")
    assert back.splitlines()[:4] == ["# before everything", "global", "    # about the log", "    log stdout format raw local0  # raw lines"]
    assert "listen app  # the app" in back and "    # the only server" in back


def test_the_seed_converts_to_a_file_haproxy_accepts(tmp_path: Path) -> None:
    """etc/lb.ini converted is a haproxy.cfg that HAProxy itself finds valid, and converts back to the same objects."""
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    assert haproxy, "haproxy is needed to check the converted file: apt-get install haproxy"
    text = (ROOT / "etc" / "lb.ini").read_text()
    path = tmp_path / "haproxy.cfg"
    path.write_text(ini_to_haproxy(text, "etc/lb.ini"))
    result = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    ini, _ = haproxy_to_ini(path.read_text(), str(path))
    assert unlined(parse_config(ini)) == unlined(parse_config(text))


def test_convert_command_both_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """'l4lb convert' writes the other format, notes l4lb-only keys, and exits 1 on errors."""
    assert main(["convert", str(ROOT / "etc" / "haproxy.cfg"), "-o", str(tmp_path / "lb.ini")]) == 0
    converted = (tmp_path / "lb.ini").read_text()
    assert "[frontend layer4_frontend]" in converted
    assert "'log': l4lb sends its logs to one target" in capsys.readouterr().err
    udp = tmp_path / "udp.ini"
    udp.write_text("[frontend dns]\nmode = udp\nbind = 127.0.0.1:5353\ndefault_backend = d\n[backend d]\nmode = udp\nserver a = 127.0.0.1:53\n")
    assert main(["convert", str(udp)]) == 0
    out, err = capsys.readouterr()
    assert "frontend dns\n" in out and "    mode udp\n" in out
    assert f"{udp}:2: note: 'mode udp' is l4lb's own" in err
    bad = tmp_path / "bad.cfg"
    bad.write_text("frontend fe\n    bind 127.0.0.1:1\n    mode http\n    default_backend be\nbackend be\n")
    assert main(["convert", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert "[frontend fe]" in out and f"{bad}:3: [frontend fe] key 'mode':" in err


def test_check_command_reads_haproxy_cfg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """'l4lb check haproxy.cfg' validates HAProxy's format and reports at its lines."""
    assert main(["check", str(ROOT / "etc" / "haproxy.cfg")]) == 0
    assert "Configuration file is valid" in capsys.readouterr().out
    bad = tmp_path / "haproxy.cfg"
    bad.write_text("defaults\n    timeout connect 5 parsecs\n")
    assert main(["check", str(bad)]) == 1
    assert f"{bad}:2: [defaults] key 'timeout connect':" in capsys.readouterr().err


def test_an_ini_with_syntax_errors_is_not_converted(tmp_path: Path) -> None:
    """ini_to_haproxy refuses text that is not lb.ini, with the problems."""
    with pytest.raises(ConfigError):
        ini_to_haproxy("maxconn = 3\n", "lb.ini")



def test_keys_l4lb_cannot_read_are_written_as_they_are() -> None:
    """An lb.ini key with missing words converts to the same words for HAProxy to judge, not a crash."""
    cfg = ini_to_haproxy("[backend b]\noption\nserver-template\n", "lb.ini")
    assert cfg.splitlines()[-2:] == ["    option", "    server-template"]
