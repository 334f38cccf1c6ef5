"""
Which way of an established session is held up by a peer that does not read.

The classic relay registers each leg's transport as the streaming producer
of the other: when a transport's write buffer toward its peer is full, it
pauses the other leg, and resumes it once the buffer has drained.  A
L{Flow} stands between the two and remembers whether the pause is on, so
that the session can tell an idle peer from one that is not reading what
it is sent, and blame the right side when its idle timeout passes (C{sD}
for a server that does not read, C{cD} for a client, as HAProxy does).
The end of a pause means the peer took the data: that counts as activity,
as a write does in HAProxy.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["Flow"]


@implementer(IPushProducer)
class Flow:
    """
    The streaming producer that a consumer transport sees in place of the
    transport feeding it.

    @ivar source: The transport whose data the consumer writes (the leg
        that is paused when the consumer's buffer is full).
    @ivar session: The session, whose C{last_activity} a resume refreshes.
    @ivar paused: Whether the consumer paused it: the consumer's peer is
        not taking the data it is sent.
    """

    __slots__ = ("source", "session", "paused")

    def __init__(self, source: Any, session: Any) -> None:
        """
        @param source: The transport to pause and resume.
        @param session: The L{l4lb.tcp.session.Session} both belong to.
        """
        self.source = source
        self.session = session
        self.paused = False

    def pauseProducing(self) -> None:
        """
        The consumer's buffer is full: stop reading the source.
        """
        self.paused = True
        self.source.pauseProducing()

    def resumeProducing(self) -> None:
        """
        The consumer's buffer drained: read the source again.
        """
        if self.paused:
            session = self.session
            session.last_activity = session.seconds()
        self.paused = False
        self.source.resumeProducing()

    def stopProducing(self) -> None:
        """
        The consumer is gone: stop the source for good.
        """
        self.paused = False
        self.source.stopProducing()
