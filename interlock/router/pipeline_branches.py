"""The cold branches of `Pipeline.run` (pipeline.py): what a call does when it cannot
go straight on.

Nothing eligible (`_nothing_eligible`: redirect, wait in the group's capacity line,
back off, or note why and move on), the deadline passing (`_deadline_passed`), paying
for a retry from the retry budget and its refusal (`_pay_for_retry`, `_refuse`), a
failed attempt (`_give_up`), a redirect to a special fallback chain (`_redirect`) and
the final error (`_final_error`). `PipelineBranches` is the base class of `Pipeline`,
which sets every attribute declared here; a class of its own so that pipeline.py reads
as the hot path, and `run` still calls these as methods (no extra call per request).
"""

from __future__ import annotations

import random

from interlock.clock import Clock
from interlock.config import RetryPolicy
from interlock.errors import ContextWindowExceededError, InterlockError
from interlock.failures import TREATMENTS, classify
from interlock.health.retry_budget import is_healthy
from interlock.limits.diagnose import Diagnosis
from interlock.limits.queue import WaitQueue
from interlock.records.state import DeploymentState
from interlock.router.attempt import Attempts
from interlock.router.call_state import (
    NOTHING_TRIED,
    Call,
    GroupDone,
    Redirect,
    deadline_error,
    note_refusal,
    refusal_error,
)
from interlock.router.fallbacks import FallbackTable
from interlock.router.pool import DeploymentPool

__all__ = ["PipelineBranches"]


