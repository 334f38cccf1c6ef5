"""
Tests for L{l4lb.tcp.flow}: the producer that remembers whether a relay's
consumer paused the other leg.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from l4lb.tcp.flow import Flow


class _Session:
    def __init__(self, clock: Clock) -> None:
        self.seconds = clock.seconds
        self.last_activity = 0.0


def test_pause_and_resume_reach_the_source_and_are_remembered() -> None:
    """
    Pausing and resuming go on to the source transport; the flow says
    whether it is paused, and the end of a pause is the session's latest
    activity.
    """
    clock = Clock()
    session = _Session(clock)
    source = StringTransport()
    flow = Flow(source, session)
    assert IPushProducer.providedBy(flow) and not flow.paused
    flow.pauseProducing()
    assert flow.paused and source.producerState == "paused"
    clock.advance(7)
    flow.resumeProducing()
    assert not flow.paused and source.producerState == "producing"
    assert session.last_activity == 7


def test_resume_without_a_pause_is_not_activity() -> None:
    """A resume that ends no pause leaves the session's last activity alone."""
    clock = Clock()
    session = _Session(clock)
    flow = Flow(StringTransport(), session)
    clock.advance(3)
    flow.resumeProducing()
    assert session.last_activity == 0.0


def test_stop_reaches_the_source_and_clears_the_pause() -> None:
    """Stopping goes on to the source and leaves nothing paused."""
    source = StringTransport()
    flow = Flow(source, _Session(Clock()))
    flow.pauseProducing()
    flow.stopProducing()
    assert source.producerState == "stopped" and not flow.paused
