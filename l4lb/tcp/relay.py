"""
One relayed TCP connection, under the names other modules and embedders
import.  The pieces live in their own modules:

  - L{l4lb.tcp.legs}: the client and server legs (L{ClientLeg},
    L{ServerLeg}, L{TlsServerLeg});
  - L{l4lb.tcp.session}: the L{Session}'s state machine (stages, queue,
    dispatch, timeouts, closing, the log line);
  - L{l4lb.tcp.connect}: connecting to a server, its timeout, the TLS
    handshake and the retries;
  - L{l4lb.tcp.datapath}: the data path's interface, with
    L{l4lb.tcp.classic} and L{l4lb.tcp.lean} as its implementations;
  - L{l4lb.tcp.phases}: the session's states and the termination phase of
    a session ended from outside;
  - L{l4lb.tcp.record}: the log line of a session that ended.
"""

from l4lb.tcp.connect import RETRY_PAUSE
from l4lb.tcp.legs import ClientLeg, ServerLeg, TlsServerLeg
from l4lb.tcp.phases import (
    CLOSING,
    CONNECTING,
    DONE,
    ESTABLISHED,
    INSPECTING,
    QUEUED,
)
from l4lb.tcp.session import Session

__all__ = [
    "CLOSING",
    "CONNECTING",
    "DONE",
    "ESTABLISHED",
    "INSPECTING",
    "QUEUED",
    "RETRY_PAUSE",
    "ClientLeg",
    "ServerLeg",
    "Session",
    "TlsServerLeg",
]
