"""The Observer's reports off the hot path: failures and what the router does about
them (cooldowns, recoveries, retries, refused retries, fallbacks, refusals, hedges and
rate-limit waits).

`FailureReports` is the base class of `Observer` (observer.py), which sets every
attribute declared here; it is a class of its own so the per-request reports read
apart from these. Unlike a success, each of these is reported whether or not anything
listens: each writes a log line. The metric is counted when metrics are configured, and
an event object is built only when some hook implements its kind. None of them may
break a request: each catches its own errors and reports them through
`internal_error`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

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
    RetryEvent,
    call_fields,
)

if TYPE_CHECKING:
    from interlock.observability.hooks import Channel
    from interlock.observability.metrics import PrometheusMetrics
    from interlock.records.state import DeploymentState
    from interlock.types import Request

__all__ = ["FailureReports"]

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


class FailureReports:
    """Reports of failures, cooldowns, recoveries, retries, fallbacks, refusals, hedges
    and rate-limit waits (the `Observer`'s methods off the hot path)."""

    __slots__ = (
        "_base",
        "_cooldown",
        "_failure",
        "_fallback",
        "_hedge",
        "_last_internal_error",
        "_recovery",
        "_retry",
        "_wait",
        "cooled",
        "listening",
        "metrics",
        "redact",
    )

    # Set by `Observer.__init__` (see there for what each is).
    _base: bool
    _cooldown: Channel
    _failure: Channel
    _fallback: Channel
    _hedge: Channel
    _last_internal_error: float
    _recovery: Channel
    _retry: Channel
    _wait: Channel
    cooled: dict[DeploymentState, float]
    listening: bool
    metrics: PrometheusMetrics | None
    redact: logs.Redactor

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
                rid, tags, meta = call_fields(request)
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
                    RetryEvent(state.group, state.id, attempt, error, *call_fields(request), now)
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
                    FallbackEvent(group, to_group, attempts, error, *call_fields(request), now)
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
                        *call_fields(request),
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
                    HedgeEvent(state.group, state.id, attempt, after, *call_fields(request), now)
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
                    RateLimitWaitEvent(group, deployment_id, seconds, *call_fields(request), now)
                )
        except Exception as exc:
            self.internal_error("rate_limit_wait", exc)

    # --- the observer's own failures --------------------------------------------------

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
