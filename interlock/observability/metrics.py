"""Prometheus metrics, counted in plain Python and exported at scrape time.

prometheus-client's `Counter.labels(...).inc()` takes a lock and a label lookup per
call: more than the router spends deciding a request. Here each deployment and group
has a slotted record of plain counters (the router runs on one event loop, so no lock
is needed) and a `Collector` turns them into metric families when the registry is
scraped. In-flight and health gauges are read from the router's live state at
scrape time and cost nothing per request.

Labels are bounded by the configuration: ``group``, ``deployment`` (the deployment
id), ``outcome``, ``direction``, ``reason``, ``to_group``. No request ids, no keys.

Scraping from another thread (prometheus-client's own HTTP server) is safe but may see
a histogram mid-update; `serve_metrics` scrapes on the router's loop instead.
"""

from __future__ import annotations

from bisect import bisect_left
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

if TYPE_CHECKING:
    from interlock.observability.hooks import HookRunner
    from interlock.router.state import DeploymentState
    from interlock.types import Usage

__all__ = [
    "DEFAULT_DURATION_BUCKETS",
    "DEFAULT_TTFT_BUCKETS",
    "METRIC_NAMES",
    "PrometheusMetrics",
]

DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)  # fmt: skip
DEFAULT_TTFT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0,
)  # fmt: skip

OUTCOMES = (
    "success",
    "caller",
    "context_window",
    "content_policy",
    "rate_limited",
    "bad_credentials",
    "timeout",
    "connection",
    "server_error",
    "malformed",
    "deadline",
)

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
    "fallbacks_total",
    "requests_refused_total",
    "hedges_total",
    "rate_limit_waits_total",
    "rate_limit_wait_seconds_total",
    "hook_errors_total",
    "hook_events_dropped_total",
)
"""Every metric's name after the namespace prefix (``interlock_`` by default)."""


class _Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # `le` buckets: a value equal to a bound belongs to that bound's bucket.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            out.append((_le(bound), total))
        out.append(("+Inf", total + self.counts[-1]))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


class _DeploymentSeries:
    __slots__ = (
        "cooldowns",
        "duration",
        "group",
        "id",
        "input_tokens",
        "outcomes",
        "output_tokens",
        "recoveries",
        "state",
        "successes",
        "ttft",
    )

    def __init__(self, state: DeploymentState, duration: _Histogram, ttft: _Histogram) -> None:
        self.state = state
        self.group = state.group
        self.id = state.id
        self.successes = 0
        self.outcomes = dict.fromkeys(OUTCOMES[1:], 0)
        self.duration = duration
        self.ttft = ttft
        self.input_tokens = 0
        self.output_tokens = 0
        self.cooldowns = 0
        self.recoveries = 0


class _GroupSeries:
    __slots__ = ("fallbacks", "hedges", "refused", "retries", "wait_seconds", "waits")

    def __init__(self) -> None:
        self.retries = 0
        self.hedges = 0
        self.waits = 0
        self.wait_seconds = 0.0
        self.fallbacks: dict[str, int] = {}
        self.refused = {"no_deployment": 0, "deadline": 0}


class PrometheusMetrics:
    """Router metrics for prometheus-client.

    ``PrometheusMetrics()`` registers into a registry of its own (`registry`); pass
    ``registry=prometheus_client.REGISTRY`` to use the global one, or any
    `CollectorRegistry`. Give it to one Router (``Router(..., metrics=m)``); a second
    router needs a second instance with another registry (or another `namespace`).
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
        self._series: dict[DeploymentState, _DeploymentSeries] = {}
        self._groups: dict[str, _GroupSeries] = {}
        self._clock: Clock | None = None
        self._runner: HookRunner | None = None
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(self)

    def bind(
        self, states: Sequence[DeploymentState], clock: Clock, runner: HookRunner | None = None
    ) -> None:
        """Attach to a router's deployments (the Router does this)."""
        if self._clock is not None:
            raise ValueError(
                "this PrometheusMetrics already serves a router; give each router its own "
                "(with its own registry or namespace)"
            )
        self._clock = clock
        self._runner = runner
        for s in states:
            self._series[s] = _DeploymentSeries(
                s, _Histogram(self._duration_bounds), _Histogram(self._ttft_bounds)
            )
            self._groups.setdefault(s.group, _GroupSeries())

    # --- recording (synchronous, O(1) or O(log buckets)) ---------------------------

    def success(
        self, state: DeploymentState, latency: float, ttft: float | None, usage: Usage | None
    ) -> None:
        # The hot one: kept flat. Spend is not summed here: it is tokens times the
        # deployment's (fixed) prices, computed at scrape time.
        s = self._series[state]
        s.successes += 1
        h = s.duration
        h.counts[bisect_left(h.bounds, latency)] += 1
        h.sum += latency
        if ttft is not None:
            s.ttft.observe(ttft)
        if usage is not None:
            s.input_tokens += usage.prompt_tokens
            s.output_tokens += usage.completion_tokens

    def failure(self, state: DeploymentState, outcome: str) -> None:
        outcomes = self._series[state].outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    def cooldown(self, state: DeploymentState) -> None:
        self._series[state].cooldowns += 1

    def recovery(self, state: DeploymentState) -> None:
        self._series[state].recoveries += 1

    def _group(self, group: str) -> _GroupSeries:
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = _GroupSeries()
        return g

    def retry(self, group: str) -> None:
        self._group(group).retries += 1

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

    # --- exposition ------------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        return _Families(self.namespace).all()

    def collect(self) -> Iterable[Metric]:
        f = _Families(self.namespace)
        now = self._clock.now() if self._clock is not None else 0.0
        for s in self._series.values():
            dl = [s.group, s.id]
            d = s.state.deployment
            f.requests.add_metric([*dl, "success"], s.successes)
            for outcome, n in s.outcomes.items():
                f.requests.add_metric([*dl, outcome], n)
            f.duration.add_metric(dl, s.duration.cumulative(), s.duration.sum)
            f.ttft.add_metric(dl, s.ttft.cumulative(), s.ttft.sum)
            f.tokens.add_metric([*dl, "input"], s.input_tokens)
            f.tokens.add_metric([*dl, "output"], s.output_tokens)
            f.spend.add_metric(
                dl,
                s.input_tokens * d.input_cost_per_token + s.output_tokens * d.output_cost_per_token,
            )
            f.in_flight.add_metric(dl, s.state.in_flight)
            f.healthy.add_metric(dl, 1.0 if s.state.cooldown_until <= now else 0.0)
            f.cooldowns.add_metric(dl, s.cooldowns)
            f.recoveries.add_metric(dl, s.recoveries)
        for name, g in self._groups.items():
            f.retries.add_metric([name], g.retries)
            f.hedges.add_metric([name], g.hedges)
            f.waits.add_metric([name], g.waits)
            f.wait_seconds.add_metric([name], g.wait_seconds)
            for to, n in g.fallbacks.items():
                f.fallbacks.add_metric([name, to], n)
            for reason, n in g.refused.items():
                f.refused.add_metric([name, reason], n)
        runner = self._runner
        f.hook_errors.add_metric([], runner.errors if runner is not None else 0)
        f.hook_dropped.add_metric([], runner.dropped if runner is not None else 0)
        return f.all()

    def __repr__(self) -> str:
        return f"<PrometheusMetrics namespace={self.namespace!r} deployments={len(self._series)}>"


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
            self.healthy, self.cooldowns, self.recoveries, self.retries, self.fallbacks,
            self.refused, self.hedges, self.waits, self.wait_seconds, self.hook_errors,
            self.hook_dropped,
        ]  # fmt: skip
