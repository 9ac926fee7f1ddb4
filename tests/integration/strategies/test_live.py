"""Strategies against real upstreams on loopback: three FakeUpstreams of different
latency, 32 concurrent callers, one router per strategy, all in one run.

Each upstream runs in its own process (`benchmarks.upstream`): in the test's own event
loop, the servers' CPU time would queue behind the clients' and the latencies measured
would be the loop's, not the upstreams'.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from contextlib import ExitStack

from benchmarks.upstream import upstream_process
from interlock import Deployment, Router

MESSAGES = [{"role": "user", "content": "hi"}]
LATENCIES = (0.002, 0.04, 0.12)  # seconds per response, fast to slow
CONCURRENCY = 32
WARMUP = 96  # requests per router before measuring (estimates start empty)
REQUESTS = 480


async def _run(urls: list[str], strategy: str) -> tuple[float, Counter[str]]:
    """p50 of client-side latency over REQUESTS calls, and who served them."""
    deployments = [
        Deployment(group="g", model="m", id=f"up{i}", api_base=url, api_key="sk-test")
        for i, url in enumerate(urls)
    ]
    latencies: list[float] = []
    served: Counter[str] = Counter()
    async with Router(deployments, strategy=strategy, seed=5) as router:

        async def drive(n: int, record: bool) -> None:
            remaining = n

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    t0 = time.perf_counter()
                    r = await router.acompletion("g", MESSAGES)
                    if record:
                        latencies.append(time.perf_counter() - t0)
                        served[r.deployment_id] += 1

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

        await drive(WARMUP, record=False)
        await drive(REQUESTS, record=True)
        assert router.statistics().in_flight == 0
    assert len(latencies) == REQUESTS
    return statistics.median(latencies), served


async def test_p2c_ewma_beats_weighted_on_p50_under_concurrency() -> None:
    with ExitStack() as stack:
        urls = [
            stack.enter_context(upstream_process(latency=lat, name=f"up{i}"))
            for i, lat in enumerate(LATENCIES)
        ]
        weighted_p50, weighted_served = await _run(urls, "weighted")
        p2c_p50, p2c_served = await _run(urls, "p2c-ewma")
    detail = f"weighted {weighted_p50:.4f}s {weighted_served}; p2c-ewma {p2c_p50:.4f}s {p2c_served}"
    # Weighted spreads evenly, so its median is the middle upstream's latency; p2c-ewma
    # sends most traffic to the fast one.
    assert p2c_p50 < weighted_p50, detail
    assert p2c_served["up0"] > weighted_served["up0"], detail
