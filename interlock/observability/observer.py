"""The Observer: the one object the pipeline tells what happened.

The pipeline calls one method at each point (request start, attempt success and
failure, retry, fallback, refusal; hedges and rate-limit waits for the code that
makes them). The Observer fans out to the Prometheus records, the hooks and the log.
This module holds its construction and the per-request reports; the reports off the
hot path (failures, cooldowns, recoveries, retries, fallbacks, refusals, hedges and
rate-limit waits) are its base class, `FailureReports` in failure_reports.py.

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

from collections.abc import Sequence
from typing import TYPE_CHECKING

from interlock.clock import Clock
from interlock.observability import logs
from interlock.observability.events import RequestStartEvent, SuccessEvent, call_fields
from interlock.observability.failure_reports import FailureReports
from interlock.observability.hooks import Callback, HookRunner
from interlock.observability.metrics import FOLD, PrometheusMetrics

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState
    from interlock.types import Request, Usage

__all__ = ["Observer"]

# Builds a NamedTuple without its Python-level __new__: the per-request events
# (start, success) are built on the hot path whenever a hook listens.
_new = tuple.__new__


def _own_names(s: DeploymentState) -> tuple[str, ...]:
    """The router's own names for a deployment, which redaction never alters."""
    d = s.deployment
    return (s.id, s.group, d.model, d.provider, d.api_base or "")


class Observer(FailureReports):
    """Dispatches router events to metrics, hooks and logs."""

    # The failure side's attributes are slots of `FailureReports`.
    __slots__ = (
        "_start",
        "_success",
        "clock",
        "durations",
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
        # deployment is cooling (see `FailureReports._cooled_down`).
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
                rid, tags, meta = call_fields(request)
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
