"""
C{accepted_payload_size} against a real name server: Debian's C{dnsmasq}
(L{dnsdaemons.Dnsmasq}) answers a name with 40 addresses, more than fits
in 512 bytes, and l4lb's querier (L{l4lb.dns.NamesQuerier}, run in a child
process on a real reactor) asks it over UDP only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from .dnsdaemons import ZONE, Dnsmasq, HostRecord

NAME = f"many.{ZONE}"

#: Resolves argv[4] with a querier announcing argv[3] bytes, on the UDP name
#: server argv[1]:argv[2], then prints the addresses (or the failure's
#: kind) as JSON.  With argv[5] "udp" the TCP retry of a truncated answer
#: is made to fail, so that only an answer in one datagram succeeds.
ASK = """
import json, sys
from twisted.internet import defer, task
from l4lb.config.dns import Nameserver, ResolversSpec
from l4lb.dns import NamesQuerier

def main(reactor):
    spec = ResolversSpec("dns", (Nameserver("ns1", sys.argv[1], int(sys.argv[2])),),
                         accepted_payload_size=int(sys.argv[3]), resolve_retries=1,
                         timeout_retry=2.0)
    querier = NamesQuerier(spec, reactor)
    if sys.argv[5] == "udp":
        querier._fallback.queryTCP = lambda *a, **k: defer.fail(RuntimeError("TCP asked"))
    d = querier.records(sys.argv[4], False, "ipv4")
    d.addCallback(lambda found: print(json.dumps({"addresses": [r.address for r in found]})))
    d.addErrback(lambda f: print(json.dumps({"failed": getattr(f.value, "kind", repr(f.value))})))
    return d

task.react(main)
"""


def ask(server: Dnsmasq, size: int, udp_only: bool) -> Dict[str, Any]:
    """
    What l4lb's querier, announcing C{size}, gets for L{NAME}; with
    C{udp_only}, a TCP retry fails.
    """
    done = subprocess.run(
        [
            sys.executable, "-c", ASK, server.address, str(server.port), str(size), NAME,
            "udp" if udp_only else "any",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    result: Dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Any:
    """
    A dnsmasq giving L{NAME} 40 addresses (an answer of about 680 bytes).
    """
    records = [HostRecord(NAME, f"127.0.2.{i}", f"::ffff:127.0.2.{i}") for i in range(1, 41)]
    server = Dnsmasq("many", records, tmp_path / "dnsmasq").start()
    yield server
    server.close()


def test_announced_payload_size_brings_large_answers_over_udp(dnsmasq: Dnsmasq) -> None:
    """With accepted_payload_size 4096 the 40 addresses come in one UDP
    datagram (dnsmasq honours the EDNS0 OPT record l4lb sends, and its own
    OPT record in the answer is skipped); with the default 512 the answer
    comes truncated, so UDP alone gets nothing and the TCP retry gets
    them all."""
    every = sorted(f"127.0.2.{i}" for i in range(1, 41))
    assert sorted(ask(dnsmasq, 4096, udp_only=True)["addresses"]) == every
    assert ask(dnsmasq, 512, udp_only=True) == {"failed": "other"}
    assert sorted(ask(dnsmasq, 512, udp_only=False)["addresses"]) == every
