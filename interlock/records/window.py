"""The sliding window that counts one deployment's requests and tokens (RPM and TPM)."""

from __future__ import annotations

from typing import Literal

__all__ = ["RateWindow"]

_DEFAULT_WIDTH = 1.0  # seconds per bucket: 60 s in 60 buckets


class RateWindow:
    """Requests and tokens sent over the last `span` seconds, kept in buckets of
    ``span / buckets`` seconds. Both counts share one set of buckets, so a request is
    one `add` and an eligibility check reads one object.

    Exactness: the window errs on the safe side. What is added at time ``a`` keeps
    counting until the end of its bucket plus `span`, so it is held between `span` and
    ``span + span/buckets`` seconds (60-61 s with the defaults). Hence any interval of
    `span` seconds never holds more than the limit, and a full window frees up at most
    one bucket width late (at worst ``limit`` per 61 s instead of per 60 s).

    Every operation is O(1) amortized: advancing clears only the buckets that expired
    (at most ``buckets + 1`` of them).

    Hot paths read `requests` and `tokens` directly after
    ``if now >= w.edge: w.advance(now)``: until `edge` no bucket expires, so the
    counts are current. Everything else calls `totals`.
    """

    __slots__ = (
        "_b",
        "_cur",
        "_head",
        "_n",
        "_slots",
        "_width",
        "edge",
        "requests",
        "tokens",
    )

    def __init__(self, span: float = 60.0, buckets: int = 60) -> None:
        if span <= 0 or buckets < 1:
            raise ValueError("RateWindow: span must be > 0 and buckets >= 1")
        self._n = buckets
        self._slots = buckets + 1  # the current bucket plus `buckets` older ones
        width = span / buckets
        # Windows of the default width share one float object: in a pool of 10,000
        # deployments each separate object a pick reads is likely a cache miss.
        self._width = _DEFAULT_WIDTH if width == _DEFAULT_WIDTH else width
        # Bucket k's requests at [2k], its tokens at [2k + 1]: one list, so adding a
        # request touches one list and one cache line, not two.
        self._b = [0] * (2 * self._slots)
        self._head = 0  # tick (bucket index in absolute time) of the newest bucket
        self._cur = 0  # its requests' index: 2 * (_head % _slots)
        self.requests = 0
        """Requests in the window as of the latest `advance` (current while now < edge)."""
        self.tokens = 0
        """Tokens in the window as of the latest `advance` (current while now < edge)."""
        self.edge = self._width
        """When the next bucket starts: until then nothing expires."""

    @property
    def span(self) -> float:
        return self._width * self._n

    def advance(self, now: float) -> int:
        """Drop what expired by `now`; returns the current tick."""
        tick = int(now // self._width)
        head = self._head
        if tick > head:
            m = self._slots
            if tick - head >= m:
                if self.requests or self.tokens:
                    self._b = [0] * (2 * m)
                    self.requests = self.tokens = 0
            else:
                b = self._b
                for t in range(head + 1, tick + 1):
                    i = 2 * (t % m)
                    self.requests -= b[i]
                    self.tokens -= b[i + 1]
                    b[i] = b[i + 1] = 0
            self._head = head = tick
            self._cur = 2 * (tick % m)
        self.edge = (head + 1) * self._width
        return head

    def totals(self, now: float) -> tuple[int, int]:
        """``(requests, tokens)`` over the window ending `now`."""
        if now >= self.edge:
            self.advance(now)
        return self.requests, self.tokens

    def add(self, now: float, tokens: int) -> int:
        """Count one request of `tokens` now; returns the tick it was recorded at (for
        `adjust`)."""
        if now >= self.edge:
            self.advance(now)
        i = self._cur
        b = self._b
        b[i] += 1
        b[i + 1] += tokens
        self.requests += 1
        self.tokens += tokens
        return self._head

    def adjust(self, now: float, tick: int, requests: int, tokens: int) -> None:
        """Correct an earlier `add` made at `tick` by `requests` and `tokens` (a
        reconciled estimate, a request given back).

        If that bucket has already expired the correction is dropped: it no longer
        counts anyway. A bucket never goes below zero.
        """
        head = self.advance(now) if now >= self.edge else self._head
        if head - tick >= self._slots:
            return
        i = 2 * (tick % self._slots)
        b = self._b
        if requests:
            new = b[i] + requests
            if new < 0:
                requests -= new
                new = 0
            b[i] = new
            self.requests += requests
        if tokens:
            i += 1
            new = b[i] + tokens
            if new < 0:
                tokens -= new
                new = 0
            b[i] = new
            self.tokens += tokens

    def next_expiry(self, now: float, lane: Literal["requests", "tokens"]) -> float:
        """Seconds until the oldest bucket holding requests (or tokens) leaves the
        window; 0 if there is none.

        O(buckets), which is a constant; called only when explaining a refusal."""
        head = self.advance(now)
        lane_at = 0 if lane == "requests" else 1
        b = self._b
        m = self._slots
        for age in range(m - 1, -1, -1):
            tick = head - age
            if b[2 * (tick % m) + lane_at]:
                return max(0.0, (tick + m) * self._width - now)
        return 0.0

    def __repr__(self) -> str:
        return f"<RateWindow span={self.span:g}s requests={self.requests} tokens={self.tokens}>"
