"""A sliding-window counter for RPM and TPM."""

from __future__ import annotations

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """Sum of amounts added over the last `span` seconds, kept in buckets of
    ``span / buckets`` seconds.

    Exactness: the window errs on the safe side. An amount added at time ``a`` keeps
    counting until the end of its bucket plus `span`, so it is held between `span` and
    ``span + span/buckets`` seconds (60-61 s with the defaults). Hence any interval of
    `span` seconds never holds more than the limit, and a full window frees up at most
    one bucket width late (at worst ``limit`` per 61 s instead of per 60 s).

    Every operation is O(1) amortized: advancing clears only the buckets that expired
    (at most ``buckets + 1`` of them).
    """

    __slots__ = ("_buckets", "_cur", "_head", "_n", "_slots", "_width", "count", "edge")

    def __init__(self, span: float = 60.0, buckets: int = 60) -> None:
        if span <= 0 or buckets < 1:
            raise ValueError("SlidingWindow: span must be > 0 and buckets >= 1")
        self._n = buckets
        self._slots = buckets + 1  # the current bucket plus `buckets` older ones
        self._width = span / buckets
        self._buckets = [0] * self._slots
        self._head = 0  # tick (bucket index in absolute time) of the newest bucket
        self._cur = 0  # its slot: _head % _slots
        self.count = 0
        """The sum held as of the latest `advance`: current while ``now < edge``."""
        self.edge = self._width
        """When the next bucket starts. Until then no amount expires, so a hot path may
        read `count` directly after ``if now >= w.edge: w.advance(now)`` (what `total`
        does, without the call)."""

    @property
    def span(self) -> float:
        return self._width * self._n

    def advance(self, now: float) -> int:
        """Drop what expired by `now`; returns the current tick. O(buckets) at worst,
        O(1) amortized (each bucket is cleared once per pass)."""
        tick = int(now // self._width)
        head = self._head
        if tick > head:
            steps = tick - head
            b = self._buckets
            m = self._slots
            if steps >= m:
                if self.count:
                    self._buckets = [0] * m
                    self.count = 0
            else:
                for t in range(head + 1, tick + 1):
                    i = t % m
                    self.count -= b[i]
                    b[i] = 0
            self._head = head = tick
            self._cur = tick % m
        self.edge = (head + 1) * self._width
        return head

    def total(self, now: float) -> int:
        if now >= self.edge:
            self.advance(now)
        return self.count

    def add(self, now: float, amount: int) -> int:
        """Add `amount` now; returns the tick it was recorded at (for `adjust`)."""
        if now >= self.edge:
            self.advance(now)
        self._buckets[self._cur] += amount
        self.count += amount
        return self._head

    def adjust(self, now: float, tick: int, delta: int) -> None:
        """Correct an earlier `add` made at `tick` by `delta` (reconciling an estimate).

        If that bucket has already expired the correction is dropped: the amount no
        longer counts anyway. A bucket never goes below zero.
        """
        head = self.advance(now) if now >= self.edge else self._head
        if head - tick >= self._slots:
            return
        i = tick % self._slots
        new = self._buckets[i] + delta
        if new < 0:
            delta -= new
            new = 0
        self._buckets[i] = new
        self.count += delta

    def next_expiry(self, now: float) -> float:
        """Seconds until the oldest non-empty bucket leaves the window (0 if empty).

        O(buckets), which is a constant; called only when explaining a refusal."""
        head = self.advance(now)
        if self.count <= 0:
            return 0.0
        m = self._slots
        for age in range(m - 1, -1, -1):
            tick = head - age
            if self._buckets[tick % m]:
                return max(0.0, (tick + m) * self._width - now)
        return 0.0

    def __repr__(self) -> str:
        return f"<SlidingWindow span={self.span:g}s total={self.count}>"
