"""The request pipeline: choose, reserve, send, settle; retry elsewhere; fall back.

One loop serves every kind of request. The decision (eligibility, strategy,
reservation) is synchronous; the only await per attempt is the send, plus a backoff
sleep when every eligible deployment has already been tried. Every attempt after a
call's first draws on the group's retry budget, and everything (attempts, backoff,
fallbacks, hedges) happens before the call's one deadline.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from interlock.clock import Clock
from interlock.config import HedgePolicy, RetryPolicy
from interlock.errors import (
    APITimeoutError,
    AttemptRecord,
    ContextWindowExceededError,
    InterlockError,
)
from interlock.failures import TREATMENTS, FailureKind, classify
from interlock.health.retry_budget import RetryBudget
from interlock.health.tracker import HealthTracker
from interlock.limits.ledger import Ledger, Reservation, exhaustion
from interlock.limits.queue import WaitQueue
from interlock.limits.shared import SharedLedger
from interlock.observability.observer import Observer
from interlock.observability.stats import record_ttft
from interlock.records.state import CLOSED, DeploymentState
from interlock.router.call_state import (
    Call,
    Exhausted,
    Redirect,
    deadline_error,
    describe,
    refusal_error,
)
from interlock.router.fallbacks import FallbackTable
from interlock.router.hedge import Hedger, race
from interlock.router.pool import DeploymentPool
from interlock.types import Request, Usage

__all__ = ["Pipeline", "Send"]

# Builds a NamedTuple without its Python-level __new__ (see observability.observer).
_new = tuple.__new__

R = TypeVar("R")
T = TypeVar("T")

Send = Callable[[DeploymentState, Request, float], Awaitable[R]]
"""``send(state, request, timeout)``: one attempt; raises an InterlockError on failure."""
Complete = Callable[[R, Reservation, float], T]
"""``complete(result, reservation, started)``: runs synchronously after a successful
send; settles the reservation (or hands it on, for streams) and records health."""


class Pipeline:
    """Runs requests against pools with retries, fallbacks, hedges and one deadline."""

    __slots__ = (
        "_budgets",
        "_chains",
        "_fallbacks",
        "_hedgers",
        "_pools",
        "_slow_start",
        "clock",
        "health",
        "hedges_sent",
        "ledger",
        "observer",
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
        *,
        fallbacks: FallbackTable | None = None,
        hedging: Mapping[str, HedgePolicy] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._pools = pools
        self._chains = chains
        self._fallbacks = fallbacks or FallbackTable(pools, {}, max_depth=len(pools))
        self.retry = retry
        self.health = health
        self.ledger = Ledger()
        self.clock = clock
        self.rng = rng
        self.observer = observer if observer is not None else Observer(clock)
        # interlock.limits: per-group lines for capacity (empty: no queueing) and
        # the shared ledger of several router processes (None: in memory only).
        self.queues: dict[str, WaitQueue] = {}
        self.queue_wait = 0.0
        self.shared: SharedLedger | None = None
        self._budgets = {
            g: RetryBudget(retry.budget_ratio, retry.budget_floor, retry.budget_window)
            for g in pools
        }
        hedging = hedging or {}
        self._hedgers: dict[str, Hedger] = {}
        for g in pools:
            policy = hedging.get(g, hedging.get("*"))
            if policy is not None:
                self._hedgers[g] = Hedger(policy)
        self.hedges_sent = 0
        self._slow_start = health.policy.slow_start > 0

    def budget(self, group: str) -> RetryBudget:
        """The retry budget of calls that start at `group`."""
        return self._budgets[group]

    async def run(
        self, request: Request, timeout: float, send: Send[R], complete: Complete[R, T]
    ) -> T:
        now = self.clock.now()
        started = now
        call = Call(request, now + timeout, timeout, self._budgets[request.group])
        call.budget.record_call(now)
        obs = self.observer
        if obs.starts:
            obs.request_start(request, now)
        first_group = request.group
        previous: str | None = None
        max_depth = self._fallbacks.max_depth
        plan = self._chains[request.group]
        plan_kind = "default"
        visited: list[str] = []
        i = 0
        while i < len(plan) and len(visited) <= max_depth and not call.stopped:
            group = plan[i]
            i += 1
            if group in visited:
                continue
            visited.append(group)
            if previous is not None:
                obs.fallback(previous, group, len(call.attempts), call.last_error, self.clock.now())
            previous = group
            has_next = i < len(plan) and len(visited) <= max_depth
            # The group's attempt loop is inlined (not a coroutine of its own): it is
            # the hot path, and each await layer costs about a microsecond.
            try:
                pool = self._pools[group]
                request.group = group
                clock = self.clock
                retry = self.retry
                hedger = self._hedgers.get(group) if self._hedgers and not request.stream else None
                tried: set[DeploymentState] = set()
                kind_counts: dict[FailureKind, int] = {}
                n_attempts = 0
                n_waits = 0
                tokens = request.est_input_tokens + request.est_output_tokens
                # Only the last group of the chain queues for capacity; earlier ones
                # fall back at once.
                queue = self.queues.get(group) if not has_next else None
                queued_at: float | None = None  # when this request first joined the line
                woken = False
                while n_attempts < retry.max_attempts:
                    now = clock.now()
                    if now >= call.deadline:
                        err = deadline_error(call)
                        obs.refused(first_group, len(call.attempts), started, now, err)
                        raise err
                    if queue is not None and queue.waiting and not woken:
                        state = None  # FIFO: nobody overtakes the requests in line
                    else:
                        state = pool.select(request, now, tried)
                    if state is None:
                        ex = exhaustion(pool.states, tokens, now, request.tags, tried)
                        if ex.kind == "context":
                            raise Redirect(
                                "context_window",
                                ContextWindowExceededError(
                                    f"~{tokens} tokens (prompt + max_tokens) exceed the context "
                                    f"window of every deployment of group {group!r}"
                                ),
                            )
                        if queue is not None and ex.kind in ("limits", "free"):
                            if ex.kind == "free":
                                queue.wake()  # capacity is back: the head of the line goes first
                            if queued_at is None:
                                queued_at = now
                            left = min(self.queue_wait - (now - queued_at), call.deadline - now)
                            if left > 0 and (woken or not queue.full):
                                capacity_in = ex.wait if ex.kind == "limits" else None
                                waited_from = now
                                woken = await queue.wait(left, capacity_in=capacity_in, front=woken)
                                obs.rate_limit_wait(
                                    group, None, clock.now() - waited_from, clock.now()
                                )
                                if woken:
                                    continue
                            woken = False
                            now = clock.now()
                            ex = exhaustion(pool.states, tokens, now, request.tags, tried)
                        elif ex.kind != "limits" or tried:
                            delay = self._wait_before_retry(
                                pool, call, now, tried, n_waits, has_next
                            )
                            if delay is not None:
                                n_waits += 1
                                await clock.sleep(delay)
                                tried.clear()
                                continue
                        call.blocked.append(ex)
                        self._note_unavailable(call, pool, now)
                        raise Exhausted
                    woken = False
                    if self._slow_start and not self.health.admit(state, now):
                        # A ramping deployment turned this one away: pick another if any.
                        other = pool.select(request, now, {*tried, state})
                        if other is not None:
                            state = other
                    if call.sent:
                        if call.free_retry:
                            call.free_retry = False
                        elif not call.budget.try_acquire(now):
                            call.stopped = True
                            raise Exhausted
                    call.sent += 1
                    n_attempts += 1
                    if hedger is not None:
                        try:
                            result, reservation, started = await race(
                                self, call, pool, state, tried, send, hedger
                            )
                        except InterlockError as exc:
                            if self._give_up(call, exc, kind_counts):
                                raise Exhausted from None
                            tried.add(state)
                            continue
                        return complete(result, reservation, started)
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
                            n_attempts -= 1  # refused before sending: not an attempt
                            call.sent -= 1
                            continue
                        now = clock.now()
                    attempt_timeout = call.deadline - now
                    cut_by_deadline = True
                    if state.deployment.timeout < attempt_timeout:
                        attempt_timeout = state.deployment.timeout
                        cut_by_deadline = False
                    if call.attempts:
                        reservation.attempt = len(call.attempts) + 1
                        if n_attempts > 1:  # a new group's first try is a fallback
                            obs.retry(state, reservation.attempt, call.last_error, now)
                    trial = state.circuit_mode != CLOSED and self.health.begin_attempt(state, now)
                    try:
                        result = await send(state, request, attempt_timeout)
                    except InterlockError as exc:
                        self._attempt_failed(
                            call, state, reservation, trial, exc, now, cut_by_deadline
                        )
                        if self._give_up(call, exc, kind_counts):
                            raise Exhausted from None
                        tried.add(state)
                        continue
                    except BaseException:
                        self._attempt_aborted(state, reservation, trial)
                        raise
                    if trial:
                        self.health.end_trial(state)
                    return complete(result, reservation, now)
                raise Exhausted
            except Redirect as r:
                nxt = tuple(g for g in self._fallbacks.special(r.kind, group) if g not in visited)
                if nxt:
                    plan, plan_kind, i = nxt, r.kind, 0
                elif plan_kind != r.kind or i >= len(plan):
                    r.error.attempts = tuple(call.attempts)
                    raise r.error from None
                # Moving to a bigger model is routing, not a retry of a failure.
                call.free_retry = True
            except Exhausted:
                pass
        if call.last_error is not None:
            call.last_error.attempts = tuple(call.attempts)
            raise call.last_error
        refused = refusal_error(call, self.clock.now())
        obs.refused(first_group, len(call.attempts), started, self.clock.now(), refused)
        raise refused

    def _give_up(
        self, call: Call, exc: InterlockError, kind_counts: dict[FailureKind, int]
    ) -> bool:
        """After a failed attempt: raise for caller errors, redirect for context-window
        and content-policy errors; True when the group has had enough of this kind."""
        kind = classify(exc)
        t = TREATMENTS[kind]
        if not t.retry_elsewhere:
            if t.fallback is None:
                exc.attempts = tuple(call.attempts)
                raise exc
            raise Redirect(t.fallback, exc) from None
        limit = self.retry.attempts_by_kind.get(kind.value)
        if limit is None:
            return False
        n = kind_counts[kind] = kind_counts.get(kind, 0) + 1
        return n >= limit

    def _note_unavailable(self, call: Call, pool: DeploymentPool, now: float) -> None:
        reasons, wait = pool.unavailable_reasons(call.request, now)
        call.unavailable.append(f"group {pool.group!r}: " + "; ".join(reasons))
        if wait is not None and (call.soonest is None or wait < call.soonest):
            call.soonest = wait

    def _attempt_failed(
        self,
        call: Call,
        state: DeploymentState,
        reservation: Reservation,
        trial: bool,
        exc: InterlockError,
        started: float,
        cut_by_deadline: bool,
    ) -> None:
        end = self.clock.now()
        Ledger.release(reservation, end)
        if trial:
            self.health.end_trial(state)
        # A timeout caused by the call's own deadline says nothing about the deployment.
        if not (cut_by_deadline and isinstance(exc, APITimeoutError)):
            self.failed(state, exc, started, end, reservation.attempt)
        else:
            self.observer.failure(state, exc, started, end, reservation.attempt, counted=False)
        call.attempts.append(
            AttemptRecord(call.request.group, state.id, describe(exc), end - started)
        )
        call.last_error = exc

    def _attempt_aborted(
        self, state: DeploymentState, reservation: Reservation, trial: bool
    ) -> None:
        # Caller cancellation, a lost hedge race, or a foreign error from a user's fn:
        # settle the reservation, hold nothing against the deployment.
        Ledger.release(reservation, self.clock.now())
        if trial:
            self.health.end_trial(state)

    async def attempt(
        self, call: Call, state: DeploymentState, send: Send[R]
    ) -> tuple[R, Reservation, float]:
        """One send to one deployment with its reservation, trial slot and records
        (the hedged path; the plain path inlines the same steps in `run`)."""
        request = call.request
        now = self.clock.now()
        attempt_timeout = call.deadline - now
        cut_by_deadline = True
        if state.deployment.timeout < attempt_timeout:
            attempt_timeout = state.deployment.timeout
            cut_by_deadline = False
        reservation = Ledger.reserve(
            state, request.est_input_tokens + request.est_output_tokens, now
        )
        trial = state.circuit_mode != CLOSED and self.health.begin_attempt(state, now)
        try:
            result = await send(state, request, attempt_timeout)
        except InterlockError as exc:
            self._attempt_failed(call, state, reservation, trial, exc, now, cut_by_deadline)
            raise
        except BaseException:
            self._attempt_aborted(state, reservation, trial)
            raise
        if trial:
            self.health.end_trial(state)
        return result, reservation, now

    def succeeded(
        self,
        state: DeploymentState,
        started: float,
        now: float,
        ttft: float | None = None,
        usage: Usage | None = None,
        attempt: int = 1,
        cost: float | None = None,
    ) -> None:
        """Record a successful attempt (health, strategy feedback, hedge latencies,
        observer). `cost` is what `Ledger.settle` returned for `usage`, if known."""
        latency = now - started
        self.health.record_success(state, latency, now)
        if self._hedgers:
            hedger = self._hedgers.get(state.group)
            if hedger is not None:
                hedger.record(latency)
        feedback = self._pools[state.group].feedback
        if feedback is not None:
            # latency strategies judge plain calls per output token
            state.last_output_tokens = usage.completion_tokens if usage is not None else 0
            feedback(state, True, latency, ttft)
        if ttft is not None:
            record_ttft(state, ttft)
        obs = self.observer
        if obs.listening:
            obs.success(state, started, now, ttft, usage, attempt, cost)

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
        if cooldown and self.shared is not None:
            self.shared.publish_cooldown(state, state.cooldown_until - now)
        feedback = self._pools[state.group].feedback
        if feedback is not None:
            feedback(state, False, now - started, None)
        self.observer.failure(state, error, started, now, attempt, cooldown)

    def _wait_before_retry(
        self,
        pool: DeploymentPool,
        call: Call,
        now: float,
        tried: set[DeploymentState],
        n_waits: int,
        has_fallback: bool,
    ) -> float | None:
        """Seconds to sleep before trying `pool` again, or None to give up on it.

        Sleeping is the last resort: never while a fallback group remains, never past
        the deadline, never when the retry budget could not pay for the next attempt.
        Deployments already tried are retried after a full-jitter backoff; a pool whose
        deployments are all cooling is waited on only if the first one is back within
        `RetryPolicy.max_wait`.
        """
        retry = self.retry
        if has_fallback or n_waits >= retry.max_attempts:
            return None
        if call.sent and not call.budget.can_retry(now):
            return None
        if tried and pool.eligible(call.request, now):
            cap = min(retry.backoff_max, retry.backoff_base * (2**n_waits))
            delay = self.rng.uniform(0.0, cap)
        else:
            _, wait = pool.unavailable_reasons(call.request, now)
            if wait is None or wait > retry.max_wait:
                return None
            delay = wait
        return delay if now + delay < call.deadline else None
