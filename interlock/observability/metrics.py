"""Prometheus metrics, counted in plain Python and exported at scrape time.

prometheus-client's `Counter.labels(...).inc()` takes a lock and a label lookup per
call: more than the router spends deciding a request. Here each deployment and group
has a slotted record of plain counters (the router runs on one event loop, so no lock
is needed) and a `Collector` turns them into metric families when the registry is
scraped. A successful request costs one list append (its duration; see
`_Histogram`): successes, tokens and spend are read at scrape time from the counters
the router keeps on each deployment's state anyway, and so are the in-flight and
health gauges.

Labels are bounded by the configuration: ``group``, ``deployment`` (the deployment
id), ``outcome``, ``direction``, ``reason``, ``to_group``. No request ids, no keys.

Scraping from another thread (prometheus-client's own HTTP server) is safe (folding a
histogram's pending values takes a lock, appending needs none) but may see counters
mid-update; `serve_metrics` scrapes on the router's loop instead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from interlock.clock import Clock
from interlock.observability.series import (
    FOLD,
    DeploymentSeries,
    GroupSeries,
    Histogram,
)

if TYPE_CHECKING:
    from interlock.observability.hooks import HookRunner
    from interlock.records.state import DeploymentState
    from interlock.types import Usage

__all__ = [
    "DEFAULT_DURATION_BUCKETS",
    "DEFAULT_TTFT_BUCKETS",
    "FOLD",
    "METRIC_NAMES",
    "DeploymentSeries",
    "PrometheusMetrics",
]

DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)  # fmt: skip
DEFAULT_TTFT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0,
)  # fmt: skip

METRIC_NAMES = (
    "requests_total",
    "request_duration_seconds",
    "time_to_first_token_seconds",
    "tokens_total",
    "spend_usd_total",
    "in_flight",
    "deployment_healthy",
    "cooldowns_total",
    "recoveries_total",
    "retries_total",
    "retries_refused_total",
    "fallbacks_total",
    "requests_refused_total",
    "hedges_total",
    "rate_limit_waits_total",
    "rate_limit_wait_seconds_total",
    "hook_errors_total",
    "hook_events_dropped_total",
)
"""Every metric's name after the namespace prefix (``interlock_`` by default)."""


