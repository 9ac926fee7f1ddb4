"""The plain records `PrometheusMetrics` counts into: a batched histogram, and one
slotted record per deployment and per group (see metrics.py for why the router counts
in plain Python and exports at scrape time)."""

from __future__ import annotations

import threading
from bisect import bisect_right
from typing import TYPE_CHECKING, get_args

from interlock.clock import Clock
from interlock.observability.events import FailureKindName

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState

__all__ = ["FOLD", "OUTCOMES", "DeploymentSeries", "GroupSeries", "Histogram"]

OUTCOMES: tuple[str, ...] = tuple(k for k in get_args(FailureKindName) if k != "refused")
"""The failure outcomes each deployment's series counts from zero: the kinds of
`FailureEvent` but a refusal, which is counted per group (`PrometheusMetrics.refused`)."""


FOLD = 64
"""Observations a histogram buffers before it sorts them into its buckets."""


class Histogram:
    """A Prometheus histogram whose observations are bucketed in batches.

    `observe` only appends the value; every `FOLD` values (and before every read)
    `fold` sorts the batch and counts each bucket with one bisection per bound, in
    C, instead of one Python-level bisection per observation. Counts and sum are
    exactly those of bucketing each value as it comes (the sum adds the values in
    arrival order); the pending list holds at most `FOLD` values.
    """

    __slots__ = ("_counts", "_lock", "_sum", "bounds", "pending")

    def __init__(self, bounds: tuple[float, ...], lock: threading.Lock | None = None) -> None:
        self.bounds = bounds
        self.pending: list[float] = []
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0
        # Appends need no lock (one list append is atomic); folding does, so that a
        # scrape from another thread and the loop's own fold never count a value twice.
        self._lock = lock if lock is not None else threading.Lock()

    def observe(self, value: float) -> None:
        pending = self.pending
        pending.append(value)
        if len(pending) >= FOLD:
            self.fold()

    def fold(self) -> None:
        """Move the pending observations into the buckets and the sum."""
        with self._lock:
            pending = self.pending
            n = len(pending)
            if not n:
                return
            batch = pending[:n]  # values appended meanwhile stay pending
            del pending[:n]
            self._sum = sum(batch, self._sum)  # left to right, as `+=` would
            batch.sort()
            counts = self._counts
            lo = 0
            for i, bound in enumerate(self.bounds):
                # `le` buckets: a value equal to a bound belongs to that bound's bucket.
                hi = bisect_right(batch, bound, lo)
                counts[i] += hi - lo
                lo = hi
                if lo == n:
                    break
            counts[-1] += n - lo

    @property
    def counts(self) -> list[int]:
        """Observations per bucket (not cumulative; the last is above every bound)."""
        self.fold()
        return list(self._counts)

    @property
    def sum(self) -> float:
        self.fold()
        return self._sum

    def cumulative(self) -> list[tuple[str, float]]:
        self.fold()
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip(self.bounds, self._counts, strict=False):
            total += n
            out.append((_le(bound), total))
        out.append(("+Inf", total + self._counts[-1]))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


class DeploymentSeries:
    """The records of one deployment. Successes and tokens are not counted here but
    read at scrape time from what the router keeps anyway (the deployment's state)."""

    __slots__ = (
        "clock",
        "cooldowns",
        "duration",
        "group",
        "id",
        "input_before",
        "outcomes",
        "output_before",
        "recoveries",
        "spend_before",
        "state",
        "successes_before",
        "ttft",
        "unreported_input",
        "unreported_output",
        "unreported_spend",
    )

    def __init__(
        self, state: DeploymentState, duration: Histogram, ttft: Histogram, clock: Clock
    ) -> None:
        self.state = state
        self.clock = clock
        self.group = state.group
        self.id = state.id
        # Successes are the router's own count: `state.successes` only grows, and
        # exactly where a success is reported (Pipeline.succeeded).
        self.successes_before = state.successes
        # Tokens are the ledger's `state.input_tokens` / `output_tokens` (they only
        # grow: Ledger.settle adds each response's usage), less what the ledger counted
        # that no success reported: a stream's estimate when its provider sent no usage,
        # and the usage of streams that failed or were closed early (`unreported`).
        self.input_before = state.input_tokens
        self.output_before = state.output_tokens
        self.unreported_input = 0
        self.unreported_output = 0
        # Spend likewise: the ledger's `state.spend` (cached reads and cache writes at
        # their own prices), less what it priced that no success reports.
        self.spend_before = state.spend
        self.unreported_spend = 0.0
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.duration = duration
        self.ttft = ttft
        self.cooldowns = 0
        self.recoveries = 0


class GroupSeries:
    """The records of one group (retries, hedges, waits, fallbacks, refusals)."""

    __slots__ = (
        "fallbacks",
        "hedges",
        "refused",
        "retries",
        "retries_refused",
        "wait_seconds",
        "waits",
    )

    def __init__(self) -> None:
        self.retries = 0
        self.retries_refused = 0
        self.hedges = 0
        self.waits = 0
        self.wait_seconds = 0.0
        self.fallbacks: dict[str, int] = {}
        self.refused = {"no_deployment": 0, "deadline": 0}
