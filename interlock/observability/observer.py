"""The Observer: the one object the pipeline tells what happened.

The pipeline calls one method at each point (request start, attempt success and
failure, retry, fallback, refusal; hedges and rate-limit waits for the code that
makes them). The Observer fans out to the Prometheus records, the hooks and the log.

Cost: on the hot path (request start, success) the pipeline first reads
`Observer.starts` / `Observer.listening`, which are False when neither hooks nor
metrics are configured (and no deployment is waiting to be reported as recovered);
then it calls nothing. `request_start` and `success` are kept flat (a single sync
hook is called directly, durations are queued for the histogram in batches,
successes and tokens are read from the ledger at scrape time): in CPython a Python
call costs about as much as that work, and these run on every request. Failure-side events (retry,
fallback, cooldown, refusal) always reach the Observer's methods, so their log lines
appear with nothing configured. Event objects are built only for an event kind some
hook implements. Nothing here may break a request: every path catches its own errors
and logs them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interlock.clock import Clock
from interlock.errors import DeadlineExceededError, InterlockError
from interlock.failures import TREATMENTS, FailureKind, classify
from interlock.observability import logs
from interlock.observability.events import (
    CooldownEvent,
    FailureEvent,
    FailureKindName,
    FallbackEvent,
    HedgeEvent,
    RateLimitWaitEvent,
    RecoveryEvent,
    RequestStartEvent,
    RetryEvent,
    SuccessEvent,
)
from interlock.observability.hooks import Callback, HookRunner
from interlock.observability.metrics import FOLD, PrometheusMetrics
from interlock.types import NO_METADATA, Request

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState
    from interlock.types import Usage

__all__ = ["Observer"]

# Builds a NamedTuple without its Python-level __new__: the per-request events
# (start, success) are built on the hot path whenever a hook listens.
_new = tuple.__new__

_KIND: dict[FailureKind, FailureKindName] = {
    FailureKind.CALLER: "caller",
    FailureKind.CONTEXT_WINDOW: "context_window",
    FailureKind.CONTENT_POLICY: "content_policy",
    FailureKind.RATE_LIMITED: "rate_limited",
    FailureKind.BAD_CREDENTIALS: "bad_credentials",
    FailureKind.UNUSABLE: "unusable",
    FailureKind.TIMEOUT: "timeout",
    FailureKind.CONNECTION: "connection",
    FailureKind.SERVER_ERROR: "server_error",
    FailureKind.MALFORMED: "malformed",
}


_NO_TAGS: frozenset[str] = frozenset()


def _call_fields(request: Request | None) -> tuple[str, frozenset[str], Mapping[str, Any]]:
    """What every event of a call says about it: its id, tags and metadata."""
    if request is None:
        return ("", _NO_TAGS, NO_METADATA)
    return (request.id, request.tags, request.metadata)


def _own_names(s: DeploymentState) -> tuple[str, ...]:
    """The router's own names for a deployment, which redaction never alters."""
    d = s.deployment
    return (s.id, s.group, d.model, d.provider, d.api_base or "")


