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
    DeadlineExceededError,
    InterlockError,
    NoDeploymentAvailableError,
)
from interlock.health.classify import FailureKind, classify
from interlock.health.tracker import HealthTracker
from interlock.limits.ledger import Ledger, Reservation
from interlock.observability.observer import Observer
from interlock.observability.stats import record_ttft
from interlock.router.pool import DeploymentPool
from interlock.router.state import DeploymentState
from interlock.types import Request, Usage

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

    __slots__ = ("_chains", "_pools", "clock", "health", "ledger", "observer", "retry", "rng")

    def __init__(
        self,
        pools: Mapping[str, DeploymentPool],
        chains: Mapping[str, tuple[str, ...]],
        retry: RetryPolicy,
        health: HealthTracker,
        clock: Clock,
        rng: random.Random,
        observer: Observer | None = None,
    ) -> None:
        self._pools = pools
        self._chains = chains
        self.retry = retry
        self.health = health
        self.ledger = Ledger()
        self.clock = clock
        self.rng = rng
        self.observer = observer if observer is not None else Observer(clock)

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
        chain = self._chains[request.group]
        obs = self.observer
        if obs.starts:
            obs.request_start(request, started)
        for hop, group in enumerate(chain):
            if hop:
                obs.fallback(chain[hop - 1], group, len(attempts), last_error, clock.now())
            pool = self._pools[group]
            request.group = group
            tried: set[DeploymentState] = set()
            n_attempts = 0
            n_waits = 0
            while n_attempts < max_attempts:
                now = clock.now()
                if now >= deadline:
                    err = self._deadline_error(request, timeout, attempts, last_error)
                    obs.refused(chain[0], len(attempts), started, now, err)
                    raise err
                state = pool.select(request, now, tried)
                if state is None:
                    delay = self._wait_before_retry(
                        pool, request, now, tried, n_waits, hop + 1 < len(chain), deadline
                    )
                    if delay is None:
                        reasons, wait = pool.unavailable_reasons(request, now)
                        unavailable.append(f"group {group!r}: " + "; ".join(reasons))
                        if wait is not None and (soonest is None or wait < soonest):
                            soonest = wait
                        break
                    n_waits += 1
                    await clock.sleep(delay)
                    tried.clear()
                    continue
                n_attempts += 1
                attempt_timeout = deadline - now
                cut_by_deadline = True
                if state.deployment.timeout < attempt_timeout:
                    attempt_timeout = state.deployment.timeout
                    cut_by_deadline = False
                reservation = Ledger.reserve(
                    state, request.est_input_tokens + request.est_output_tokens, now
                )
                if attempts:
                    reservation.attempt = len(attempts) + 1
                    if n_attempts > 1:
                        obs.retry(state, reservation.attempt, last_error, now)
                try:
                    result = await send(state, request, attempt_timeout)
                except InterlockError as exc:
                    end = clock.now()
                    Ledger.release(reservation, end)
                    # A timeout caused by the call's own deadline says nothing about
                    # the deployment.
                    if not (cut_by_deadline and isinstance(exc, APITimeoutError)):
                        self.failed(state, exc, now, end, reservation.attempt)
                    else:
                        obs.failure(state, exc, now, end, reservation.attempt, counted=False)
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
        refused = NoDeploymentAvailableError(
            f"no deployment can serve {request.requested!r}: " + " | ".join(unavailable),
            retry_after=soonest,
            attempts=attempts,
        )
        obs.refused(chain[0], len(attempts), started, clock.now(), refused)
        raise refused

    def succeeded(
        self,
        state: DeploymentState,
        started: float,
        now: float,
        ttft: float | None = None,
        usage: Usage | None = None,
        attempt: int = 1,
    ) -> None:
        """Record a successful attempt (health, strategy feedback, observer)."""
        self.health.record_success(state, now - started)
        feedback = self._pools[state.group].feedback
        if feedback is not None:
            # latency strategies judge plain calls per output token
            state.last_output_tokens = usage.completion_tokens if usage is not None else 0
            feedback(state, True, now - started, ttft)
        if ttft is not None:
            record_ttft(state, ttft)
        if self.observer.listening:
            self.observer.success(state, started, now, ttft, usage, attempt)

    def failed(
        self,
        state: DeploymentState,
        error: InterlockError,
        started: float,
        now: float,
        attempt: int = 1,
    ) -> None:
        """Record a failed attempt (health, strategy feedback, observer)."""
        cooldown = self.health.record_failure(state, error, now)
        feedback = self._pools[state.group].feedback
        if feedback is not None:
            feedback(state, False, now - started, None)
        self.observer.failure(state, error, started, now, attempt, cooldown)

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
