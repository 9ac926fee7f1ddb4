"""Faults: how the Router behaves when part, or all, of a pool fails.

    python -m benchmarks.faults [--quick]

One child process serves 2 x `deployments` FakeUpstreams, half of them answering
every request with HTTP 500. Each case builds a fresh Router (default retry and
health policies) over `deployments` of them, of which 0%, 10%, 50% or 100% fail, and
sends `requests` chat requests at `concurrency`. Attempts are counted where they land,
at the upstreams: attempts per request is the upstream amplification (1.0 means no
request was sent twice; below 1.0 means the router refused requests without sending
them, as it should when every deployment is cooling down).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

from interlock import Deployment, InterlockError, Router

from .common import MESSAGES, percentile, progress
from .upstream import UpstreamGroup, upstreams_process

__all__ = ["FaultRow", "FaultsResult", "measure_faults"]


@dataclass(frozen=True)
class FaultRow:
    failing_pct: int
    failing: int
    """Deployments answering 500 out of `FaultsResult.deployments`."""
    success_rate: float
    attempts_per_request: float
    """Upstream requests received per client request (the amplification)."""
    p50_ms: float
    p99_ms: float
    """Latency of every request, successful or not."""
    rps: float


@dataclass(frozen=True)
class FaultsResult:
    deployments: int
    requests: int
    concurrency: int
    fault: str
    rows: tuple[FaultRow, ...]
    headline: str


async def _case(
    urls: list[str], group: UpstreamGroup, requests: int, concurrency: int
) -> tuple[float, float, list[float], float]:
    router = Router(
        [
            Deployment(group="bench", model="bench", api_base=u, api_key="sk-bench", timeout=10)
            for u in urls
        ],
        seed=7,
    )
    ok = 0
    times: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal ok, remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                await router.acompletion("bench", MESSAGES)
                ok += 1
            except InterlockError:
                pass
            times.append(time.perf_counter() - t0)

    group.reset()
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await router.aclose()
    elapsed = time.perf_counter() - t0
    if router.statistics().in_flight != 0:
        raise RuntimeError("in-flight did not return to 0")
    attempts = sum(group.request_counts())
    return ok / requests, attempts / requests, times, requests / elapsed


def measure_faults(
    requests: int = 2000,
    deployments: int = 10,
    failing_pct: tuple[int, ...] = (0, 10, 50, 100),
    concurrency: int = 16,
) -> FaultsResult:
    """One row per share of failing deployments."""
    if deployments < 2:
        raise ValueError("deployments must be >= 2")
    specs: list[dict[str, object]] = [{"name": f"ok{i}"} for i in range(deployments)]
    specs += [{"name": f"bad{i}", "fail_status": 500} for i in range(deployments)]
    rows: list[FaultRow] = []
    with upstreams_process(specs) as group:
        healthy, failing = group.urls[:deployments], group.urls[deployments:]
        for pct in failing_pct:
            k = round(deployments * pct / 100)
            progress(f"{pct}% failing ({k}/{deployments})")
            urls = failing[:k] + healthy[: deployments - k]
            rate, attempts, times, rps = asyncio.run(_case(urls, group, requests, concurrency))
            rows.append(
                FaultRow(
                    pct,
                    k,
                    rate,
                    attempts,
                    percentile(times, 50) * 1e3,
                    percentile(times, 99) * 1e3,
                    rps,
                )
            )
    by = {r.failing_pct: r for r in rows}
    parts = []
    if 50 in by:
        parts.append(
            f"{by[50].success_rate:.1%} success with half the pool failing "
            f"({by[50].attempts_per_request:.2f} attempts/request)"
        )
    if 100 in by:
        parts.append(f"{by[100].attempts_per_request:.3f} upstream calls/request with all failing")
    return FaultsResult(
        deployments,
        requests,
        concurrency,
        "HTTP 500 on every request",
        tuple(rows),
        "; ".join(parts) or "see table",
    )


def main(argv: list[str] | None = None) -> int:
    from .report import render

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    print(render(measure_faults(300) if args.quick else measure_faults()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
