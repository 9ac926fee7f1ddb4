"""The retry budget: retries may add at most a share of recent calls (plus a floor).

Without a budget, three attempts per call triple the load on providers exactly when
they are failing. Calls and retries are counted over a sliding window (two buckets,
the older one weighted by how much of it still overlaps the window), O(1) per event.
"""

from __future__ import annotations

import math

__all__ = ["RetryBudget"]


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

    __slots__ = ("_calls", "_retries", "denied", "floor", "ratio")

    def __init__(self, ratio: float, floor: int, window: float) -> None:
        self.ratio = ratio
        self.floor = floor
        self._calls = _Counter(window)
        self._retries = _Counter(window)
        self.denied = 0
        """Retries refused so far (for statistics)."""

    def record_call(self, now: float) -> None:
        self._calls.add(now)

    def can_retry(self, now: float) -> bool:
        return self._retries.total(now) + 1 <= self.floor + self.ratio * self._calls.total(now)

    def try_acquire(self, now: float) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is spent."""
        if not self.can_retry(now):
            self.denied += 1
            return False
        self._retries.add(now)
        return True

    def __repr__(self) -> str:
        return (
            f"<RetryBudget ratio={self.ratio} floor={self.floor} "
            f"calls={self._calls.cur} retries={self._retries.cur} denied={self.denied}>"
        )
