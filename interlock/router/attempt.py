"""One attempt at one deployment, written once, and where its outcome is recorded.

`Attempts.begin` opens an attempt synchronously (reservation, half-open trial slot,
the attempt's timeout); the caller awaits the send; then exactly one of
`Attempt.succeeded`, `Attempts.failed` or `Attempts.aborted` ends it. The pipeline's
plain path inlines the await between these steps (it is the hot path: no extra
coroutine frame on success); the hedged path runs them through `Attempts.run`; a
stream keeps its `Attempt` and ends it when the caller has read it to the end.

Like tower's load-measuring handles, an attempt carries what it needs to record its
own outcome, so neither a hedge nor a stream holds the pipeline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from interlock.clock import Clock
from interlock.errors import APITimeoutError, AttemptRecord, InterlockError
from interlock.failures import FailureKind, classify
from interlock.health.tracker import HealthTracker
from interlock.limits.ledger import Ledger, Reservation
from interlock.limits.shared import SharedLedger
from interlock.observability.observer import Observer
from interlock.observability.stats import record_ttft
from interlock.records.state import CLOSED, DeploymentState
from interlock.router.call_state import Call, describe
from interlock.router.pool import DeploymentPool
from interlock.types import Request, Usage

__all__ = ["Attempt", "Attempts", "Send"]

R = TypeVar("R")

_new = object.__new__

Send = Callable[[DeploymentState, Request, float], Awaitable[R]]
"""``send(state, request, timeout)``: one attempt; raises an InterlockError on failure."""


class Attempt(Reservation):
    """An open attempt: the reservation it holds at its deployment until it ends, and
    what it needs to end itself. One object per attempt (the reservation is the
    attempt), since it is made for every request."""

    __slots__ = (
        "attempts",
        "cut_by_deadline",
        "deadline",
        "request",
        "started",
        "timeout",
        "trial",
    )

    attempts: Attempts
    request: Request
    """The call's request (its id goes on the result)."""
    started: float
    deadline: float
    """The call's deadline (on the attempts' clock): it also bounds the reading of a
    stream after its first chunk, when the attempt's own timeout no longer applies."""
    timeout: float
    """Seconds the send may take: the deployment's timeout or what is left of the
    call's deadline, whichever is shorter."""
    cut_by_deadline: bool
    """The call's deadline, not the deployment's timeout, bounds this attempt."""
    trial: bool
    """The attempt holds one of a half-open deployment's trial slots."""

    @property
    def number(self) -> int:
        """1 for a call's first attempt, 2 for its first retry, ..."""
        return self.attempt

    def succeeded(
        self, tokens: int | None, usage: Usage | None = None, ttft: float | None = None
    ) -> float | None:
        """Settle with the tokens the provider reported (None: keep the estimate) and
        record the success; returns the cost of `usage` (None when unknown). Settling
        twice is a no-op (the ledger's own guard)."""
        if not self.open:
            return None
        attempts = self.attempts
        now = attempts.clock.now()
        cost = Ledger.settle(self, tokens, now, usage)
        attempts.success(
            self.state, self.started, now, ttft, usage, self.attempt, cost, self.request, self
        )
        return cost

    def __repr__(self) -> str:
        ended = "open" if self.open else "ended"
        return f"<Attempt {self.attempt} at {self.state.id} {ended}>"


