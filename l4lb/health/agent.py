"""
Agent checks (C{agent-check}): ask a small agent next to the server for
the server's weight and state.

l4lb connects to C{agent-addr} (default: the server's address) on
C{agent-port}, sends C{agent-send} if set, and reads one line.  The line
holds words separated by spaces, tabs or commas, optionally followed by
C{#} and a description:

- C{75%}: set the weight to 75% of the configured weight;
- C{weight:N}: set the weight to N (0-256);
- C{maxconn:N}: set the server's connection limit (0: none);
- C{ready}, C{drain}, C{maint}: set the administrative state;
- C{up}, or C{down} (also C{fail}, C{stopped}): the agent's view of the
  server's health.  C{down} marks the server DOWN at once, whatever its
  health checks say; C{up} lifts that.

Example: C{75%,maxconn:30,drain # nightly backup}.  Words that are not
understood are ignored.  An agent that cannot be reached changes nothing.
"""

from __future__ import annotations

import re
from typing import Any, Callable, List, Optional

from zope.interface import implementer

from l4lb.config.model import TcpCheckRule
from l4lb.config.tcpcheck import to_bytes, unescape
from l4lb.health.status import L7OK, L7RSP, L7STS, AgentReply, CheckResult
from l4lb.health.tcp import READ_LINE, TcpCheck, _Run
from l4lb.interfaces import IHealthCheck

_SEPARATORS = re.compile(r"[ \t,]+")
_DOWN_WORDS = ("down", "fail", "stopped")
_ADMIN_WORDS = ("ready", "drain", "maint")


def parse_agent_reply(line: str) -> AgentReply:
    """
    Read an agent's reply line (HAProxy's grammar, see the module).
    """
    text, _, description = line.partition("#")
    weight_percent: Optional[int] = None
    weight: Optional[int] = None
    maxconn: Optional[int] = None
    admin: Optional[str] = None
    health: Optional[str] = None
    ignored: List[str] = []
    for word in _SEPARATORS.split(text.strip()):
        if not word:
            continue
        lowered = word.lower()
        if lowered.endswith("%") and lowered[:-1].isdigit():
            weight_percent = int(lowered[:-1])
        elif lowered.startswith("weight:") and lowered[7:].isdigit() and int(lowered[7:]) <= 256:
            weight = int(lowered[7:])
        elif lowered.startswith("maxconn:") and lowered[8:].isdigit():
            maxconn = int(lowered[8:])
        elif lowered in _ADMIN_WORDS:
            admin = lowered
        elif lowered == "up":
            health = "up"
        elif lowered in _DOWN_WORDS:
            health = "down"
        else:
            ignored.append(word)
    return AgentReply(
        weight_percent=weight_percent,
        weight=weight,
        maxconn=maxconn,
        admin=admin,
        health=health,
        description=description.strip(),
        ignored=tuple(ignored),
    )


def reply_result(line: str) -> CheckResult:
    """
    The result of an agent check that got C{line}: C{L7STS} when the agent
    says the server is down, C{L7RSP} when it said nothing understood,
    C{L7OK} otherwise.  The description is the line, trimmed.
    """
    reply = parse_agent_reply(line)
    shown = line.strip()
    if reply.health == "down":
        return CheckResult(L7STS, shown, agent=reply)
    understood = (
        reply.weight_percent is not None
        or reply.weight is not None
        or reply.maxconn is not None
        or reply.admin is not None
        or reply.health is not None
    )
    if not understood:
        return CheckResult(L7RSP, f"Ignoring unknown reply {shown!r}" if shown else "Empty reply")
    return CheckResult(L7OK, shown, agent=reply)


@implementer(IHealthCheck)
class AgentCheck(TcpCheck):
    """
    An agent check: connect, send C{agent-send}, read one line.
    """

    kind = "agent"

    def __init__(
        self,
        reactor: Any,
        address: Callable[[], Optional[str]],
        port: int,
        inter: float,
        send: Optional[str] = None,
        timeout_check: Optional[float] = None,
        timeout_connect: Optional[float] = None,
    ) -> None:
        """
        @param send: C{agent-send} as written; its escapes (C{\\n}, ...)
            are applied here.
        """
        rules = [TcpCheckRule("connect")]
        if send:
            data = to_bytes(unescape(send))
            rules.append(TcpCheckRule("send", data=data, pattern=send))
        rules.append(TcpCheckRule(READ_LINE))
        super().__init__(reactor, address, port, inter, rules, timeout_check, timeout_connect)
        self.sequence = False

    def finish(self, run: _Run, result: CheckResult) -> CheckResult:
        """
        Read the agent's line once the conversation ended well.
        """
        if not result.ok:
            return result
        data = run.result_data
        end = len(data)
        for mark in (b"\n", b"\r"):
            found = data.find(mark)
            if found != -1:
                end = min(end, found)
        line = data[:end].decode("latin-1")
        outcome = reply_result(line)
        return CheckResult(outcome.status, outcome.description, result.duration, outcome.agent)

    def __repr__(self) -> str:
        return f"<AgentCheck port {self.port}>"
