"""`interlock/health/retry_budget.py`: `RetryBudget`, retries capped at a share of recent calls."""

from __future__ import annotations

from interlock.errors import APITimeoutError, InternalServerError, RateLimitError
from interlock.health import RetryBudget
from interlock.health.retry_budget import is_healthy
from tests.unit.health.test_tracker import policy, states

T0 = 1000.0


def test_retry_budget_ratio_and_floor() -> None:
    b = RetryBudget(ratio=0.1, floor=2, window=10)
    for _ in range(50):
        b.record_call(T0)
    granted = sum(b.try_acquire(T0) for _ in range(100))
    assert granted == 7  # 2 + 0.1 * 50
    assert b.denied == 93
    # Old calls and retries age out of the window together.
    assert b.try_acquire(T0 + 25)
    assert b.try_acquire(T0 + 25)
    assert not b.try_acquire(T0 + 25)


def test_free_retries_count_against_the_budget_but_are_never_refused() -> None:
    b = RetryBudget(ratio=0.0, floor=1, window=10)
    b.record_call(T0)
    b.add_free(T0)
    b.add_free(T0)  # over the budget, still counted
    assert b.free == 2
    assert not b.try_acquire(T0)  # the free ones used it up
    b.deny()
    assert b.denied == 2
    assert b.describe(T0) == "2 retries in the last 10 s, where 1 + 0 x 1 calls allow 1"


def test_healthy_means_closed_not_cooling_and_no_failure_since_a_success() -> None:
    tracker, (s,) = states(1, policy(allowed_fails=2))
    assert is_healthy(s, T0)  # nothing known against it
    tracker.failure(s, InternalServerError("x"), T0)
    assert not is_healthy(s, T0)
    tracker.success(s, 0.1, T0)
    assert is_healthy(s, T0)
    tracker.failure(s, RateLimitError("x", retry_after=5), T0)
    assert not is_healthy(s, T0 + 1)  # cooling
    assert is_healthy(s, T0 + 5)  # a rate limit is not a failure of health
    tracker.failure(s, InternalServerError("x"), T0 + 5)
    tracker.failure(s, InternalServerError("x"), T0 + 5)  # ejected
    assert not is_healthy(s, T0 + 100)  # half-open is not healthy


def test_a_failure_with_its_own_allowance_makes_it_unhealthy() -> None:
    tracker, (s,) = states(1, policy(allowed_fails_by_kind={"timeout": 3}))
    tracker.failure(s, APITimeoutError("x"), T0)
    assert s.consecutive_failures == 0
    assert not is_healthy(s, T0)