class Attempts:
    """Opens and ends attempts, and records their outcomes: health, the strategy's
    feedback, the hedger's latencies, shared cooldowns and the observer."""

    __slots__ = ("_latency_sinks", "_pools", "clock", "health", "hedges_sent", "observer", "shared")

    def __init__(
        self,
        clock: Clock,
        health: HealthTracker,
        observer: Observer,
        pools: Mapping[str, DeploymentPool],
        latency_sinks: Mapping[str, Callable[[float], None]],
        shared: SharedLedger | None,
    ) -> None:
        self.clock = clock
        self.health = health
        self.observer = observer
        self.shared = shared
        self._pools = pools
        self._latency_sinks = latency_sinks
        """Group -> what learns from its successful latencies (a hedger's `record`)."""
        self.hedges_sent = 0
        """Hedged attempts sent, all groups together."""

    def begin(self, call: Call, state: DeploymentState, now: float) -> Attempt:
        """Reserve at `state`, take a trial slot if it is half-open, and bound the
        attempt by the deployment's timeout and the call's deadline."""
        # hot path: `Ledger.reserve` and the reservation's __init__, inlined (two
        # Python calls less per attempt); keep them in step with ledger.py.
        request = call.request
        tokens = request.est_input_tokens + request.est_output_tokens
        state.in_flight += 1
        state.requests += 1
        w = state.rate_window
        attempt = _new(Attempt)
        attempt.state = state
        attempt.tokens = tokens
        attempt.tick = w.add(now, tokens) if w is not None else 0
        attempt.open = True
        attempt.attempt = 1
        attempt.remote = None
        attempt.attempts = self
        attempt.request = request
        attempt.started = now
        attempt.deadline = call.deadline
        timeout = call.deadline - now
        if state.deployment.timeout < timeout:
            attempt.timeout = state.deployment.timeout
            attempt.cut_by_deadline = False
        else:
            attempt.timeout = timeout
            attempt.cut_by_deadline = True
        attempt.trial = state.circuit_mode != CLOSED and self.health.begin_attempt(state, now)
        if request.trace is not None:  # the one check tracing adds to the hot path
            request.trace.attempt_begin(attempt)
        return attempt

    def sent(self, attempt: Attempt) -> None:
        """The send returned: give back the trial slot (the outcome is recorded when
        the attempt is settled)."""
        if attempt.trial:
            self.health.end_trial(attempt.state)

    def failed(self, call: Call, attempt: Attempt, exc: InterlockError) -> None:
        """The send raised `exc`: release, record the failure, note it on the call."""
        end = self.clock.now()
        state = attempt.state
        Ledger.release(attempt, end)
        if attempt.trial:
            self.health.end_trial(state)
        request = call.request
        exc.request_id = request.id
        # A timeout caused by the call's own deadline says nothing about the deployment.
        if attempt.cut_by_deadline and isinstance(exc, APITimeoutError):
            self.observer.failure(
                state,
                exc,
                attempt.started,
                end,
                attempt.attempt,
                counted=False,
                request=request,
                handle=attempt,
            )
        else:
            self.failure(
                state, exc, attempt.started, end, attempt.attempt, request=request, handle=attempt
            )
        call.attempts = (
            *call.attempts,
            AttemptRecord(call.request.group, state.id, describe(exc), end - attempt.started),
        )
        call.last_error = exc

    def aborted(self, attempt: Attempt, outcome: str = "cancelled") -> None:
        """Caller cancellation, a lost hedge race, or a foreign error from a user's fn:
        settle the reservation, hold nothing against the deployment."""
        Ledger.release(attempt, self.clock.now())
        if attempt.trial:
            self.health.end_trial(attempt.state)
        trace = attempt.request.trace
        if trace is not None:
            trace.attempt_aborted(attempt, outcome)

    async def run(self, call: Call, state: DeploymentState, send: Send[R]) -> tuple[R, Attempt]:
        """One whole attempt (the hedged path; the plain path inlines the same steps)."""
        attempt = self.begin(call, state, self.clock.now())
        try:
            result = await send(state, call.request, attempt.timeout)
        except InterlockError as exc:
            self.failed(call, attempt, exc)
            raise
        except BaseException:
            self.aborted(attempt)
            raise
        self.sent(attempt)
        return result, attempt

    def success(
        self,
        state: DeploymentState,
        started: float,
        now: float,
        ttft: float | None = None,
        usage: Usage | None = None,
        attempt: int = 1,
        cost: float | None = None,
        request: Request | None = None,
        handle: Attempt | None = None,
    ) -> None:
        """Record a successful attempt. `cost` is what `Ledger.settle` returned for
        `usage`, if known; `request` is the call's, `handle` the attempt itself."""
        latency = now - started
        self.health.success(state, latency, now)
        if self._latency_sinks:
            sink = self._latency_sinks.get(state.group)
            if sink is not None:
                sink(latency)
        feedback = self._pools[state.group].feedback
        if feedback is not None:
            # latency strategies judge plain calls per output token
            state.last_output_tokens = usage.completion_tokens if usage is not None else 0
            feedback(state, True, latency, ttft)
        if ttft is not None:
            record_ttft(state, ttft)
        obs = self.observer
        if obs.listening:
            obs.success(state, started, now, ttft, usage, attempt, cost, request, handle)

    def failure(
        self,
        state: DeploymentState,
        error: InterlockError,
        started: float,
        now: float,
        attempt: int = 1,
        *,
        request: Request | None = None,
        handle: Attempt | None = None,
    ) -> None:
        """Record a failed attempt (health, shared cooldown, strategy feedback, observer).
        A rate limit is not fed to the strategy: it says nothing about the deployment's
        speed, and when its cooldown ends the deployment should take its full share."""
        cooldown = self.health.failure(state, error, now)
        if cooldown and self.shared is not None:
            self.shared.publish_cooldown(state, state.cooldown_until - now)
        feedback = self._pools[state.group].feedback
        if feedback is not None and classify(error) is not FailureKind.RATE_LIMITED:
            feedback(state, False, now - started, None)
        self.observer.failure(
            state, error, started, now, attempt, cooldown, request=request, handle=handle
        )

    def __repr__(self) -> str:
        return f"<Attempts hedges_sent={self.hedges_sent}>"
