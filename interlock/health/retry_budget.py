"""The retry budget: retries may add at most a share of recent calls (plus a floor).

Without a budget, three attempts per call triple the load on providers exactly when
they are failing. Calls and retries are counted over a sliding window (two buckets,
the older one weighted by how much of it still overlaps the window), O(1) per event.

A retry to a deployment that is healthy now (`is_healthy`) is not what the budget
guards against: it adds load only where load is being served. A call's first such
retry is free (`add_free`): it is counted with the others, so it uses up budget
that later retries would need, but it is never refused. When every deployment is
failing none is healthy, so no retry is free and the budget's bound holds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from interlock.records.state import CLOSED

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState

__all__ = ["RetryBudget", "is_healthy"]


def is_healthy(s: DeploymentState, now: float) -> bool:
    """Whether `s` is in rotation and not failing: its circuit closed, not cooling down,
    and no failure counted against it since its latest success (or since the router
    started). A 429's cooldown, once over, leaves it healthy: a rate limit is not a
    failure of health."""
    return (
        s.circuit_mode == CLOSED
        and s.cooldown_until <= now
        and s.consecutive_failures == 0
        and not s.circuit.kind_fails
    )


class _Counter:
    __slots__ = ("cur", "prev", "start", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.start = -math.inf
        self.cur = 0
        self.prev = 0

    def _roll(self, now: float) -> None:
        age = now - self.start
        if age >= self.window:
            self.prev = self.cur if age < 2 * self.window else 0
            self.cur = 0
            self.start = now

    def add(self, now: float) -> None:
        if now - self.start >= self.window:
            self._roll(now)
        self.cur += 1

    def total(self, now: float) -> float:
        self._roll(now)
        keep = 1.0 - (now - self.start) / self.window
        return self.cur + self.prev * max(0.0, keep)


class RetryBudget:
    """``retries <= floor + ratio * calls`` over the last `window` seconds."""

    __slots__ = ("_calls", "_retries", "denied", "floor", "free", "ratio", "window")

    def __init__(self, ratio: float, floor: int, window: float) -> None:
        self.ratio = ratio
        self.floor = floor
        self.window = window
        self._calls = _Counter(window)
        self._retries = _Counter(window)
        self.denied = 0
        """Retries (and hedges) refused so far (for statistics)."""
        self.free = 0
        """Free retries so far: a call's first retry to a healthy deployment."""

    def record_call(self, now: float) -> None:
        c = self._calls  # `_Counter.add`, inlined: this runs for every call
        if now - c.start >= c.window:
            c._roll(now)
        c.cur += 1

    def can_retry(self, now: float) -> bool:
        return self._retries.total(now) + 1 <= self.floor + self.ratio * self._calls.total(now)

    def try_acquire(self, now: float) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is spent."""
        if not self.can_retry(now):
            self.denied += 1
            return False
        self._retries.add(now)
        return True

    def add_free(self, now: float) -> None:
        """Count a retry the budget may not refuse (see the module's docstring)."""
        self.free += 1
        self._retries.add(now)

    def deny(self) -> None:
        """Count a retry refused without asking `try_acquire` (the router checked
        `can_retry` before waiting for one)."""
        self.denied += 1

    def describe(self, now: float) -> str:
        """The budget's state in words, for errors and logs."""
        retries = self._retries.total(now)
        calls = self._calls.total(now)
        return (
            f"{retries:.0f} retries in the last {self.window:g} s, where "
            f"{self.floor} + {self.ratio:g} x {calls:.0f} calls allow "
            f"{self.floor + self.ratio * calls:.0f}"
        )

    def __repr__(self) -> str:
        return (
            f"<RetryBudget ratio={self.ratio} floor={self.floor} "
            f"calls={self._calls.cur} retries={self._retries.cur} free={self.free} "
            f"denied={self.denied}>"
        )