class PrometheusMetrics:
    """Router metrics for prometheus-client.

    ``PrometheusMetrics()`` registers into a registry of its own (`registry`); pass
    ``registry=prometheus_client.REGISTRY`` to use the global one, or any
    `CollectorRegistry`. One instance may serve several routers
    (``Router(..., metrics=m)`` each): their series are labelled by group and
    deployment id, so routers with distinct ids stay apart, and a router that replaces
    another with the same deployments (a second app lifespan) continues its counters,
    which add up. `close()` unregisters the collector, so a new instance can take its
    place in the same registry.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "interlock",
        duration_buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS,
        ttft_buckets: Sequence[float] = DEFAULT_TTFT_BUCKETS,
    ) -> None:
        self._duration_bounds = _check_buckets("duration_buckets", duration_buckets)
        self._ttft_bounds = _check_buckets("ttft_buckets", ttft_buckets)
        if not namespace or not namespace.replace("_", "").isalnum() or namespace[0].isdigit():
            raise ValueError(f"namespace must be a Prometheus name prefix, got {namespace!r}")
        self.namespace = namespace
        self.series: dict[DeploymentState, DeploymentSeries] = {}
        """Per-deployment records."""
        self.pending_durations: dict[DeploymentState, list[float]] = {}
        """Each deployment's `request_duration_seconds` pending list, for the Observer's
        inline `success` (append; `fold` its histogram when it reaches `FOLD`)."""
        self._groups: dict[str, GroupSeries] = {}
        self._runners: list[HookRunner] = []
        self._closed = False
        self._fold_lock = threading.Lock()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(self)

    def bind(
        self, states: Sequence[DeploymentState], clock: Clock, runner: HookRunner | None = None
    ) -> None:
        """Attach to a router's deployments (each Router does this when it is built).
        Several routers may be bound; their series add up by group and deployment id."""
        if self._closed:
            raise ValueError("this PrometheusMetrics was closed; make a new one")
        if runner is not None:
            self._runners.append(runner)
        for s in states:
            if s in self.series:
                raise ValueError(f"deployment {s.id!r} is already bound to these metrics")
        self.track(states, clock)

    def track(self, states: Iterable[DeploymentState], clock: Clock) -> None:
        """Give series to deployments that have none (added at runtime), and new ones
        to deployments that moved to another group (their labels changed)."""
        # Copied, not changed in place: a scrape may be iterating on another thread.
        series = dict(self.series)
        groups = dict(self._groups)
        for s in states:
            old = series.get(s)
            if old is not None and old.group == s.group:
                continue
            series[s] = DeploymentSeries(
                s,
                Histogram(self._duration_bounds, self._fold_lock),
                Histogram(self._ttft_bounds, self._fold_lock),
                clock,
            )
            self.pending_durations[s] = series[s].duration.pending
            groups.setdefault(s.group, GroupSeries())
        self.series = series
        self._groups = groups

    def forget(self, states: Iterable[DeploymentState], groups: Iterable[str] = ()) -> None:
        """Drop the series of deployments removed at runtime (once their last request
        settled) and of groups the router no longer has: they stop being exported."""
        series = dict(self.series)
        for s in states:
            series.pop(s, None)
            self.pending_durations.pop(s, None)
        self.series = series
        # Another router bound to these metrics may still serve a group of that name.
        gone = set(groups) - {v.group for v in series.values()}
        if gone:
            self._groups = {g: v for g, v in self._groups.items() if g not in gone}

    # --- recording (synchronous, O(1) or O(log buckets)) ---------------------------

    def success(
        self,
        state: DeploymentState,
        latency: float,
        ttft: float | None,
        usage: Usage | None = None,
    ) -> None:
        """Record a successful attempt's latency and time to first token.

        The router's `Observer.success` does the same inline (it is the hot path).
        Nothing else is counted per success: the success count, the tokens and the
        spend are read at scrape time from the deployment's state, where the router
        keeps them anyway (`usage` is accepted for compatibility and not used).
        """
        s = self.series[state]
        s.duration.observe(latency)
        if ttft is not None:
            s.ttft.observe(ttft)

    def unreported(self, state: DeploymentState, usage: Usage) -> None:
        """The ledger counted `usage` on `state` but no success reports it (see
        `DeploymentSeries`): keep it out of the tokens metric."""
        s = self.series.get(state)
        if s is not None:
            s.unreported_input += usage.prompt_tokens
            s.unreported_output += usage.completion_tokens
            s.unreported_spend += state.cost_of(usage)

    def failure(self, state: DeploymentState, outcome: str) -> None:
        outcomes = self.series[state].outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    def cooldown(self, state: DeploymentState) -> None:
        self.series[state].cooldowns += 1

    def recovery(self, state: DeploymentState) -> None:
        self.series[state].recoveries += 1

    def _group(self, group: str) -> GroupSeries:
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = GroupSeries()
        return g

    def retry(self, group: str) -> None:
        self._group(group).retries += 1

    def retry_refused(self, group: str) -> None:
        self._group(group).retries_refused += 1

    def fallback(self, group: str, to_group: str) -> None:
        f = self._group(group).fallbacks
        f[to_group] = f.get(to_group, 0) + 1

    def refused(self, group: str, reason: str) -> None:
        r = self._group(group).refused
        r[reason] = r.get(reason, 0) + 1

    def hedge(self, group: str) -> None:
        self._group(group).hedges += 1

    def rate_limit_wait(self, group: str, seconds: float) -> None:
        g = self._group(group)
        g.waits += 1
        g.wait_seconds += seconds

    def close(self) -> None:
        """Unregister from the registry (idempotent): a new `PrometheusMetrics` may then
        register in the same registry, e.g. in a second app lifespan of one process.
        Routers bound to this instance keep working; nothing reads their series any
        more."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(KeyError):  # unregistered by hand already
            self.registry.unregister(self)

    unregister = close

    @property
    def closed(self) -> bool:
        return self._closed

    # --- exposition ------------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        return _Families(self.namespace).all()

    def collect(self) -> Iterable[Metric]:
        f = _Families(self.namespace)
        for dl, same in self._by_labels().items():
            self._collect_deployment(f, dl, same)
        for name, g in self._groups.items():
            f.retries.add_metric([name], g.retries)
            f.retries_refused.add_metric([name], g.retries_refused)
            f.hedges.add_metric([name], g.hedges)
            f.waits.add_metric([name], g.waits)
            f.wait_seconds.add_metric([name], g.wait_seconds)
            for to, n in g.fallbacks.items():
                f.fallbacks.add_metric([name, to], n)
            for reason, n in g.refused.items():
                f.refused.add_metric([name, reason], n)
        f.hook_errors.add_metric([], sum(r.errors for r in self._runners))
        f.hook_dropped.add_metric([], sum(r.dropped for r in self._runners))
        return f.all()

    def _by_labels(self) -> dict[tuple[str, str], list[DeploymentSeries]]:
        """The series of each ``(group, deployment)``: one per router bound with it, the
        last bound last."""
        out: dict[tuple[str, str], list[DeploymentSeries]] = {}
        for s in self.series.values():
            out.setdefault((s.group, s.id), []).append(s)
        return out

    @staticmethod
    def _collect_deployment(
        f: _Families, labels: tuple[str, str], same: list[DeploymentSeries]
    ) -> None:
        dl = list(labels)
        f.requests.add_metric(
            [*dl, "success"], sum(s.state.successes - s.successes_before for s in same)
        )
        outcomes: dict[str, int] = {}
        for s in same:
            for outcome, n in s.outcomes.items():
                outcomes[outcome] = outcomes.get(outcome, 0) + n
        for outcome, n in outcomes.items():
            f.requests.add_metric([*dl, outcome], n)
        for family, hists in (
            (f.duration, [s.duration for s in same]),
            (f.ttft, [s.ttft for s in same]),
        ):
            cumulative = [h.cumulative() for h in hists]
            buckets = [
                (le, sum(c[i][1] for c in cumulative)) for i, (le, _) in enumerate(cumulative[0])
            ]
            family.add_metric(dl, buckets, sum(h.sum for h in hists))
        tin = sum(s.state.input_tokens - s.input_before - s.unreported_input for s in same)
        tout = sum(s.state.output_tokens - s.output_before - s.unreported_output for s in same)
        f.tokens.add_metric([*dl, "input"], tin)
        f.tokens.add_metric([*dl, "output"], tout)
        f.spend.add_metric(
            dl, sum(s.state.spend - s.spend_before - s.unreported_spend for s in same)
        )
        f.in_flight.add_metric(dl, sum(s.state.in_flight for s in same))
        last = same[-1]  # the newest router's view of the deployment's health
        f.healthy.add_metric(dl, 1.0 if last.state.cooldown_until <= last.clock.now() else 0.0)
        f.cooldowns.add_metric(dl, sum(s.cooldowns for s in same))
        f.recoveries.add_metric(dl, sum(s.recoveries for s in same))

    def __repr__(self) -> str:
        return f"<PrometheusMetrics namespace={self.namespace!r} deployments={len(self.series)}>"


