"""
HAProxy as the reference for the tcplog line: the same connection cases
(a normal exchange, a refused server, a connect timeout, client and
server idle timeouts, a queue timeout, a connection served from the queue,
a source rule, a server closing first, a client aborting) driven through
HAProxy 2.6 and l4lb, and their lines compared field by field.
"""

from __future__ import annotations

from pathlib import Path

from typing import Dict, Mapping, Set

from .differential import haproxy_program
from .differential_logs import all_differences, as_rows, observe_logs

LOG_DIFFERENCES: Mapping[str, Set[str]] = {
    # With option redispatch, roundrobin and more than one usable server,
    # HAProxy redispatches every retry at once; l4lb retries the same
    # server after a pause and redispatches on the last retry, as HAProxy
    # documents for option redispatch. (docs/haproxy.md)
    "redispatched": {"retries", "tc", "tt"},
}
"""The fields that differ on purpose, by case."""


def test_tcplog_lines_match_haproxy(tmp_path: Path) -> None:
    """
    For every case, l4lb logs what HAProxy logs: the server (or
    C{<NOSRV>}), bytes, termination state, the five connection counts
    (backend and server leaving out the logged connection), retries,
    queue positions (a queued connection counts its own), and timings
    within a tolerance with the same phases reached (a connect timeout
    retried at once, not after a pause); a redispatched connection
    differs only in the listed fields.
    """
    haproxy_program()
    seen = observe_logs(str(tmp_path))
    differences: Dict[str, Set[str]] = {
        case: {line.split(":")[0] for line in found}
        for case, found in all_differences(seen).items()
        if found
    }
    table = "\n".join(f"{case}: HAProxy {a} | l4lb {b}" for case, a, b in as_rows(seen))
    assert differences == LOG_DIFFERENCES, table
    assert seen["redispatched"]["l4lb"].server == seen["redispatched"]["haproxy"].server == "s2"
    terminations = {case: sides["l4lb"].termination for case, sides in seen.items()}
    assert terminations == {
        "normal": "--",
        "refused": "SC",
        "connect-timeout": "sC",
        "client-idle": "cD",
        "server-idle": "sD",
        "queue-timeout": "sQ",
        "queued-then-served": "--",
        "source-rule": "PR",
        "redispatched": "--",
        "server-closes-first": "--",
        "client-aborts": "CD",
    }
