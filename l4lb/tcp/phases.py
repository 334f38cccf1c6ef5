"""
The states of a relayed TCP session and the phase each one stands for in a
termination state.

HAProxy's termination state has two characters: who or what ended the
connection, then the phase it was in.  A session ended from outside (an
administrator's C{shutdown sessions}, a stop or a reload reaching
C{hard-stop-after}, a server going down or a backup giving way with
C{on-marked-down}/C{on-marked-up shutdown-sessions}) takes the cause as the
first character (C{K}, C{D} or C{U}) and the phase from its state as the
second: L{killed} is the one place that decides it.
"""

from __future__ import annotations

from typing import Any, Optional

INSPECTING = "inspecting"
QUEUED = "queued"
CONNECTING = "connecting"
ESTABLISHED = "established"
CLOSING = "closing"
DONE = "done"

#: The phase letter of each state before the data phase: C{R} while the
#: client's first bytes are inspected, C{Q} while waiting in the queue,
#: C{C} while connecting (a TLS server's handshake included).  Every other
#: state is the data phase, C{D}.
PHASES = {INSPECTING: "R", QUEUED: "Q", CONNECTING: "C"}


def killed(state: Optional[str], cause: str) -> str:
    """
    The termination state of a session in C{state} ended from outside for
    C{cause}.

    @param state: The session's state; C{None} for a session without
        phases (a UDP session), which is in its data phase.
    @param cause: C{"K"} (killed: an administrator, a stop or a reload),
        C{"D"} (its server went down) or C{"U"} (an active server came back
        and its backup's sessions are shut).
    @return: Two characters, such as C{"KD"} or C{"DC"}.
    """
    return cause + PHASES.get(state or ESTABLISHED, "D")


def kill(session: Any, cause: str) -> None:
    """
    End C{session} at once from outside for C{cause}, logged with the
    phase it was in (L{killed}).  A TCP session has a C{state}; a UDP
    session has none and is in its data phase.  An object without C{kill}
    (nothing to end) is left alone.

    @param session: A L{l4lb.tcp.session.Session} or a
        L{l4lb.udp.session.UdpSession}.
    @param cause: C{"K"}, C{"D"} or C{"U"} (see L{killed}).
    """
    end = getattr(session, "kill", None)
    if end is not None:
        end(killed(getattr(session, "state", None), cause))