class Observer:
    """Dispatches router events to metrics, hooks and logs."""

    __slots__ = (
        "_base",
        "_cooldown",
        "_failure",
        "_fallback",
        "_hedge",
        "_last_internal_error",
        "_recovery",
        "_retry",
        "_start",
        "_success",
        "_wait",
        "clock",
        "cooled",
        "durations",
        "listening",
        "metrics",
        "redact",
        "reports_success",
        "runner",
        "start_hook",
        "starts",
        "success_hook",
    )

    def __init__(
        self,
        clock: Clock,
        states: Sequence[DeploymentState] = (),
        hooks: Sequence[object] = (),
        metrics: PrometheusMetrics | None = None,
        *,
        hook_queue_size: int = 10_000,
        hook_timeout: float = 5.0,
        traced: bool = False,
    ) -> None:
        self.clock = clock
        self.runner = HookRunner(hook_queue_size, hook_timeout)
        ch = self.runner.channels(hooks)
        self._start = ch["on_request_start"]
        self._success = ch["on_success"]
        self._failure = ch["on_failure"]
        self._retry = ch["on_retry"]
        self._fallback = ch["on_fallback"]
        self._cooldown = ch["on_cooldown"]
        self._recovery = ch["on_recovery"]
        self._hedge = ch["on_hedge"]
        self._wait = ch["on_rate_limit_wait"]
        self.metrics = metrics
        # What the hot path reads (Pipeline.run and Pipeline.succeeded inline
        # `request_start` and `success` with these; see the Cost section of
        # docs/observability.md): the metrics' pending duration lists, whether some
        # hook wants success events, and the one sync callback when that is all there
        # is (called directly, not through a Channel).
        self.durations: dict[DeploymentState, list[float]] | None = None
        if metrics is not None:
            metrics.bind(states, clock, self.runner)
            self.durations = metrics.pending_durations
        self.reports_success: bool = self._success.active
        self.success_hook: Callback | None = self._success.only
        self.redact = logs.Redactor(
            (v for s in states for v in s.deployment.secret_values()),
            keep=(name for s in states for name in _own_names(s)),
        )
        # Only request starts and successes are on the hot path; everything else is
        # reported from the failure side, and recoveries are watched for while a
        # deployment is cooling (see `_cooled_down`).
        # Tracing ends an attempt's span in `success`, so it needs the call too.
        self._base = metrics is not None or self._success.active or traced
        self.listening: bool = self._base
        """Whether the pipeline must call `success`."""
        self.starts: bool = self._start.active
        """Whether the pipeline must call `request_start` (a hook wants it)."""
        self.start_hook: Callback | None = self._start.only
        """The one sync `on_request_start` callback, when that is all there is: the
        pipeline calls it directly (see `request_start` for the general case)."""
        self.cooled: dict[DeploymentState, float] = {}
        """Deployments cooled down, and since when, until they are seen to recover."""
        self._last_internal_error = -1e9

    # --- hot path ------------------------------------------------------------------

    def request_start(self, request: Request, now: float) -> None:
        """A request entered the router."""
        if not self.starts:
            return
        try:
            event = _new(
                RequestStartEvent,
                (
                    request.group,
                    request.requested,
                    request.kind,
                    request.stream,
                    request.id,
                    request.tags,
                    request.metadata,
                    now,
                ),
            )
            hook = self.start_hook
            if hook is not None:
                try:
                    hook(event)
                except Exception as exc:
                    self.runner.failed(hook, "on_request_start", exc)
            else:
                self._start.emit(event)
        except Exception as exc:
            self.internal_error("request_start", exc)

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
        handle: object = None,
    ) -> None:
        """An attempt on `state` that began at `started` succeeded at `now`. `cost` is
        what `Ledger.settle` returned for `usage`, when known (else it is priced here,
        alike). `request` is the call's; `handle` the attempt, for its trace span.

        The one report every request makes: kept flat, since a Python call costs as
        much as the work itself."""
        try:
            latency = now - started
            durations = self.durations
            if durations is not None:
                # = PrometheusMetrics.success(state, latency, ttft): the duration is
                # bucketed in batches; successes and tokens are read at scrape time.
                pending = durations[state]
                pending.append(latency)
                if ttft is not None or len(pending) >= FOLD:
                    self.observe_more(state, ttft)
            if request is not None and request.trace is not None:
                request.trace.attempt_ok(handle, usage, cost)
            if self.reports_success:
                rid, tags, meta = _call_fields(request)
                if usage is None:
                    event = _new(
                        SuccessEvent,
                        (state.group, state.id, attempt, latency, ttft, None, None, None, None,
                         0.0, rid, tags, meta, now),
                    )  # fmt: skip
                else:
                    pd = usage.prompt_tokens_details
                    cd = usage.completion_tokens_details
                    if cost is None:  # the ledger prices usage alike
                        cost = state.cost_of(usage)
                    event = _new(
                        SuccessEvent,
                        (state.group, state.id, attempt, latency, ttft, usage.prompt_tokens,
                         usage.completion_tokens, None if pd is None else pd.cached_tokens,
                         None if cd is None else cd.reasoning_tokens, cost, rid, tags, meta,
                         now),
                    )  # fmt: skip
                hook = self.success_hook
                if hook is not None:
                    try:
                        hook(event)
                    except Exception as exc:
                        self.runner.failed(hook, "on_success", exc)
                else:
                    self._success.emit(event)
            cooled = self.cooled
            # Only an attempt sent after the cooldown began proves the deployment is back.
            if cooled and cooled.get(state, now) <= started:
                self.recovery(state, now, request.id if request is not None else None)
        except Exception as exc:
            self.internal_error("success", exc)

    def observe_more(self, state: DeploymentState, ttft: float | None) -> None:
        """The rare part of a success's metrics: fold a full batch of durations,
        observe a stream's time to first token."""
        assert self.metrics is not None
        s = self.metrics.series[state]
        if len(s.duration.pending) >= FOLD:
            s.duration.fold()
        if ttft is not None:
            s.ttft.observe(ttft)

    def unreported(self, state: DeploymentState, usage: Usage) -> None:
        """The ledger counted `usage` on `state` for a stream but no success reports it
        (an estimate for a stream without usage, or a stream that failed or was closed
        early): the tokens metric, read from the ledger's counts, leaves it out."""
        if self.metrics is not None:
            try:
                self.metrics.unreported(state, usage)
            except Exception as exc:
                self.internal_error("unreported", exc)

    # --- failure side (always called) ----------------------------------------------

    def failure(
        self,
        state: DeploymentState,
        error: InterlockError,
        started: float,
        now: float,
        attempt: int = 1,
        cooldown: float = 0.0,
        *,
        counted: bool = True,
        request: Request | None = None,
        handle: object = None,
    ) -> None:
        """An attempt failed. `counted=False` when the pipeline did not hold it against
        the deployment (an attempt cut by the call's own deadline); `cooldown` is what
        `HealthTracker.failure` returned; `request` is the call's (None for a health
        probe), `handle` the attempt (for its trace span)."""
        try:
            fk = classify(error)
            kind: FailureKindName = _KIND[fk] if counted else "deadline"
            m = self.metrics
            if m is not None:
                m.failure(state, kind)
            if request is not None and request.trace is not None:
                request.trace.attempt_failed(handle, error, kind)
            if self._failure.active:
                rid, tags, meta = _call_fields(request)
                self._failure.emit(
                    FailureEvent(
                        state.group,
                        state.id,
                        attempt,
                        now - started,
                        error,
                        kind,
                        counted and TREATMENTS[fk].counts_against_health,
                        cooldown,
                        rid,
                        tags,
                        meta,
                        now,
                    )
                )
            if cooldown > 0:
                self._cooled_down(
                    state, error, cooldown, now, request.id if request is not None else None
                )
        except Exception as exc:
            self.internal_error("failure", exc)

    def _cooled_down(
        self,
        state: DeploymentState,
        error: InterlockError,
        seconds: float,
        now: float,
        request_id: str | None = None,
    ) -> None:
        logs.log_cooldown(state.group, state.id, seconds, state.ejections, error, self.redact)
        if self.metrics is not None:
            self.metrics.cooldown(state)
        if self._cooldown.active:
            self._cooldown.emit(
                CooldownEvent(
                    state.group,
                    state.id,
                    seconds,
                    state.cooldown_until,
                    state.ejections,
                    error,
                    request_id,
                    now,
                )
            )
        self.cooled[state] = now
        self.listening = True

    def recovery(self, state: DeploymentState, now: float, request_id: str | None = None) -> None:
        """`state`, cooled earlier, served a request again (the request `request_id`;
        None for a probe). Called on the first success after a cooldown; idempotent, so
        a half-open probe may call it too."""
        started = self.cooled.pop(state, None)
        if not self.cooled:
            self.listening = self._base
        if started is None:
            return
        logs.log_recovery(state.group, state.id, now - started)
        if self.metrics is not None:
            self.metrics.recovery(state)
        if self._recovery.active:
            self._recovery.emit(
                RecoveryEvent(state.group, state.id, now - started, request_id, now)
            )

    def retry(
        self,
        state: DeploymentState,
        attempt: int,
        error: InterlockError | None,
        now: float,
        request: Request | None = None,
    ) -> None:
        """Attempt number `attempt` goes to `state`, in the group of a failed one."""
        try:
            logs.log_retry(state.group, state.id, attempt, error, self.redact)
            if self.metrics is not None:
                self.metrics.retry(state.group)
            if self._retry.active:
                self._retry.emit(
                    RetryEvent(state.group, state.id, attempt, error, *_call_fields(request), now)
                )
        except Exception as exc:
            self.internal_error("retry", exc)

    def retry_refused(
        self,
        budget_group: str,
        group: str,
        state: DeploymentState | None,
        attempts: int,
        error: InterlockError | None,
        now: float,
    ) -> None:
        """The retry budget of `budget_group` (the group the call asked for) refused a
        retry in `group` (to `state`, when one was chosen) after `attempts` attempts
        whose last failed with `error`: a WARNING line and the `retries_refused`
        metric."""
        try:
            logs.log_retry_refused(
                budget_group,
                group,
                state.id if state is not None else None,
                attempts,
                error,
                self.redact,
            )
            if self.metrics is not None:
                self.metrics.retry_refused(budget_group)
        except Exception as exc:
            self.internal_error("retry_refused", exc)

    def fallback(
        self,
        group: str,
        to_group: str,
        attempts: int,
        error: InterlockError | None,
        now: float,
        request: Request | None = None,
    ) -> None:
        """The request leaves `group` for `to_group` after `attempts` attempts."""
        try:
            logs.log_fallback(group, to_group, attempts, error, self.redact)
            if self.metrics is not None:
                self.metrics.fallback(group, to_group)
            if self._fallback.active:
                self._fallback.emit(
                    FallbackEvent(group, to_group, attempts, error, *_call_fields(request), now)
                )
        except Exception as exc:
            self.internal_error("fallback", exc)

    def refused(
        self,
        group: str,
        attempts: int,
        started: float,
        now: float,
        error: InterlockError,
        request: Request | None = None,
    ) -> None:
        """The router gives up on a request for `group` with `error` (no deployment
        available, or the deadline passed before another attempt)."""
        try:
            logs.log_refused(group, attempts, now - started, error, self.redact)
            if self.metrics is not None:
                reason = "deadline" if isinstance(error, DeadlineExceededError) else "no_deployment"
                self.metrics.refused(group, reason)
            if self._failure.active:
                self._failure.emit(
                    FailureEvent(
                        group,
                        None,
                        attempts,
                        now - started,
                        error,
                        "refused",
                        False,
                        0.0,
                        *_call_fields(request),
                        now,
                    )
                )
        except Exception as exc:
            self.internal_error("refused", exc)

    # --- for hedging and rate-limit waits (called by the code that does them) -------

    def hedge(
        self,
        state: DeploymentState,
        attempt: int,
        after: float,
        now: float,
        request: Request | None = None,
    ) -> None:
        """A hedged attempt number `attempt` was sent to `state`, `after` seconds into
        the request."""
        try:
            logs.log_hedge(state.group, state.id, attempt, after)
            if self.metrics is not None:
                self.metrics.hedge(state.group)
            if self._hedge.active:
                self._hedge.emit(
                    HedgeEvent(state.group, state.id, attempt, after, *_call_fields(request), now)
                )
        except Exception as exc:
            self.internal_error("hedge", exc)

    def rate_limit_wait(
        self,
        group: str,
        deployment_id: str | None,
        seconds: float,
        now: float,
        request: Request | None = None,
    ) -> None:
        """A request for `group` is about to wait `seconds` for rate-limit headroom."""
        try:
            logs.log_rate_limit_wait(group, deployment_id, seconds)
            if self.metrics is not None:
                self.metrics.rate_limit_wait(group, seconds)
            if self._wait.active:
                self._wait.emit(
                    RateLimitWaitEvent(group, deployment_id, seconds, *_call_fields(request), now)
                )
        except Exception as exc:
            self.internal_error("rate_limit_wait", exc)

    # --- runtime changes -------------------------------------------------------------

    def watch(self, states: Sequence[DeploymentState]) -> None:
        """The router's deployments changed (interlock/router/runtime.py): give new ones
        metric series, and redact their keys too. Keys of deployments no longer in
        `states` stay redacted: their last requests may still fail, and a rotated-out
        key must not show up in a log line either."""
        if self.metrics is not None:
            self.metrics.track(states, self.clock)
        secrets = [v for s in states for v in s.deployment.secret_values()]
        self.redact = logs.Redactor(
            [*self.redact.secrets, *secrets],
            keep=(name for s in states for name in _own_names(s)),
        )

    def forget(self, states: Sequence[DeploymentState], groups: Sequence[str] = ()) -> None:
        """Deployments removed at runtime have settled their last request: drop their
        metric series (and those of `groups` the router no longer has)."""
        for s in states:
            self.cooled.pop(s, None)
        if self.metrics is not None:
            self.metrics.forget(states, groups)

    # --- lifecycle -----------------------------------------------------------------

    async def aclose(self, flush_timeout: float = 1.0) -> None:
        """Deliver queued events to async hooks (up to `flush_timeout`), then stop."""
        await self.runner.aclose(flush_timeout)

    def internal_error(self, where: str, exc: Exception) -> None:
        """Log a bug in instrumentation (rate-limited); the request goes on."""
        # A bug in instrumentation must not fail requests; say so, at most once a minute.
        now = time.monotonic()
        if now - self._last_internal_error >= 60.0:
            self._last_internal_error = now
            logs.logger.error(
                "interlock observer failed in %s; the request was not affected",
                where,
                exc_info=(type(exc), exc, exc.__traceback__),
                extra={"event": "observer_error", "where": where},
            )

    def __repr__(self) -> str:
        hooks = sum(
            len(c.synchronous) + len(c.asynchronous)
            for c in (
                self._start,
                self._success,
                self._failure,
                self._retry,
                self._fallback,
                self._cooldown,
                self._recovery,
                self._hedge,
                self._wait,
            )
        )
        return (
            f"<Observer callbacks={hooks} metrics={'on' if self.metrics else 'off'} "
            f"hook_errors={self.runner.errors} dropped={self.runner.dropped}>"
        )
