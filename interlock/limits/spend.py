"""Spend: cost per request from `usage` x per-token prices, and budgets.

Cost is recorded when a reservation is settled with the provider's usage. Every
deployment keeps its own running total; group and tag totals are sums over the
deployments at report time (off the hot path). A `BudgetCounter` is the live state of
one `Budget`; each deployment holds the counters that cover it, so recording a cost
and checking budgets at eligibility are O(budgets covering the deployment).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from interlock.config import Budget
from interlock.records.budget import BudgetCounter

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState

__all__ = [
    "BudgetCounter",
    "BudgetStatus",
    "SpendReport",
    "attach_budgets",
    "budget_key",
    "spend_report",
]


def attach_budgets(
    budgets: Sequence[Budget],
    states: Sequence[DeploymentState],
    now: float,
    keep: Iterable[BudgetCounter] = (),
) -> tuple[list[BudgetCounter], list[tuple[str, str]]]:
    """One counter per budget, attached to every state it covers. Returns the counters
    and ``(path, problem)`` pairs for budgets that cover no deployment.

    `keep`: counters to carry on (a runtime change): a budget with the scope, name and
    period of one of them keeps its spend in the current period, with its new limit."""
    kept = {budget_key(c.budget): c for c in keep}
    counters: list[BudgetCounter] = []
    problems: list[tuple[str, str]] = []
    for i, b in enumerate(budgets):
        counter = kept.pop(budget_key(b), None)
        if counter is None:
            counter = BudgetCounter(b, now)
        else:
            counter.budget = b
            counter.limit = b.limit_usd
        covered = [s for s in states if _covers(b, s)]
        if not covered:
            problems.append((f"budgets[{i}].name", f"covers no deployment ({b.scope} {b.name!r})"))
            continue
        for s in covered:
            s.budgets = (*s.budgets, counter)
        counters.append(counter)
    return counters, problems


def budget_key(b: Budget) -> tuple[str, str, float]:
    """What makes two budgets the same one across a runtime change."""
    return (b.scope, b.name, b.period)


def _covers(b: Budget, s: DeploymentState) -> bool:
    if b.scope == "deployment":
        return s.id == b.name
    if b.scope == "group":
        return s.group == b.name
    return b.name in s.tags


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget at the moment of the report."""

    label: str
    scope: str
    name: str
    limit_usd: float
    spent_usd: float
    """Spend in the current period."""
    resets_in: float
    """Seconds until the current period ends."""
    exhausted: bool


@dataclass(frozen=True, slots=True)
class SpendReport:
    """Spend in USD since the router was built (budgets: in their current period)."""

    total_usd: float
    by_deployment: dict[str, float]
    by_group: dict[str, float]
    by_tag: dict[str, float]
    budgets: tuple[BudgetStatus, ...]


def spend_report(
    states: Iterable[DeploymentState], counters: Iterable[BudgetCounter], now: float
) -> SpendReport:
    by_deployment: dict[str, float] = {}
    by_group: dict[str, float] = {}
    by_tag: dict[str, float] = {}
    for s in states:
        by_deployment[s.id] = s.spend
        by_group[s.group] = by_group.get(s.group, 0.0) + s.spend
        for t in s.tags:
            by_tag[t] = by_tag.get(t, 0.0) + s.spend
    budgets = tuple(
        BudgetStatus(
            c.budget.label,
            c.budget.scope,
            c.budget.name,
            c.limit,
            c.spent,
            c.reset_in(now),
            c.exhausted(now),
        )
        for c in counters
    )
    return SpendReport(sum(by_deployment.values()), by_deployment, by_group, by_tag, budgets)
