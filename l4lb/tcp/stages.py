"""
What a stage (L{l4lb.interfaces.IClientStage}) uses to refuse a connection,
and the bound on what the stages of one connection may hold.
"""

from __future__ import annotations

from typing import Optional

#: Bytes a client may send at most before its frontend's stages decide
#: where it goes; a client that sends more is refused (C{PR}).
MAX_INSPECT = 65536


class StageRejected(Exception):
    """
    A stage refuses a connection: it is closed at once and logged.

    @ivar termination: The two-character termination state to log, such as
        C{"PR"} (refused by a rule, or the client sent something that
        cannot be read) or C{"cR"} (the client did not send enough in
        time).
    @ivar message: A line saying why, logged besides the connection's log
        line; empty when the termination state says enough (an address
        refused by an ACL).
    @ivar denied: Whether it counts as denied (stats C{dcon}): refused by
        a rule.  By default, when the proxy ended it (C{P...}).
    """

    def __init__(self, termination: str, message: str = "", denied: Optional[bool] = None) -> None:
        super().__init__(termination, message)
        self.termination = termination
        self.message = message
        self.denied = termination[0] == "P" if denied is None else denied