class PipelineBranches:
    """The `Pipeline`'s steps off the hot path (see the module docstring)."""

    __slots__ = ()

    # Set by `Pipeline.__init__` (see there for what each is).
    _fallbacks: FallbackTable
    attempts: Attempts
    clock: Clock
    queue_wait: float
    retry: RetryPolicy
    rng: random.Random

    def _deadline_passed(self, call: Call, now: float) -> InterlockError:
        err = deadline_error(call)
        started = call.deadline - call.timeout
        self.attempts.observer.refused(
            call.first_group, len(call.attempts), started, now, err, call.request
        )
        return err

    async def _nothing_eligible(
        self,
        call: Call,
        pool: DeploymentPool,
        queue: WaitQueue | None,
        now: float,
    ) -> None:
        """No deployment of `pool` is eligible now. Returns to try the group again
        (after waiting in its capacity queue or a backoff sleep); raises `Redirect`
        when the request fits no deployment's context window, `GroupDone` to move on."""
        diagnosis = pool.diagnose(call.request, now, call.tried)
        if diagnosis.kind == "context":
            tokens = call.request.est_input_tokens + call.request.est_output_tokens
            raise Redirect(
                "context_window",
                ContextWindowExceededError(
                    f"~{tokens} tokens (prompt + max_tokens) exceed the context "
                    f"window of every deployment of group {pool.group!r}"
                ),
            )
        if queue is not None and diagnosis.kind in ("limits", "free"):
            if await self._wait_in_line(call, pool, queue, diagnosis, now):
                return
            now = self.clock.now()
            diagnosis = pool.diagnose(call.request, now, call.tried)
        elif diagnosis.kind != "limits" or call.tried:
            delay = self._backoff(call, pool, diagnosis, now)
            if delay is not None:
                call.waits += 1
                await self.clock.sleep(delay)
                call.tried = NOTHING_TRIED
                return
        self._note_unavailable(call, pool.group, diagnosis)
        raise GroupDone

    async def _wait_in_line(
        self, call: Call, pool: DeploymentPool, queue: WaitQueue, diagnosis: Diagnosis, now: float
    ) -> bool:
        """Wait in the group's capacity queue; True when woken with capacity to try."""
        if diagnosis.kind == "free":
            queue.wake()  # capacity is back: the head of the line goes first
        if call.queued_at is None:
            call.queued_at = now
        left = min(self.queue_wait - (now - call.queued_at), call.deadline - now)
        woken = call.woken
        call.woken = False
        if left <= 0 or not (woken or not queue.full):
            return False
        capacity_in = diagnosis.wait if diagnosis.kind == "limits" else None
        call.woken = await queue.wait(left, capacity_in=capacity_in, front=woken)
        end = self.clock.now()
        self.attempts.observer.rate_limit_wait(pool.group, None, end - now, end, call.request)
        return call.woken

    def _backoff(
        self,
        call: Call,
        pool: DeploymentPool,
        diagnosis: Diagnosis,
        now: float,
    ) -> float | None:
        """Seconds to sleep before trying `pool` again, or None to give up on it.

        Sleeping is the last resort: never while a fallback group remains, never past
        the deadline, never when the retry budget could not pay for the next attempt.
        Deployments already tried are retried after a full-jitter backoff; a pool whose
        deployments are all cooling is waited on only if the first one is back within
        `RetryPolicy.max_wait`.
        """
        retry = self.retry
        if call.has_next or call.waits >= retry.max_attempts:
            return None
        if call.tried and pool.eligible(call.request, now):
            cap = min(retry.backoff_max, retry.backoff_base * (2**call.waits))
            delay = self.rng.uniform(0.0, cap)
        else:
            wait = diagnosis.wait
            if wait is None or wait > retry.max_wait:
                return None
            delay = wait
        if now + delay >= call.deadline:
            return None
        # The attempt after the wait would be a retry the budget cannot pay for, unless
        # it may be the call's free one (some deployment is healthy now).
        if (
            call.sent
            and not call.retry_budget.can_retry(now)
            and not (call.spare and any(is_healthy(s, now) for s in pool.states))
        ):
            call.retry_budget.deny()
            self._refuse(call, pool.group, None, now)
            return None
        return delay

    @staticmethod
    def _note_unavailable(call: Call, group: str, diagnosis: Diagnosis) -> None:
        call.blocked = (*call.blocked, diagnosis)
        call.unavailable = (*call.unavailable, f"group {group!r}: " + "; ".join(diagnosis.reasons))
        wait = diagnosis.wait
        if wait is not None and (call.soonest is None or wait < call.soonest):
            call.soonest = wait

    def _pay_for_retry(self, call: Call, state: DeploymentState, now: float) -> bool:
        """Whether the call may send another attempt, to `state`. Free: the first after
        a redirect (it is routing, not a retry) and the call's first retry to a
        deployment that is healthy now (it adds load only where load is served; it
        still counts against the budget). Others draw on the retry budget; a refusal
        ends the group (the call moves on to its fallbacks, where only a free attempt
        can still be sent) and the final error says so."""
        if call.free_retry:
            call.free_retry = False
            return True
        budget = call.retry_budget
        if call.spare and is_healthy(state, now):
            call.spare = False
            budget.add_free(now)
            return True
        if budget.try_acquire(now):
            return True
        self._refuse(call, state.group, state, now)
        return False

    def _refuse(self, call: Call, group: str, state: DeploymentState | None, now: float) -> None:
        """The retry budget refused a retry of `call` (to `state`, when one was chosen):
        note it for the final error, and log and count it, once per call."""
        if call.refused is not None:
            return
        call.refused = (
            f"a retry was refused by the retry budget of group {call.first_group!r} "
            f"({call.retry_budget.describe(now)})"
        )
        call.refused_at = (group, state.id if state is not None else "")
        self.attempts.observer.retry_refused(
            call.first_group, group, state, len(call.attempts), call.last_error, now
        )

    def _give_up(self, call: Call, exc: InterlockError) -> None:
        """After a failed attempt: raise for caller errors, redirect for context-window
        and content-policy errors, `GroupDone` when the group has had enough of this
        kind; return to try another deployment."""
        kind = classify(exc)
        t = TREATMENTS[kind]
        if not t.retry_elsewhere:
            if t.fallback is None:
                exc.attempts = tuple(call.attempts)
                raise exc
            raise Redirect(t.fallback, exc) from None
        limit = self.retry.attempts_by_kind.get(kind.value)
        if limit is None:
            return
        counts = call.kind_counts
        if counts is None:
            counts = call.kind_counts = {}
        n = counts[kind] = counts.get(kind, 0) + 1
        if n >= limit:
            raise GroupDone from None

    def _redirect(self, call: Call, r: Redirect) -> None:
        """Switch to the special fallback chain for `r.kind`, or raise its error when
        there is none left."""
        group = call.request.group
        nxt = tuple(g for g in self._fallbacks.special(r.kind, group) if g not in call.visited)
        if nxt:
            call.switch(nxt, r.kind)
        elif call.chain_kind != r.kind or call.chain_done:
            r.error.attempts = tuple(call.attempts)
            r.error.request_id = call.request.id
            raise r.error from None
        # Moving to a bigger model is routing, not a retry of a failure.
        call.free_retry = True

    def _final_error(self, call: Call) -> InterlockError:
        """The last attempt's error; when nothing was sent, why not (refusal_error).
        Either says whether the retry budget refused a retry (`note_refusal`)."""
        if call.last_error is not None:
            return note_refusal(call.last_error, call)
        now = self.clock.now()
        refused = note_refusal(refusal_error(call, now), call)
        started = call.deadline - call.timeout
        self.attempts.observer.refused(
            call.first_group, len(call.attempts), started, now, refused, call.request
        )
        return refused
