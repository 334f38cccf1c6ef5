"""
HAProxy 2.6 (Debian's C{haproxy}) as the reference: the same
configuration run under HAProxy and under l4lb, the same clients and
faults driven through both, and what an operator sees compared: the
verdict on valid and broken configurations, C{show stat}, C{show servers
state} and C{show info} after the same work, the runtime commands'
replies, health-check timings and the balancing order. (The tcplog lines
are compared in C{test_haproxy_differential_logs}.)

Where l4lb differs on purpose or has not caught up, the difference is
listed below with its reason, as in the section "Differences measured
against HAProxy" of docs/haproxy.md; every test asserts that the
differences found are exactly the listed ones, so that a new one fails
and a fixed one is noticed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Set

from .differential import check_verdict, haproxy_program
from .differential_runtime import (
    HEALTH,
    cycle_counts,
    observe_balancing,
    observe_health,
    observe_runtime,
    observe_stats,
)
from .harness import l4lb_path

CORPUS = Path(__file__).resolve().parent / "haproxy_corpus"
"""Each case as NAME.cfg (HAProxy) and NAME.ini (l4lb), the same
configuration; names start with C{valid-} or C{broken-} for the verdict
both must give, others are listed in L{VERDICT_DIFFERENCES}."""

VERDICT_DIFFERENCES: Mapping[str, str] = {
    "broken-maxconn": "HAProxy reads 'maxconn lots' as 0 and accepts it; l4lb refuses a"
    " value that is not a number",
    "http-mode": "l4lb is a Layer 4 balancer: 'mode http' is an error, not a different mode",
}
"""Cases where l4lb's verdict differs from HAProxy's, and why."""


def corpus_cases() -> List[str]:
    """
    The corpus's case names, each present in both formats.
    """
    names = sorted(p.stem for p in CORPUS.glob("*.cfg"))
    assert names and all((CORPUS / f"{n}.ini").exists() for n in names)
    return names


def test_same_verdicts_as_haproxy_check(tmp_path: Path) -> None:
    """
    Every configuration of the corpus is called valid by C{l4lb check}
    exactly when C{haproxy -c -f} calls its HAProxy form valid, except
    the listed cases, where HAProxy accepts what l4lb refuses.
    """
    program = haproxy_program()
    verdicts: Dict[str, Dict[str, bool]] = {}
    for name in corpus_cases():
        theirs, _ = check_verdict([program, "-c", "-q", "-f", str(CORPUS / f"{name}.cfg")], str(tmp_path))
        ours, said = check_verdict([l4lb_path(), "check", str(CORPUS / f"{name}.ini")], str(tmp_path))
        verdicts[name] = {"haproxy": theirs, "l4lb": ours}
        if name.startswith("broken-") and not ours:
            # Every refusal names the file and line, as HAProxy's do.
            assert f"{name}.ini:" in said, said
    wrong = {
        name: v
        for name, v in verdicts.items()
        if name.startswith(("valid-", "broken-"))
        and name not in VERDICT_DIFFERENCES
        and not (v["haproxy"] == v["l4lb"] == name.startswith("valid-"))
    }
    assert wrong == {}
    differing = {name for name, v in verdicts.items() if v["haproxy"] != v["l4lb"]}
    assert differing == set(VERDICT_DIFFERENCES)
    assert all(verdicts[name] == {"haproxy": True, "l4lb": False} for name in VERDICT_DIFFERENCES)


SECONDS_TOLERANCE = 3
"""Seconds two ages (C{lastchg}, uptime) may differ by: the two processes
start and run the work one after the other."""

AGES = {"lastchg", "srv_time_since_last_change", "Uptime_sec"}
"""Values that are ages in seconds, compared within L{SECONDS_TOLERANCE}."""

STAT_DIFFERENCES: Mapping[str, str] = {
    "be_err/s1.stot": "HAProxy counts every connection attempt to a server as a session of"
    " it (2 with one retry); l4lb counts the connection once",
}
"""C{show stat} values that differ after the same work, and why."""

STATE_DIFFERENCES: Mapping[str, str] = {
    "s1.be_id": "HAProxy numbers all proxies (frontends and its own) in one sequence;"
    " l4lb numbers backends from 1 in file order",
    "s2.be_id": "as s1.be_id",
    "s2.srv_check_status": "a server without check: HAProxy writes 1 (INI), l4lb 0",
    "s2.srv_check_health": "a server without check: HAProxy writes its rise (2), l4lb 0",
}
"""C{show servers state} columns that differ, and why."""


def _differences(theirs: Mapping[str, str], ours: Mapping[str, str]) -> Dict[str, str]:
    found = {}
    for key, value in theirs.items():
        mine = ours.get(key, "(absent)")
        if key.rsplit(".", 1)[-1] in AGES and value.isdigit() and mine.isdigit():
            if abs(int(value) - int(mine)) <= SECONDS_TOLERANCE:
                continue
        if value != mine:
            found[key] = f"HAProxy {value!r}, l4lb {mine!r}"
    return found


def test_counters_state_and_info_match_haproxy(tmp_path: Path) -> None:
    """
    After the same work (echo exchanges and a held connection, a refused
    server retried once, a server that resets), C{show stat} has the same
    scur, stot, bin, bout, econ, eresp, wretr, wredis, status, chkfail,
    chkdown and lastchg on the frontend, backend and server rows; C{show
    servers state} and C{show info} the same values, but for the listed
    differences.
    """
    haproxy_program()
    stats, state, info = observe_stats(str(tmp_path))
    found = _differences(stats["haproxy"], stats["l4lb"])
    assert set(found) == set(STAT_DIFFERENCES), found
    assert stats["l4lb"]["be_err/s1.econ"] == "1" and stats["l4lb"]["be_err/s1.wretr"] == "1"
    assert stats["l4lb"]["fe_st/FRONTEND.scur"] == "1"
    found = _differences(state["haproxy"], state["l4lb"])
    assert set(found) == set(STATE_DIFFERENCES), found
    assert _differences(info["haproxy"], info["l4lb"]) == {}


REPLY_DIFFERENCES: Mapping[str, str] = {
    "set server be_rt/nope state drain": "l4lb names what it did not find",
    "set server nope/s1 state drain": "l4lb names what it did not find",
    "disable server nope/s1": "l4lb names what it did not find",
    "enable server be_rt/nope": "l4lb names what it did not find",
    "get weight be_rt/nope": "l4lb names what it did not find",
    "set weight nope/s1 3": "l4lb names what it did not find",
    "set maxconn frontend nope 10": "l4lb names what it did not find",
    "set server be_rt/s1 state bogus": "l4lb's message names the value and the allowed ones",
    "enable server be_rt": "l4lb's message adds the usage",
    "get weight be_rt/s2": "a percentage is rounded up by l4lb (50% of 1 is 1, so that a"
    " non-zero share stays non-zero), down by HAProxy (0)",
}
"""Commands whose reply differs, and why; each still starts with
HAProxy's words up to the first name or punctuation."""


