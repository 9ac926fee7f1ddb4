"""Hedging: when an attempt is slow, race a second deployment against it.

The delay is fixed, or a percentile of the group's recent successful latencies
(recomputed every few samples from a bounded ring, so a pick stays O(1) amortized).
"""

from __future__ import annotations

import math

from interlock.config import HedgePolicy

__all__ = ["Hedger"]

_RING = 256
_RECOMPUTE_EVERY = 16


class Hedger:
    """A group's hedging policy plus the latencies it learns from."""

    __slots__ = ("_cached", "_n", "_ring", "policy")

    def __init__(self, policy: HedgePolicy) -> None:
        self.policy = policy
        self._ring: list[float] = []
        self._n = 0
        self._cached: float | None = None

    def record(self, latency: float) -> None:
        """A successful attempt's latency (seconds)."""
        ring = self._ring
        if len(ring) < _RING:
            ring.append(latency)
        else:
            ring[self._n % _RING] = latency
        self._n += 1
        p = self.policy.percentile
        if (
            p is not None
            and len(ring) >= self.policy.min_samples
            and (self._cached is None or self._n % _RECOMPUTE_EVERY == 0)
        ):
            ordered = sorted(ring)
            self._cached = ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]

    def delay(self) -> float | None:
        """Seconds to wait before hedging, None when there is nothing to go on yet."""
        if self._cached is not None:
            return self._cached
        return self.policy.delay

    def __repr__(self) -> str:
        return f"<Hedger delay={self.delay()} samples={len(self._ring)}>"
