"""
The UP/DOWN state machine: HAProxy's counter, init-state, intervals and the
texts the stats show.
"""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l4lb.health.state import HealthState


def feed(state: HealthState, results: str) -> List[str]:
    """Record C{results} ('+' passed, '-' failed) and return each text."""
    texts = []
    for r in results:
        state.record(r == "+")
        texts.append(state.text())
    return texts


def test_fully_up_needs_fall_failures() -> None:
    """From fully UP, fall=3 failures in a row are needed to go DOWN."""
    state = HealthState(rise=2, fall=3, init_state="fully-up")
    assert feed(state, "---") == ["UP 2/3", "UP 1/3", "DOWN"]


def test_fully_down_needs_rise_successes() -> None:
    """From fully DOWN, rise=2 successes in a row are needed to go UP."""
    state = HealthState(rise=2, fall=3, init_state="fully-down")
    assert feed(state, "++") == ["DOWN 1/2", "UP"]


def test_one_success_restores_a_server_going_down() -> None:
    """A server going down is fully UP again after one passed check."""
    state = HealthState(rise=2, fall=3, init_state="fully-up")
    assert feed(state, "--+-") == ["UP 2/3", "UP 1/3", "UP", "UP 2/3"]


def test_one_failure_resets_a_server_coming_up() -> None:
    """A server coming up is fully DOWN again after one failed check."""
    state = HealthState(rise=3, fall=2, init_state="fully-down")
    assert feed(state, "++-++") == ["DOWN 1/3", "DOWN 2/3", "DOWN", "DOWN 1/3", "DOWN 2/3"]


@pytest.mark.parametrize(
    "init_state, up, text, after_fail, after_pass",
    [
        ("up", True, "UP 1/3", False, True),
        ("fully-up", True, "UP", True, True),
        ("down", False, "DOWN 1/2", False, True),
        ("fully-down", False, "DOWN", False, False),
    ],
)
def test_init_states(init_state: str, up: bool, text: str, after_fail: bool, after_pass: bool) -> None:
    """init-state as HAProxy 3.1: up/fully-up start UP, down/fully-down start DOWN; 'up' falls at the first failure and 'down' rises at the first success."""
    state = HealthState(rise=2, fall=3, init_state=init_state)
    assert (state.up, state.text()) == (up, text)
    failed = HealthState(rise=2, fall=3, init_state=init_state)
    failed.record(False)
    assert failed.up is after_fail
    passed = HealthState(rise=2, fall=3, init_state=init_state)
    passed.record(True)
    assert passed.up is after_pass


def test_record_reports_only_changes() -> None:
    """record returns the new state only when the state changed."""
    state = HealthState(rise=1, fall=2, init_state="fully-up")
    assert state.record(False) is None
    assert state.record(False) is False
    assert state.record(False) is None
    assert state.record(True) is True


def test_intervals_follow_the_state() -> None:
    """inter while fully UP, fastinter while changing, downinter while fully DOWN; each defaults to inter."""
    state = HealthState(rise=2, fall=2, init_state="fully-up")
    assert state.interval(2.0, 0.5, 5.0) == 2.0
    state.record(False)
    assert state.interval(2.0, 0.5, 5.0) == 0.5
    assert state.interval(2.0, None, None) == 2.0
    state.record(False)
    assert state.interval(2.0, 0.5, 5.0) == 5.0
    assert state.interval(2.0, 0.5, None) == 2.0


def test_counts_as_haproxy_reports_them() -> None:
    """counts() gives HAProxy's 'status: N/M UP|DOWN' numbers."""
    state = HealthState(rise=2, fall=3, init_state="fully-up")
    assert state.counts() == (3, 3, "UP")
    state.record(False)
    assert state.counts() == (2, 3, "UP")
    state = HealthState(rise=2, fall=3, init_state="fully-down")
    assert state.counts() == (0, 2, "DOWN")


def test_sudden_death_and_mark_down() -> None:
    """sudden-death leaves a fully UP server one failure from DOWN; mark-down makes the next failure fatal."""
    state = HealthState(rise=2, fall=5, init_state="fully-up")
    state.sudden_death()
    state.record(False)
    assert state.text() == "UP 1/5"
    state.record(False)
    assert not state.up
    state = HealthState(rise=2, fall=5, init_state="fully-up")
    state.mark_down()
    assert state.record(False) is False


def test_invalid_arguments() -> None:
    """rise/fall below 1 and unknown init-states are refused."""
    with pytest.raises(ValueError):
        HealthState(rise=0)
    with pytest.raises(ValueError):
        HealthState(init_state="sideways")


@given(
    rise=st.integers(1, 6),
    fall=st.integers(1, 6),
    init=st.sampled_from(["up", "fully-up", "down", "fully-down"]),
    results=st.lists(st.booleans(), max_size=40),
)
def test_counter_stays_in_range_and_runs_decide(rise: int, fall: int, init: str, results: List[bool]) -> None:
    """For any results the counter stays within 0..rise+fall-1, fall failures in a row always end DOWN and rise successes in a row always end UP."""
    state = HealthState(rise, fall, init)
    for passed in results:
        state.record(passed)
        assert 0 <= state.health <= rise + fall - 1
    for _ in range(fall):
        state.record(False)
    assert not state.up
    for _ in range(rise):
        state.record(True)
    assert state.up
