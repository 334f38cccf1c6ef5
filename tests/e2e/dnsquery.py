"""
A DNS client for the UDP end-to-end tests, run as its own process:

    python dnsquery.py PORT COUNT [CONCURRENCY]

It sends C{COUNT} A queries to 127.0.0.1:PORT with Twisted's resolver
(each query from its own source port), at most C{CONCURRENCY} at once, and
prints one JSON object: how many answers carried each address, and how
many queries failed.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any, Dict, List

from twisted.internet import defer, task
from twisted.names import client, dns

TIMEOUTS = (2, 4)
"""Seconds to wait for each attempt of one query."""


@defer.inlineCallbacks
def run(reactor: Any, port: int, count: int, concurrency: int) -> Any:
    """
    Send the queries and print the tally.
    """
    resolver = client.Resolver(servers=[("127.0.0.1", port)], reactor=reactor)
    limit = defer.DeferredSemaphore(concurrency)
    answers: Counter = Counter()
    failures: List[str] = []

    def one(i: int) -> "defer.Deferred[None]":
        d = resolver.lookupAddress(f"q{i}.example.com", timeout=TIMEOUTS)

        def got(result: Any) -> None:
            records = [r for r in result[0] if r.type == dns.A]
            if records:
                answers[records[0].payload.dottedQuad()] += 1
            else:
                failures.append("empty answer")

        d.addCallback(got)
        d.addErrback(lambda f: failures.append(f.getErrorMessage() or f.type.__name__))
        return d

    yield defer.gatherResults([limit.run(one, i) for i in range(count)])
    tally: Dict[str, Any] = {"answers": dict(answers), "failures": len(failures)}
    if failures:
        tally["first_failure"] = failures[0]
    print(json.dumps(tally), flush=True)


if __name__ == "__main__":
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    task.react(run, (int(sys.argv[1]), int(sys.argv[2]), concurrency))
