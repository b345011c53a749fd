"""The arming rule of the local signature check: REFUSALS within WINDOW arm it for
ARMED_FOR, each refusal meanwhile extends it, and it lapses when the refusals stop."""

from __future__ import annotations

import pytest

from service.auth.refusal_alarm import RefusalAlarm


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def alarm(clock: Clock) -> RefusalAlarm:
    return RefusalAlarm(refusals=3, window=10.0, armed_for=60.0, clock=clock)


def test_refusals_close_together_arm_it() -> None:
    clock = Clock()
    refusals = alarm(clock)
    refusals.refused()
    refusals.refused()
    assert not refusals.armed
    clock.now += 9.0
    refusals.refused()
    assert refusals.armed
    assert refusals.armings == 1


def test_refusals_spread_wider_than_the_window_do_not() -> None:
    clock = Clock()
    refusals = alarm(clock)
    for _ in range(10):
        refusals.refused()
        clock.now += 5.1  # two per window at most
    assert not refusals.armed
    assert refusals.armings == 0


def test_each_refusal_while_armed_extends_it_and_it_lapses_once_they_stop() -> None:
    clock = Clock()
    refusals = alarm(clock)
    for _ in range(3):
        refusals.refused()
    for _ in range(5):  # a flood refused locally goes on for 250 s
        clock.now += 50.0
        assert refusals.armed
        refusals.refused()
    clock.now += 59.0
    assert refusals.armed
    clock.now += 1.0
    assert not refusals.armed
    assert refusals.armings == 1


def test_at_least_one_refusal_is_needed() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RefusalAlarm(refusals=0)
