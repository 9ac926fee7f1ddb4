"""What instrumentation costs: router overhead with metrics and a no-op hook, on vs off.

    python -m benchmarks.observability [--requests N] [--rounds R]

Everything runs in one process with `InstantTransport` (answers at once, no I/O), so
the time per request is the router's own work and the ratio is stable. Each round
times N sequential chat requests for four routers over the same two deployments:
``off`` (no hooks, no metrics), ``metrics`` (PrometheusMetrics), ``hook`` (one
no-op sync hook on every event), ``both``, and ``fail_hook`` (a no-op hook on
failure-side events only); plus ``floor``, the same calls made on the transport
directly. Router overhead is ``off - floor``; the cost of
instrumentation is ``(both - off) / (off - floor)``, the median over rounds (the
order of the variants rotates every round, so drift hits all alike). Target: <= 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from interlock import Deployment, Hook, PrometheusMetrics, Request, Router
from interlock.observability.events import (
    CooldownEvent,
    FailureEvent,
    FallbackEvent,
    RecoveryEvent,
    RequestStartEvent,
    RetryEvent,
    SuccessEvent,
)
from interlock.testing import InstantTransport

__all__ = ["ObservabilityResult", "main", "measure_observability"]

MESSAGES = [{"role": "user", "content": "Say hello."}]
VARIANTS = ("floor", "off", "metrics", "hook", "both", "fail_hook")


class NoopHook(Hook):
    """Implements every hook method and does nothing: the dispatch cost alone."""

    def on_request_start(self, event: RequestStartEvent) -> None:
        pass

    def on_success(self, event: SuccessEvent) -> None:
        pass

    def on_failure(self, event: FailureEvent) -> None:
        pass

    def on_retry(self, event: RetryEvent) -> None:
        pass

    def on_fallback(self, event: FallbackEvent) -> None:
        pass

    def on_cooldown(self, event: CooldownEvent) -> None:
        pass

    def on_recovery(self, event: RecoveryEvent) -> None:
        pass


class NoopFailureHook(Hook):
    """Listens only to the failure side (what alerting needs): nothing per success."""

    def on_failure(self, event: FailureEvent) -> None:
        pass

    def on_retry(self, event: RetryEvent) -> None:
        pass

    def on_cooldown(self, event: CooldownEvent) -> None:
        pass


@dataclass(frozen=True)
class ObservabilityResult:
    requests: int
    rounds: int
    us_per_request: dict[str, float]
    """Median microseconds per request of each variant."""
    router_overhead_us: float
    """Median of ``off - floor``: the router's own work per request."""
    cost_metrics: float
    """Median of ``(metrics - off) / (off - floor)``."""
    cost_hook: float
    cost_both: float
    """Median of ``(both - off) / (off - floor)``: metrics and a no-op hook together."""
    cost_failure_hook: float
    """The same for a hook on failure-side events only (none happen here)."""


def _router(variant: str, transport: InstantTransport) -> Router:
    deployments = [
        Deployment(group="bench", model="m", provider="instant", id=f"bench-{i}",
                   input_cost_per_token=1e-6, output_cost_per_token=2e-6)
        for i in range(2)
    ]  # fmt: skip
    metrics = (
        PrometheusMetrics(registry=CollectorRegistry()) if variant in ("metrics", "both") else None
    )
    hooks: list[Hook] = [NoopHook()] if variant in ("hook", "both") else []
    if variant == "fail_hook":
        hooks = [NoopFailureHook()]
    return Router(
        deployments, transports={"instant": transport}, seed=1, metrics=metrics, hooks=hooks
    )


async def _time(n: int, one: Callable[[], Awaitable[object]]) -> float:
    """Microseconds per call of `one`, for `n` sequential calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        await one()
    return (time.perf_counter() - t0) / n * 1e6


async def _measure(n: int, rounds: int) -> ObservabilityResult:
    transport = InstantTransport(log=False)
    routers = {v: _router(v, transport) for v in VARIANTS if v != "floor"}
    deployment = routers["off"].deployments[0]
    request = Request("chat", "bench", messages=MESSAGES, requested="bench")

    def floor() -> Awaitable[object]:
        return transport.chat(deployment, request, 30.0)

    calls: dict[str, Callable[[], Awaitable[object]]] = {"floor": floor}
    for v, r in routers.items():

        def call(r: Router = r) -> Awaitable[object]:
            return r.acompletion("bench", MESSAGES)

        calls[v] = call
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    try:
        for v in VARIANTS:  # warm up
            await _time(min(n, 500), calls[v])
        gc.collect()
        gc.disable()  # a collection landing in one variant's slice would skew it
        try:
            for i in range(rounds):
                order = VARIANTS[i % len(VARIANTS) :] + VARIANTS[: i % len(VARIANTS)]
                for v in order:
                    times[v].append(await _time(n, calls[v]))
                gc.collect()
        finally:
            gc.enable()
    finally:
        for r in routers.values():
            await r.aclose()
    for v, r in routers.items():
        if r.statistics().in_flight != 0:
            raise RuntimeError(f"{v}: in-flight did not return to 0")

    def cost(v: str) -> float:
        return statistics.median(
            (a - off) / (off - fl)
            for a, off, fl in zip(times[v], times["off"], times["floor"], strict=True)
        )

    return ObservabilityResult(
        n,
        rounds,
        {v: statistics.median(ts) for v, ts in times.items()},
        statistics.median(o - f for o, f in zip(times["off"], times["floor"], strict=True)),
        cost("metrics"),
        cost("hook"),
        cost("both"),
        cost("fail_hook"),
    )


def measure_observability(requests: int = 1000, rounds: int = 60) -> ObservabilityResult:
    """Run the comparison (in this process, no I/O)."""
    if requests < 1 or rounds < 1:
        raise ValueError("requests and rounds must be >= 1")
    return asyncio.run(_measure(requests, rounds))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=60)
    args = p.parse_args(argv)
    r = measure_observability(args.requests, args.rounds)
    print(f"observability: {r.requests} requests x {r.rounds} rounds, in-process, no I/O")
    for v in VARIANTS:
        print(f"  {v:8} {r.us_per_request[v]:8.2f} us/request")
    print(f"  router overhead (off - floor)  {r.router_overhead_us:8.2f} us")
    print(f"  cost of metrics                {r.cost_metrics:8.1%}")
    print(f"  cost of a no-op hook           {r.cost_hook:8.1%}")
    print(f"  cost of metrics + no-op hook   {r.cost_both:8.1%}  (target <= 10%)")
    print(f"  cost of a failure-only hook    {r.cost_failure_hook:8.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
