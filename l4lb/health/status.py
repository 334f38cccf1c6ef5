"""
Check status codes, as HAProxy's stats show them, and the result of one
check.
"""

from __future__ import annotations

from typing import Optional, Tuple

import attr

UNK = "UNK"
INI = "INI"
SOCKERR = "SOCKERR"
L4OK = "L4OK"
L4TOUT = "L4TOUT"
L4CON = "L4CON"
L6OK = "L6OK"
L6TOUT = "L6TOUT"
L6RSP = "L6RSP"
L7OK = "L7OK"
L7TOUT = "L7TOUT"
L7RSP = "L7RSP"
L7STS = "L7STS"
HANA = "HANA"

#: What each code means, in HAProxy's words (the C{reason} of log lines).
DESCRIPTIONS = {
    UNK: "Unknown",
    INI: "Initializing",
    SOCKERR: "Socket error",
    L4OK: "Layer4 check passed",
    L4TOUT: "Layer4 timeout",
    L4CON: "Layer4 connection problem",
    L6OK: "Layer6 check passed",
    L6TOUT: "Layer6 timeout",
    L6RSP: "Layer6 invalid response",
    L7OK: "Layer7 check passed",
    L7TOUT: "Layer7 timeout",
    L7RSP: "Layer7 invalid response",
    L7STS: "Layer7 wrong status",
    HANA: "Health analyze",
}

#: The codes of a check that passed.
PASSING = frozenset({L4OK, L6OK, L7OK})


def describe(status: str) -> str:
    """
    The words for a status code; the code itself when it is unknown.
    """
    return DESCRIPTIONS.get(status, status)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AgentReply:
    """
    What an agent answered, word by word (HAProxy's agent grammar).

    @ivar weight_percent: C{75%}: the weight as a percentage of the
        configured weight.
    @ivar weight: C{weight:N}: an absolute weight, 0-256.
    @ivar maxconn: C{maxconn:N}: the connection limit (0: none).
    @ivar admin: C{"ready"}, C{"drain"} or C{"maint"}.
    @ivar health: C{"up"}, or C{"down"} (also written C{fail} or
        C{stopped}).
    @ivar description: The text after C{#}, if any.
    @ivar ignored: Words that were not understood.
    """

    weight_percent: Optional[int] = None
    weight: Optional[int] = None
    maxconn: Optional[int] = None
    admin: Optional[str] = None
    health: Optional[str] = None
    description: str = ""
    ignored: Tuple[str, ...] = ()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class CheckResult:
    """
    The outcome of one check.

    @ivar status: A status code such as C{"L4OK"} or C{"L4CON"}.
    @ivar description: Details for the log and the stats (C{"Connection
        refused"}), or C{""}.
    @ivar duration: Seconds the check took, or C{None}.
    @ivar agent: For an agent check that got an answer, what it said.
    """

    status: str
    description: str = ""
    duration: Optional[float] = None
    agent: Optional[AgentReply] = None

    @property
    def ok(self) -> bool:
        """
        Whether the check passed.
        """
        return self.status in PASSING
