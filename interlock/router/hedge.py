"""Hedging: when an attempt is slow, race a second deployment against it.

The delay is fixed, or a percentile of the group's recent successful latencies
(recomputed every few samples from a bounded ring, so a pick stays O(1) amortized).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from interlock.config import HedgePolicy
from interlock.errors import InterlockError
from interlock.failures import TREATMENTS, classify
from interlock.limits.ledger import Ledger, Reservation

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState
    from interlock.router.call_state import Call
    from interlock.router.pipeline import Pipeline, Send
    from interlock.router.pool import DeploymentPool

__all__ = ["Hedger", "race"]

R = TypeVar("R")

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


async def race(
    pipeline: Pipeline,
    call: Call,
    pool: DeploymentPool,
    first: DeploymentState,
    tried: set[DeploymentState],
    send: Send[R],
    hedger: Hedger,
) -> tuple[R, Reservation, float]:
    """Race `first` against up to `max_hedges` later attempts on other deployments;
    the first success wins, the others are cancelled (their reservations released)."""
    clock = pipeline.clock
    started_at = clock.now()
    delay = hedger.delay()
    if delay is None or clock.now() + delay >= call.deadline:
        return await pipeline.attempt(call, first, send)
    request = call.request
    tasks: dict[asyncio.Task[tuple[R, Reservation, float]], DeploymentState] = {
        asyncio.ensure_future(pipeline.attempt(call, first, send)): first
    }
    timer: asyncio.Future[None] | None = asyncio.ensure_future(clock.sleep(delay))
    hedges = 0
    error: InterlockError | None = None
    try:
        while tasks:
            waiting: set[asyncio.Future[Any]] = set(tasks)
            if timer is not None:
                waiting.add(timer)
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in list(tasks):
                if task not in done:
                    continue
                tried.add(tasks.pop(task))
                exc = task.exception()
                if exc is None:
                    return task.result()
                if isinstance(exc, InterlockError) and TREATMENTS[classify(exc)].retry_elsewhere:
                    error = exc
                    continue
                raise exc
            if timer is not None and timer in done:
                timer = None
                now = clock.now()
                if tasks and now < call.deadline:
                    busy = tried | set(tasks.values())
                    state = pool.select(request, now, busy)
                    if state is not None and call.budget.try_acquire(now):
                        call.sent += 1
                        hedges += 1
                        pipeline.hedges_sent += 1
                        pipeline.observer.hedge(state, call.sent, now - started_at, now)
                        tasks[asyncio.ensure_future(pipeline.attempt(call, state, send))] = state
                        if hedges < hedger.policy.max_hedges:
                            timer = asyncio.ensure_future(clock.sleep(delay))
    finally:
        if timer is not None:
            timer.cancel()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
            _settle_losers(pipeline, tasks)
    assert error is not None
    raise error


def _settle_losers(
    pipeline: Pipeline, tasks: Mapping[asyncio.Task[tuple[R, Reservation, float]], object]
) -> None:
    # A loser that finished successfully before it could be cancelled still holds
    # its reservation: settle it (the answer is dropped).
    for task in tasks:
        if task.cancelled() or task.exception() is not None:
            continue
        _, reservation, started = task.result()
        now = pipeline.clock.now()
        Ledger.settle(reservation, None, now)
        pipeline.succeeded(reservation.state, started, now)
