"""A sliding-window counter for RPM and TPM."""

from __future__ import annotations

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """Sum of amounts added over the last `span` seconds, in `buckets` slots.

    Exactness: amounts expire a whole bucket at a time, so the window covers between
    ``span - span/buckets`` and `span` seconds (59-60 s with the defaults). Every
    operation is O(1) amortized: advancing clears only the buckets that expired.
    """

    __slots__ = ("_buckets", "_head", "_n", "_total", "_width")

    def __init__(self, span: float = 60.0, buckets: int = 60) -> None:
        if span <= 0 or buckets < 1:
            raise ValueError("SlidingWindow: span must be > 0 and buckets >= 1")
        self._n = buckets
        self._width = span / buckets
        self._buckets = [0] * buckets
        self._head = 0  # tick (bucket index in absolute time) of the newest bucket
        self._total = 0

    def _advance(self, now: float) -> int:
        tick = int(now // self._width)
        head = self._head
        if tick > head:
            steps = tick - head
            b = self._buckets
            if steps >= self._n:
                self._buckets = [0] * self._n
                self._total = 0
            else:
                n = self._n
                for t in range(head + 1, tick + 1):
                    i = t % n
                    self._total -= b[i]
                    b[i] = 0
            self._head = tick
        return self._head

    def total(self, now: float) -> int:
        self._advance(now)
        return self._total

    def add(self, now: float, amount: int) -> int:
        """Add `amount` now; returns the tick it was recorded at (for `adjust`)."""
        tick = self._advance(now)
        self._buckets[tick % self._n] += amount
        self._total += amount
        return tick

    def adjust(self, now: float, tick: int, delta: int) -> None:
        """Correct an earlier `add` made at `tick` by `delta` (reconciling an estimate).

        If that bucket has already expired the correction is dropped: the amount no
        longer counts anyway.
        """
        head = self._advance(now)
        if head - tick >= self._n:
            return
        i = tick % self._n
        new = self._buckets[i] + delta
        if new < 0:
            delta -= new
            new = 0
        self._buckets[i] = new
        self._total += delta

    def next_expiry(self, now: float) -> float:
        """Seconds until the oldest non-empty bucket leaves the window (0 if empty)."""
        head = self._advance(now)
        if self._total <= 0:
            return 0.0
        n = self._n
        for age in range(n - 1, -1, -1):
            tick = head - age
            if self._buckets[tick % n]:
                return max(0.0, (tick + n) * self._width - now)
        return 0.0