def test_runtime_replies_match_haproxy(tmp_path: Path) -> None:
    """
    The runtime commands both have (set weight, get weight, set server
    state and weight, enable and disable server and health, shutdown
    sessions, set maxconn frontend, clear counters, show servers state of
    an unknown backend) answer as HAProxy does, byte for byte, but for
    the listed messages, which keep HAProxy's first words.
    """
    haproxy_program()
    answers = observe_runtime(str(tmp_path))
    theirs, ours = answers["haproxy"], answers["l4lb"]
    differing = {c for c in theirs if theirs[c] != ours[c]}
    assert differing == set(REPLY_DIFFERENCES), {c: (theirs[c], ours[c]) for c in differing}
    for command in REPLY_DIFFERENCES:
        if command.startswith("set server be_rt/s1 state") or command == "get weight be_rt/s2":
            continue
        head = theirs[command].split(".")[0].split("'")[0].strip()
        assert ours[command].startswith(head), (command, ours[command])


HEALTH_TOLERANCE = 0.35
"""Seconds two health timings may differ by: checks run every 200 ms
(C{inter 200}), each balancer on its own schedule, polled every 20 ms."""


def test_health_timings_match_haproxy(tmp_path: Path) -> None:
    """
    With C{inter 200 rise 2 fall 3}, a server that stops is shown DOWN,
    and shown UP again after it comes back, as soon in l4lb as in HAProxy
    (within one interval and scheduling).
    """
    haproxy_program()
    assert HEALTH == "check inter 200 rise 2 fall 3"
    timings = observe_health(str(tmp_path))
    for phase in ("down", "up"):
        theirs: Optional[float] = timings["haproxy"][phase]
        ours: Optional[float] = timings["l4lb"][phase]
        assert theirs is not None and ours is not None, timings
        assert abs(theirs - ours) <= HEALTH_TOLERANCE, timings


ORDER_DIFFERENCES: Set[str] = {"roundrobin", "static-rr", "leastconn"}
"""Algorithms whose exact order differs (the shares per cycle do not):
HAProxy's weighted round robin orders servers with equal turns
differently, and its leastconn breaks ties by position in its tree where
l4lb rotates."""


def test_balancing_matches_haproxy(tmp_path: Path) -> None:
    """
    Over whole cycles, C{roundrobin} and C{static-rr} with weights 3, 1, 2
    give each server the same share as HAProxy; C{first} fills servers in
    the same order; C{leastconn} sends the next connection to the server
    left with the fewest, as HAProxy does.
    """
    haproxy_program()
    seen = observe_balancing(str(tmp_path))
    theirs, ours = seen["haproxy"], seen["l4lb"]
    for algorithm in ("roundrobin", "static-rr"):
        assert cycle_counts(ours[algorithm], 6) == cycle_counts(theirs[algorithm], 6), seen
        assert cycle_counts(ours[algorithm], 6)[0] == {"e1": 3, "e2": 1, "e3": 2}
    assert ours["first"] == theirs["first"] == ["h1", "h1", "h2", "h2", "h3"]
    # The connection closed was the second; the next pick fills its place.
    assert ours["leastconn"][:4] == theirs["leastconn"][:4]
    assert ours["leastconn"][3] == ours["leastconn"][1]
    differing = {a for a in theirs if theirs[a] != ours[a]}
    assert differing <= ORDER_DIFFERENCES, seen
