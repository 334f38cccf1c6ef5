"""
Run the same configurations under HAProxy and under l4lb on 127.0.0.1,
drive the same clients and faults through both, and print what an
operator would see from each, side by side, as Markdown:

    python bench/compare_haproxy.py                  # every group, about 30 s
    python bench/compare_haproxy.py --only logs,stats

Groups: C{verdicts} (C{haproxy -c} and C{l4lb check} on the corpus in
tests/e2e/haproxy_corpus), C{logs} (the tcplog line of each connection
case), C{stats} (C{show stat}, C{show servers state}, C{show info}),
C{runtime} (the runtime commands' replies), C{health} (seconds to DOWN
and back UP), C{balancing} (the servers picked, in order).

Needs Debian's C{haproxy} (C{apt-get install haproxy}) and l4lb installed
in the interpreter's environment (its C{twistd} and C{l4lb} are used).
The differences l4lb keeps on purpose are explained in docs/haproxy.md
("Differences measured against HAProxy"); the end-to-end tests
tests/e2e/test_haproxy_differential*.py assert them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.differential import check_verdict, haproxy_program  # noqa: E402
from tests.e2e.differential_logs import all_differences, as_rows, observe_logs  # noqa: E402
from tests.e2e.differential_runtime import (  # noqa: E402
    HEALTH,
    observe_balancing,
    observe_health,
    observe_runtime,
    observe_stats,
)
from tests.e2e.harness import l4lb_path  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "haproxy_corpus"

GROUPS = ("verdicts", "logs", "stats", "runtime", "health", "balancing")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "\\n")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(str(c)) for c in row) + " |" for row in rows]
    return out


def _mark(same: bool) -> str:
    return "same" if same else "**differs**"


def verdicts(directory: str) -> List[str]:
    """
    The corpus's verdicts from both checkers.
    """
    rows = []
    for cfg in sorted(CORPUS.glob("*.cfg")):
        theirs, _ = check_verdict([haproxy_program(), "-c", "-q", "-f", str(cfg)], directory)
        ours, said = check_verdict([l4lb_path(), "check", str(cfg.with_suffix(".ini"))], directory)
        first = said.splitlines()[0] if said and not ours else ""
        rows.append(
            (cfg.stem, "valid" if theirs else "invalid", "valid" if ours else "invalid",
             _mark(theirs == ours), first[:120])
        )
    return _table(("case", "haproxy -c", "l4lb check", "", "l4lb says"), rows)


def logs(directory: str) -> List[str]:
    """
    Each connection case's tcplog line (from the timings on) on both.
    """
    seen = observe_logs(directory)
    found = all_differences(seen)
    rows = [
        (case, theirs, ours, "; ".join(found[case]) or "same")
        for case, theirs, ours in as_rows(seen)
    ]
    return _table(("case", "HAProxy", "l4lb", "differences"), rows)


def stats(directory: str) -> List[str]:
    """
    C{show stat}, C{show servers state} and C{show info} values that
    differ after the same work.
    """
    out: List[str] = []
    for title, values in zip(("show stat", "show servers state", "show info"), observe_stats(directory)):
        theirs, ours = values["haproxy"], values["l4lb"]
        rows = [(k, theirs[k], ours.get(k, "(absent)")) for k in theirs if theirs[k] != ours.get(k)]
        out.append(f"{title}: {len(theirs)} values compared, {len(rows)} differ")
        out.append("")
        if rows:
            out += _table(("value", "HAProxy", "l4lb"), rows) + [""]
    return out


def runtime(directory: str) -> List[str]:
    """
    Every runtime command's reply on both.
    """
    answers = observe_runtime(directory)
    theirs, ours = answers["haproxy"], answers["l4lb"]
    rows = [(c, repr(theirs[c]), repr(ours[c]), _mark(theirs[c] == ours[c])) for c in theirs]
    return _table(("command", "HAProxy", "l4lb", ""), rows)


def health(directory: str) -> List[str]:
    """
    Seconds from a server's stop to DOWN and from its return to UP.
    """
    timings = observe_health(directory)

    def shown(value: Optional[float]) -> str:
        return "never" if value is None else f"{value:.2f}"

    rows = [
        (phase, shown(timings["haproxy"][phase]), shown(timings["l4lb"][phase]))
        for phase in ("down", "up")
    ]
    return [f"`{HEALTH}`", ""] + _table(("to", "HAProxy (s)", "l4lb (s)"), rows)


def balancing(directory: str) -> List[str]:
    """
    The servers picked by each algorithm, in order.
    """
    seen = observe_balancing(directory)
    rows = [
        (alg, " ".join(seen["haproxy"][alg]), " ".join(seen["l4lb"][alg]),
         _mark(seen["haproxy"][alg] == seen["l4lb"][alg]))
        for alg in seen["haproxy"]
    ]
    return _table(("algorithm", "HAProxy", "l4lb", ""), rows)


RUNNERS: Dict[str, Callable[[str], List[str]]] = {
    "verdicts": verdicts,
    "logs": logs,
    "stats": stats,
    "runtime": runtime,
    "health": health,
    "balancing": balancing,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Run the groups asked for and print the report.

    @return: The exit status: 0, or 2 when HAProxy is missing.
    """
    parser = argparse.ArgumentParser(
        prog="python bench/compare_haproxy.py",
        description="Compare what HAProxy and l4lb show for the same configurations and work.",
    )
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups: {','.join(GROUPS)}")
    args = parser.parse_args(argv)
    chosen = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = [g for g in chosen if g not in RUNNERS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; allowed: {', '.join(GROUPS)}")
    try:
        haproxy_program()
    except AssertionError as e:
        print(e, file=sys.stderr)
        return 2
    print("# l4lb against HAProxy")
    for group in chosen:
        with tempfile.TemporaryDirectory(prefix=f"compare-{group}-") as directory:
            print(f"\n## {group}\n")
            print("\n".join(RUNNERS[group](directory)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
