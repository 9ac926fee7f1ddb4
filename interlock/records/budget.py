"""The live state of one spend `Budget`: what it has spent in its current period.

Each deployment holds the counters of the budgets that cover it
(`DeploymentState.budgets`), so pricing a request and checking budgets at
eligibility read only those.
"""

from __future__ import annotations

from interlock.config import Budget

__all__ = ["BudgetCounter"]


class BudgetCounter:
    """Spend against one budget in its current period (fixed windows from `start`)."""

    __slots__ = ("budget", "limit", "period", "period_start", "resets_at", "spent")

    def __init__(self, budget: Budget, start: float) -> None:
        self.budget = budget
        self.limit = budget.limit_usd
        self.period = budget.period
        self.period_start = start
        self.resets_at = start + budget.period
        self.spent = 0.0

    def _roll(self, now: float) -> None:
        periods = (now - self.period_start) // self.period
        self.period_start += periods * self.period
        self.resets_at = self.period_start + self.period
        self.spent = 0.0

    def exhausted(self, now: float) -> bool:
        if now >= self.resets_at:
            self._roll(now)
        return self.spent >= self.limit

    def add(self, cost: float, now: float) -> None:
        if now >= self.resets_at:
            self._roll(now)
        self.spent += cost

    def reset_in(self, now: float) -> float:
        if now >= self.resets_at:
            self._roll(now)
        return self.resets_at - now

    def __repr__(self) -> str:
        return f"<BudgetCounter {self.budget.label} spent=${self.spent:.6g}>"
