"""The request pipeline: choose, reserve, send, settle; retry elsewhere; fall back.

One loop serves every kind of request. The decision (eligibility, strategy,
reservation) is synchronous; the only await per attempt is the send, plus a backoff
sleep when every eligible deployment has already been tried.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from interlock.clock import Clock
from interlock.config import RetryPolicy
from interlock.errors import (
    APITimeoutError,
    AttemptRecord,
    BudgetExceededError,
    ContextWindowExceededError,
    DeadlineExceededError,
    InterlockError,
    NoDeploymentAvailableError,
    RateLimitError,
)
from interlock.health.classify import FailureKind, classify
from interlock.health.tracker import HealthTracker
from interlock.limits.ledger import Exhaustion, Ledger, Reservation, exhaustion
from interlock.limits.queue import WaitQueue
from interlock.limits.shared import SharedLedger
from interlock.router.pool import DeploymentPool
from interlock.router.state import DeploymentState
from interlock.types import Request

__all__ = ["Pipeline", "Send"]

R = TypeVar("R")
T = TypeVar("T")

Send = Callable[[DeploymentState, Request, float], Awaitable[R]]
"""``send(state, request, timeout)``: one attempt; raises an InterlockError on failure."""
Complete = Callable[[R, Reservation, float], T]
"""``complete(result, reservation, started)``: runs synchronously after a successful
send; settles the reservation (or hands it on, for streams) and records health."""


class Pipeline:
    """Runs requests against pools with retries, fallbacks and one deadline."""

    __slots__ = (
        "_chains",
        "_pools",
        "clock",
        "health",
        "ledger",
        "queue_wait",
        "queues",
        "retry",
        "rng",
        "shared",
    )

    def __init__(
        self,
        pools: Mapping[str, DeploymentPool],
        chains: Mapping[str, tuple[str, ...]],
        retry: RetryPolicy,
        health: HealthTracker,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self._pools = pools
        self._chains = chains
        self.retry = retry
        self.health = health
        self.ledger = Ledger()
        self.clock = clock
        self.rng = rng
        # interlock.limits: per-group lines for capacity (empty: no queueing) and
        # the shared ledger of several router processes (None: in memory only).
        self.queues: dict[str, WaitQueue] = {}
        self.queue_wait = 0.0
        self.shared: SharedLedger | None = None

    async def run(
        self, request: Request, timeout: float, send: Send[R], complete: Complete[R, T]
    ) -> T:
        clock = self.clock
        started = clock.now()
        deadline = started + timeout
        max_attempts = self.retry.max_attempts
        attempts: list[AttemptRecord] = []
        last_error: InterlockError | None = None
        unavailable: list[str] = []
        soonest: float | None = None
        blocked: list[Exhaustion] = []
        tokens = request.est_input_tokens + request.est_output_tokens
        chain = self._chains[request.group]
        for hop, group in enumerate(chain):
            pool = self._pools[group]
            request.group = group
            tried: set[DeploymentState] = set()
            n_attempts = 0
            n_waits = 0
            queue = self.queues.get(group) if hop + 1 == len(chain) else None
            queued_at: float | None = None  # when this request first joined the line
            woken = False
            while n_attempts < max_attempts:
                now = clock.now()
                if now >= deadline:
                    raise self._deadline_error(request, timeout, attempts, last_error)
                if queue is not None and queue.waiting and not woken:
                    candidates = []  # FIFO: nobody overtakes the requests in line
                else:
                    candidates = (
                        pool.eligible(request, now, tried) if tried else pool.eligible(request, now)
                    )
                if not candidates:
                    ex = exhaustion(pool.states, tokens, now, request.tags, tried)
                    if ex.kind == "context":
                        raise ContextWindowExceededError(
                            f"~{tokens} tokens (prompt + max_tokens) exceed the context "
                            f"window of every deployment of group {group!r}",
                            attempts=attempts,
                        )
                    if queue is not None and ex.kind in ("limits", "free"):
                        if ex.kind == "free":
                            queue.wake()  # capacity is back: the head of the line goes first
                        if queued_at is None:
                            queued_at = now
                        left = min(self.queue_wait - (now - queued_at), deadline - now)
                        if left > 0 and (woken or not queue.full):
                            capacity_in = ex.wait if ex.kind == "limits" else None
                            woken = await queue.wait(left, capacity_in=capacity_in, front=woken)
                            if woken:
                                continue
                        woken = False
                        now = clock.now()
                        ex = exhaustion(pool.states, tokens, now, request.tags, tried)
                    elif ex.kind != "limits" or tried:
                        delay = self._wait_before_retry(
                            pool, request, now, tried, n_waits, hop + 1 < len(chain), deadline
                        )
                        if delay is not None:
                            n_waits += 1
                            await clock.sleep(delay)
                            tried.clear()
                            continue
                    blocked.append(ex)
                    reasons, wait = pool.unavailable_reasons(request, now)
                    unavailable.append(f"group {group!r}: " + "; ".join(reasons))
                    if wait is not None and (soonest is None or wait < soonest):
                        soonest = wait
                    break
                woken = False
                state = pool.strategy.choose(candidates, request)
                reservation = Ledger.reserve(state, tokens, now)
                if queue is not None and queue.waiting:
                    queue.wake()  # there may be capacity left for the next in line
                shared = self.shared
                if shared is not None and shared.active:
                    # The one Redis round trip of the hot path: admit against the
                    # global windows (and shared cooldowns) of this deployment.
                    try:
                        admitted = await shared.admit(reservation)
                    except BaseException:
                        Ledger.release(reservation, clock.now())
                        raise
                    if not admitted:
                        Ledger.cancel(reservation, clock.now())
                        continue
                    now = clock.now()
                n_attempts += 1
                attempt_timeout = deadline - now
                cut_by_deadline = True
                if state.deployment.timeout < attempt_timeout:
                    attempt_timeout = state.deployment.timeout
                    cut_by_deadline = False
                try:
                    result = await send(state, request, attempt_timeout)
                except InterlockError as exc:
                    end = clock.now()
                    Ledger.release(reservation, end)
                    # A timeout caused by the call's own deadline says nothing about
                    # the deployment.
                    if not (cut_by_deadline and isinstance(exc, APITimeoutError)):
                        self.failed(state, exc, now, end)
                    attempts.append(AttemptRecord(group, state.id, _describe(exc), end - now))
                    if classify(exc) is FailureKind.CALLER:
                        exc.attempts = tuple(attempts)
                        raise
                    last_error = exc
                    tried.add(state)
                    continue
                except BaseException:
                    # Caller cancellation, or a foreign error from a user's fn: settle
                    # the reservation, hold nothing against the deployment.
                    Ledger.release(reservation, clock.now())
                    raise
                return complete(result, reservation, now)
        if last_error is not None:
            last_error.attempts = tuple(attempts)
            raise last_error
        kinds = {ex.kind for ex in blocked}
        if kinds and kinds <= {"limits", "oversize", "budget"} and kinds != {"budget"}:
            raise RateLimitError(
                f"no deployment of {request.requested!r} has capacity: " + " | ".join(unavailable),
                retry_after=soonest,
                attempts=attempts,
            )
        if kinds == {"budget"}:
            counter = min(
                (ex.budget for ex in blocked if ex.budget is not None),
                key=lambda c: c.resets_at,
            )
            now = clock.now()
            raise BudgetExceededError(
                f"budget {counter.budget.label} for {request.requested!r} is used up "
                f"(${counter.spent:.4g} spent); it resets in {counter.reset_in(now):.0f} s",
                retry_after=counter.reset_in(now),
                attempts=attempts,
            )
        raise NoDeploymentAvailableError(
            f"no deployment can serve {request.requested!r}: " + " | ".join(unavailable),
            retry_after=soonest,
            attempts=attempts,
        )

    def succeeded(
        self, state: DeploymentState, started: float, now: float, ttft: float | None = None
    ) -> None:
        """Record a successful attempt (health, strategy feedback)."""
        self.health.record_success(state, now - started)
        feedback = self._pools[state.group].feedback
        if feedback is not None:
            feedback(state, True, now - started, ttft)

    def failed(
        self, state: DeploymentState, error: InterlockError, started: float, now: float
    ) -> None:
        """Record a failed attempt (health, strategy feedback)."""
        cooled = self.health.record_failure(state, error, now)
        if cooled and self.shared is not None:
            self.shared.publish_cooldown(state, state.cooldown_until - now)
        feedback = self._pools[state.group].feedback
        if feedback is not None:
            feedback(state, False, now - started, None)

    def _wait_before_retry(
        self,
        pool: DeploymentPool,
        request: Request,
        now: float,
        tried: set[DeploymentState],
        n_waits: int,
        has_fallback: bool,
        deadline: float,
    ) -> float | None:
        """Seconds to sleep before trying `pool` again, or None to give up on it.

        Sleeping is the last resort: never while a fallback group remains, never past
        the deadline. Deployments already tried are retried after a full-jitter backoff;
        a pool whose deployments are all cooling is waited on only if the first one is
        back within `RetryPolicy.max_wait`.
        """
        if has_fallback or n_waits >= self.retry.max_attempts:
            return None
        if tried and pool.eligible(request, now):
            cap = min(self.retry.backoff_max, self.retry.backoff_base * (2**n_waits))
            delay = self.rng.uniform(0.0, cap)
        else:
            _, wait = pool.unavailable_reasons(request, now)
            if wait is None or wait > self.retry.max_wait:
                return None
            delay = wait
        return delay if now + delay < deadline else None

    @staticmethod
    def _deadline_error(
        request: Request, timeout: float, attempts: list[AttemptRecord], last: InterlockError | None
    ) -> DeadlineExceededError:
        tail = f"; last error: {_describe(last)}" if last is not None else ""
        return DeadlineExceededError(
            f"deadline of {timeout:.3g} s for {request.requested!r} passed after "
            f"{len(attempts)} attempt(s){tail}",
            attempts=attempts,
        )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
