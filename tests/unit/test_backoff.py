"""The waits between retries: reconnections (``Backoff``) and notifier retries (``RetrySchedule``)."""

from __future__ import annotations

from alliance_psi.protocol.alert_follower import Backoff, backoff_seconds
from alliance_psi.services.notifiers import RetrySchedule


def test_the_wait_doubles_to_its_cap_and_is_drawn_from_the_upper_half() -> None:
    assert [backoff_seconds(1.0, 10.0, n, draw=lambda: 1.0) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert [backoff_seconds(1.0, 10.0, n, draw=lambda: 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_reconnections_back_off_and_start_again_after_a_success() -> None:
    backoff = Backoff(first=1.0, most=4.0)
    waits = [backoff.next() for _ in range(4)]
    assert [0.5 <= waits[0] <= 1.0, 1.0 <= waits[1] <= 2.0, 2.0 <= waits[2] <= 4.0, 2.0 <= waits[3] <= 4.0] == [
        True
    ] * 4
    backoff.reset()
    assert backoff.next() <= 1.0


def test_a_notifier_retries_until_its_budget_is_spent() -> None:
    schedule = RetrySchedule(max_attempts=3, first_seconds=2.0, max_seconds=60.0)
    assert schedule.delay(1, draw=lambda: 1.0) == 2.0  # After the first failure: the first wait.
    assert schedule.delay(2, draw=lambda: 1.0) == 4.0
    assert schedule.delay(3) is None  # Three attempts made: a dead letter.
