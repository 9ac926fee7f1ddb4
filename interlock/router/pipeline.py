"""The request pipeline: choose, reserve, send, settle; retry elsewhere; fall back.

One loop serves every kind of request. The decision (eligibility, strategy,
reservation) is synchronous; the only await per attempt on the hot path is the send.
`run` keeps that path inline and hands every cold branch to a named method: nothing
eligible (`_nothing_eligible`: redirect, queue, back off or give up), the shared
ledger's admission (`_admit_shared`), choosing and paying for a retry
(`_choose`, `_pay_for_retry`), hedging (`hedge.race`), a failed attempt
(`_give_up`), a redirect (`_redirect`) and the final error (`_final_error`); the
cold ones are inherited from `PipelineBranches` (pipeline_branches.py). Every
attempt after a call's first draws on the retry budget of the group it started at,
except the call's first retry to a deployment that is healthy now, and everything
happens before the call's one deadline.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import TypeVar

from interlock.clock import Clock
from interlock.config import RetryPolicy
from interlock.errors import InterlockError
from interlock.health.retry_budget import RetryBudget, is_healthy
from interlock.health.tracker import HealthTracker
from interlock.limits.ledger import Ledger
from interlock.limits.queue import WaitQueue
from interlock.observability.observer import Observer
from interlock.records.state import DeploymentState
from interlock.router.attempt import Attempt, Attempts, Send
from interlock.router.call_state import Call, GroupDone, Redirect
from interlock.router.fallbacks import FallbackTable
from interlock.router.hedge import Hedger, race
from interlock.router.pipeline_branches import PipelineBranches
from interlock.router.pool import DeploymentPool
from interlock.types import Request

__all__ = ["Complete", "Pipeline", "Send"]

R = TypeVar("R")
T = TypeVar("T")

Complete = Callable[[R, Attempt], T]
"""``complete(result, attempt)``: runs synchronously after a successful send; settles
the attempt (or hands it on, for streams) and records the success."""


class Pipeline(PipelineBranches):
    """Runs requests against pools with retries, fallbacks, hedges and one deadline."""

    __slots__ = (
        "_chains",
        "_fallbacks",
        "_hedgers",
        "_pools",
        "_retry_budgets",
        "_slow_start",
        "attempts",
        "clock",
        "health",
        "queue_wait",
        "queues",
        "retry",
        "rng",
        "shared",
    )

    def __init__(
        self,
        pools: Mapping[str, DeploymentPool],
        fallbacks: FallbackTable,
        retry: RetryPolicy,
        attempts: Attempts,
        rng: random.Random,
        *,
        hedgers: Mapping[str, Hedger] | None = None,
        queues: Mapping[str, WaitQueue] | None = None,
        queue_wait: float = 0.0,
        retry_budgets: Mapping[str, RetryBudget] | None = None,
    ) -> None:
        self._pools = pools
        self._fallbacks = fallbacks
        self._chains = fallbacks.chains
        self.retry = retry
        self.attempts = attempts
        self.health: HealthTracker = attempts.health
        self.clock: Clock = attempts.clock
        self.shared = attempts.shared
        self.rng = rng
        self._hedgers: Mapping[str, Hedger] = hedgers or {}
        self.queues: Mapping[str, WaitQueue] = queues or {}
        """Per-group lines for capacity (empty: no queueing)."""
        self.queue_wait = queue_wait
        """The longest a call waits in a line, seconds."""
        # `retry_budgets`: those to keep (a runtime change keeps each surviving
        # group's, with what it has counted).
        kept = retry_budgets or {}
        self._retry_budgets = {
            g: kept[g]
            if g in kept
            else RetryBudget(retry.budget_ratio, retry.budget_floor, retry.budget_window)
            for g in pools
        }
        self._slow_start = self.health.policy.slow_start > 0

    def retry_budget(self, group: str) -> RetryBudget:
        """The retry budget of calls that start at `group`."""
        return self._retry_budgets[group]

    def hedger(self, group: str) -> Hedger | None:
        """The hedger of `group`, if it hedges."""
        return self._hedgers.get(group)

    @property
    def observer(self) -> Observer:
        """Where events go (the attempts' observer: one for the whole router)."""
        return self.attempts.observer

    @property
    def hedges_sent(self) -> int:
        """Hedged attempts sent, all groups together."""
        return self.attempts.hedges_sent

    # hot path: the group and attempt loops, with the first attempt's choice inlined,
    # run once per request; splitting them adds a coroutine frame or a call to each.
    async def run(
        self, request: Request, timeout: float, send: Send[R], complete: Complete[R, T]
    ) -> T:
        # The group and attempt loops stay inline on purpose: each await layer costs
        # about a microsecond per request. Everything else is a named method.
        clock = self.clock
        now = clock.now()
        call = Call(
            request,
            now + timeout,
            timeout,
            self._retry_budgets[request.group],
            self._chains[request.group],
            self._fallbacks.max_depth,
        )
        call.retry_budget.record_call(now)
        obs = self.attempts.observer
        if obs.starts:
            obs.request_start(request, now)
        attempts = self.attempts
        max_attempts = self.retry.max_attempts
        group: str | None = request.group  # `Call` started on it
        while group is not None:
            if call.previous is None and not self._hedgers and not self.queues:
                # `_enter` for a call's first group without hedging or queueing, inlined.
                pool, hedger, queue = self._pools[group], None, None
            else:
                pool, hedger, queue = self._enter(call, group)
            try:
                while call.group_attempts < max_attempts:
                    now = clock.now()
                    if now >= call.deadline:
                        raise self._deadline_passed(call, now)
                    if call.sent or queue is not None or self._slow_start:
                        state = self._choose(call, pool, queue, now)
                    else:
                        # `_choose` for a call's first attempt, inlined (one Python
                        # call less per request; keep them in step). No queue here, so
                        # `call.woken` is False already: left unwritten (see `Call`).
                        state = pool.select(request, now, call.tried)
                        if state is not None:
                            call.sent += 1
                            call.group_attempts += 1
                    if state is None:
                        await self._nothing_eligible(call, pool, queue, now)
                        continue
                    if hedger is not None:
                        won = await self._hedged(call, pool, state, send, hedger)
                        if won is None:
                            continue
                        return complete(won[0], won[1])
                    attempt = attempts.begin(call, state, now)
                    if queue is not None and queue.waiting:
                        queue.wake()  # there may be capacity left for the next in line
                    if self.shared is not None and not await self._admit_shared(call, attempt):
                        continue
                    if call.attempts:
                        self._number(call, attempt)
                    try:
                        result = await send(state, request, attempt.timeout)
                    except InterlockError as exc:
                        attempts.failed(call, attempt, exc)
                        self._give_up(call, exc)
                        call.mark_tried(state)
                        continue
                    except BaseException:
                        attempts.aborted(attempt)
                        raise
                    if attempt.trial:
                        attempts.sent(attempt)
                    return complete(result, attempt)
                raise GroupDone
            except Redirect as r:
                self._redirect(call, r)
            except GroupDone:
                pass
            group = call.next_group()
        raise self._final_error(call)

    # --- the synchronous steps of `run` -----------------------------------------------

    def _enter(
        self, call: Call, group: str
    ) -> tuple[DeploymentPool, Hedger | None, WaitQueue | None]:
        """Start on `group`: its pool, its hedger (plain requests only) and its capacity
        queue (only the last group of a chain queues; earlier ones fall back at once)."""
        if call.previous is not None:
            self.attempts.observer.fallback(
                call.previous,
                group,
                len(call.attempts),
                call.last_error,
                self.clock.now(),
                call.request,
            )
        hedger = self._hedgers.get(group) if self._hedgers and not call.request.stream else None
        queue = self.queues.get(group) if self.queues and not call.has_next else None
        return self._pools[group], hedger, queue

    def _choose(
        self, call: Call, pool: DeploymentPool, queue: WaitQueue | None, now: float
    ) -> DeploymentState | None:
        """The deployment for the next attempt, counted as sent; None when none is
        eligible. Raises `GroupDone` when the retry budget refuses the attempt."""
        if queue is not None and queue.waiting and not call.woken:
            return None  # FIFO: nobody overtakes the requests in line
        request = call.request
        if call.sent:
            # A retry (or a fallback group's first try) prefers an untried deployment
            # that is healthy now (see `is_healthy`), else any untried eligible one.
            state = pool.select(request, now, _TriedOrUnhealthy(call.tried, now))
            if state is None:
                state = pool.select(request, now, call.tried)
        else:
            state = pool.select(request, now, call.tried)
        if state is None:
            return None
        if call.woken:
            call.woken = False
        if self._slow_start and not self.health.admit(state, now):
            # A ramping deployment turned this one away: pick another if any.
            state = pool.select(request, now, {*call.tried, state}) or state
        if call.sent and not self._pay_for_retry(call, state, now):
            raise GroupDone
        call.sent += 1
        call.group_attempts += 1
        return state

    # --- the other steps of `run` ----------------------------------------------------

    async def _hedged(
        self,
        call: Call,
        pool: DeploymentPool,
        state: DeploymentState,
        send: Send[R],
        hedger: Hedger,
    ) -> tuple[R, Attempt] | None:
        """One hedged attempt (see `hedge.race`); None when every racer failed in a way
        another deployment may not (the group goes on, as after a plain failure)."""
        try:
            return await race(self.attempts, call, pool, state, send, hedger)
        except InterlockError as exc:
            self._give_up(call, exc)
            call.mark_tried(state)
            return None

    async def _admit_shared(self, call: Call, attempt: Attempt) -> bool:
        """The one Redis round trip of the hot path: admit `attempt` against the global
        windows (and shared cooldowns) of its deployment, while Redis is reachable
        (True at once when it is not). A refusal is not an attempt."""
        shared = self.shared
        assert shared is not None
        if not shared.active:
            return True
        r = attempt
        try:
            admitted = await shared.admit(r)
        except BaseException:
            self.attempts.aborted(attempt)
            raise
        now = self.clock.now()
        if admitted:
            # The round trip took time: the send starts now, within what is left.
            attempt.started = now
            if call.deadline - now < attempt.timeout:
                attempt.timeout = call.deadline - now
                attempt.cut_by_deadline = True
            return True
        Ledger.cancel(r, now)
        if attempt.trial:
            self.health.end_trial(r.state)
        if attempt.request.trace is not None:
            attempt.request.trace.attempt_aborted(attempt, "not_admitted")
        call.group_attempts -= 1
        call.sent -= 1
        return False

    def _number(self, call: Call, attempt: Attempt) -> None:
        """A retry (or a fallback group's first try): number it and say so."""
        number = attempt.attempt = len(call.attempts) + 1
        if call.group_attempts > 1:  # a new group's first try is a fallback, not a retry
            self.attempts.observer.retry(
                attempt.state, number, call.last_error, attempt.started, call.request
            )


class _TriedOrUnhealthy:
    """What a retry avoids while it can: the deployments the call tried, and those
    that are not healthy now (`is_healthy`)."""

    __slots__ = ("now", "tried")

    def __init__(self, tried: AbstractSet[DeploymentState], now: float) -> None:
        self.tried = tried
        self.now = now

    def __contains__(self, s: object) -> bool:
        return s in self.tried or not is_healthy(s, self.now)  # type: ignore[arg-type]
