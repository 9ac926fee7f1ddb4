"""`interlock/health/retry_budget.py`: `RetryBudget`, retries capped at a share of recent calls."""

from __future__ import annotations

from interlock.health import RetryBudget

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
