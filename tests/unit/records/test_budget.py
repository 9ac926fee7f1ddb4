"""`interlock/records/budget.py`: `BudgetCounter`, one budget's spend in its period."""

from __future__ import annotations

import pytest

from interlock import Budget
from interlock.records.budget import BudgetCounter

# --- budgets ------------------------------------------------------------------------------


def test_budget_counter_rolls_over_fixed_periods() -> None:
    c = BudgetCounter(Budget(scope="group", name="g", limit_usd=1.0, period=10), 100.0)
    c.add(1.0, 101.0)
    assert c.exhausted(109.9)
    assert c.reset_in(105.0) == pytest.approx(5.0)
    assert not c.exhausted(110.0)  # new period
    c.add(0.5, 125.0)  # two periods later: [120, 130)
    assert c.spent == 0.5
    assert c.resets_at == 130.0