def _check_buckets(name: str, buckets: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(b) for b in buckets if b != float("inf"))
    if not out or any(b <= 0 for b in out) or list(out) != sorted(set(out)):
        raise ValueError(f"{name} must be increasing positive numbers, got {list(buckets)!r}")
    return out


class _Families:
    """Empty metric families, filled by `PrometheusMetrics.collect`."""

    def __init__(self, ns: str) -> None:
        d = ["group", "deployment"]
        g = ["group"]
        self.requests = CounterMetricFamily(
            f"{ns}_requests",
            "Attempts sent to a deployment, by outcome (success or the failure kind).",
            labels=[*d, "outcome"],
        )
        self.duration = HistogramMetricFamily(
            f"{ns}_request_duration_seconds",
            "Seconds from send to complete response of successful attempts.",
            labels=d,
        )
        self.ttft = HistogramMetricFamily(
            f"{ns}_time_to_first_token_seconds",
            "Seconds from send to the first chunk of successful streams.",
            labels=d,
        )
        self.tokens = CounterMetricFamily(
            f"{ns}_tokens",
            "Tokens the providers reported, by direction (input or output).",
            labels=[*d, "direction"],
        )
        self.spend = CounterMetricFamily(
            f"{ns}_spend_usd", "US dollars spent, by the deployments' per-token prices.", labels=d
        )
        self.in_flight = GaugeMetricFamily(f"{ns}_in_flight", "Attempts in flight now.", labels=d)
        self.healthy = GaugeMetricFamily(
            f"{ns}_deployment_healthy",
            "1 when the deployment is in rotation, 0 while it is cooling down.",
            labels=d,
        )
        self.cooldowns = CounterMetricFamily(
            f"{ns}_cooldowns", "Times a deployment was taken out of rotation.", labels=d
        )
        self.recoveries = CounterMetricFamily(
            f"{ns}_recoveries",
            "Times a cooled deployment served a request successfully again.",
            labels=d,
        )
        self.retries = CounterMetricFamily(
            f"{ns}_retries", "Further attempts in a group after a failure.", labels=g
        )
        self.retries_refused = CounterMetricFamily(
            f"{ns}_retries_refused",
            "Retries the group's retry budget refused (the call moved on to its "
            "fallbacks or failed).",
            labels=g,
        )
        self.fallbacks = CounterMetricFamily(
            f"{ns}_fallbacks",
            "Requests moved from a group to its fallback group.",
            labels=[*g, "to_group"],
        )
        self.refused = CounterMetricFamily(
            f"{ns}_requests_refused",
            "Requests the router gave up on without a further attempt, by reason.",
            labels=[*g, "reason"],
        )
        self.hedges = CounterMetricFamily(f"{ns}_hedges", "Hedged attempts sent.", labels=g)
        self.waits = CounterMetricFamily(
            f"{ns}_rate_limit_waits", "Times a request waited for rate headroom.", labels=g
        )
        self.wait_seconds = CounterMetricFamily(
            f"{ns}_rate_limit_wait_seconds",
            "Seconds requests spent waiting for rate headroom.",
            labels=g,
        )
        self.hook_errors = CounterMetricFamily(
            f"{ns}_hook_errors", "Hook calls that raised or timed out."
        )
        self.hook_dropped = CounterMetricFamily(
            f"{ns}_hook_events_dropped", "Events dropped because the hook queue was full."
        )

    def all(self) -> list[Metric]:
        return [
            self.requests, self.duration, self.ttft, self.tokens, self.spend, self.in_flight,
            self.healthy, self.cooldowns, self.recoveries, self.retries,
            self.retries_refused, self.fallbacks, self.refused, self.hedges, self.waits,
            self.wait_seconds, self.hook_errors, self.hook_dropped,
        ]  # fmt: skip
