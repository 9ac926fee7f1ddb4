"""Hedging: when an attempt is slow, race a second deployment against it.

The delay is fixed, or a percentile of the group's recent successful latencies
(recomputed every few samples from a bounded ring, so a pick stays O(1) amortized).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, TypeVar

from interlock.config import HedgePolicy
from interlock.errors import InterlockError
from interlock.failures import TREATMENTS, classify
from interlock.records.state import DeploymentState
from interlock.router.attempt import Attempt, Attempts, Send
from interlock.router.call_state import Call
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
    attempts: Attempts,
    call: Call,
    pool: DeploymentPool,
    first: DeploymentState,
    send: Send[R],
    hedger: Hedger,
) -> tuple[R, Attempt]:
    """Race `first` against up to `max_hedges` later attempts on other deployments;
    the first success wins, the others are cancelled (their reservations released).
    Every deployment that finished (or was raced) joins `call.tried`."""
    clock = attempts.clock
    delay = hedger.delay()
    if delay is None or clock.now() + delay >= call.deadline:
        return await attempts.run(call, first, send)
    race = _Race(attempts, call, pool, send, hedger, delay)
    race.start(first)
    try:
        return await race.finish()
    finally:
        await race.cancel_losers()


class _Race:
    """The tasks of one hedged race and the timer that sends the next hedge."""

    __slots__ = (
        "attempts",
        "call",
        "delay",
        "error",
        "hedger",
        "hedges",
        "pool",
        "send",
        "started_at",
        "tasks",
        "timer",
    )

    def __init__(
        self,
        attempts: Attempts,
        call: Call,
        pool: DeploymentPool,
        send: Send[R],
        hedger: Hedger,
        delay: float,
    ) -> None:
        self.attempts = attempts
        self.call = call
        self.pool = pool
        self.send: Send[Any] = send
        self.hedger = hedger
        self.delay = delay
        self.started_at = attempts.clock.now()
        self.tasks: dict[asyncio.Task[tuple[Any, Attempt]], DeploymentState] = {}
        self.timer: asyncio.Future[None] | None = None
        self.hedges = 0
        self.error: InterlockError | None = None

    def start(self, state: DeploymentState) -> None:
        task = asyncio.ensure_future(self.attempts.run(self.call, state, self.send))
        self.tasks[task] = state
        if self.hedges < self.hedger.policy.max_hedges:
            self.timer = asyncio.ensure_future(self.attempts.clock.sleep(self.delay))

    async def finish(self) -> tuple[Any, Attempt]:
        """The first success; raises the last retryable error when every attempt failed,
        any other error at once."""
        while self.tasks:
            waiting: set[asyncio.Future[Any]] = set(self.tasks)
            if self.timer is not None:
                waiting.add(self.timer)
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in [t for t in self.tasks if t in done]:
                self.call.mark_tried(self.tasks.pop(task))
                exc = task.exception()
                if exc is None:
                    return task.result()
                if not (
                    isinstance(exc, InterlockError) and TREATMENTS[classify(exc)].retry_elsewhere
                ):
                    raise exc
                self.error = exc
            if self.timer is not None and self.timer in done:
                self.timer = None
                self._hedge()
        assert self.error is not None
        raise self.error

    def _hedge(self) -> None:
        """The delay passed with attempts still running: send one more elsewhere, if the
        deadline, an eligible deployment and the retry budget allow."""
        call = self.call
        now = self.attempts.clock.now()
        if not self.tasks or now >= call.deadline:
            return
        state = self.pool.select(call.request, now, call.tried | set(self.tasks.values()))
        if state is None or not call.retry_budget.try_acquire(now):
            return
        call.sent += 1
        self.hedges += 1
        self.attempts.hedges_sent += 1
        request = call.request
        self.attempts.observer.hedge(state, call.sent, now - self.started_at, now, request)
        if request.trace is not None:
            request.trace.next_hedge = call.sent
        self.start(state)

    async def cancel_losers(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        tasks = self.tasks
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        await asyncio.wait(tasks)
        # A loser that finished successfully before it could be cancelled still holds
        # its reservation: settle it (the answer is dropped).
        for task in tasks:
            if not task.cancelled() and task.exception() is None:
                _, attempt = task.result()
                attempt.succeeded(None)
