"""`interlock demo`: a Router in front of three local fake upstreams.

One healthy, one flaky (errors and rate limits on a seeded script), one slow. A few
hundred requests go through the router; the table shows how it spread them, what
failed where, and that every request still got an answer. No keys, no network.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass, field

from interlock.config import Deployment, HealthPolicy
from interlock.errors import InterlockError
from interlock.router.router import Router
from interlock.testing import FakeUpstream, Fault

__all__ = ["run_demo"]


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)


def _flaky_script(n: int, rng: random.Random) -> list[Fault]:
    script = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.15:
            script.append(Fault.status(500))
        elif roll < 0.22:
            script.append(Fault.status(503))
        elif roll < 0.27:
            script.append(Fault.rate_limit(retry_after=0.5))
        else:
            script.append(Fault.delay(0.0))
    return script


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_demo(
    requests: int = 300, concurrency: int = 16, seed: int = 7, strategy: str = "p2c-ewma"
) -> int:
    """Run the demo and print its table; returns a process exit code."""
    rng = random.Random(seed)
    async with (
        FakeUpstream(name="healthy", latency=0.005) as healthy,
        FakeUpstream(name="flaky", latency=0.005) as flaky,
        FakeUpstream(name="slow", latency=0.120) as slow,
    ):
        for fault in _flaky_script(requests, rng):
            flaky.push(fault)
        upstreams = {"demo-healthy": healthy, "demo-flaky": flaky, "demo-slow": slow}
        router = Router(
            [
                Deployment(
                    id=name,
                    group="demo",
                    model="demo-model",
                    api_base=up.url,
                    api_key="sk-demo-not-a-real-key",
                    timeout=5,
                    # A made-up model on local fakes: free (else a warning that it
                    # has no built-in price, docs/operations.md).
                    input_cost_per_token=0.0,
                    output_cost_per_token=0.0,
                )
                for name, up in upstreams.items()
            ],
            strategy=strategy,
            health=HealthPolicy(allowed_fails=3, cooldown=0.25),
            seed=seed,
        )
        tallies = {name: _Tally() for name in upstreams}
        failures: list[str] = []
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await router.acompletion(
                        "demo", [{"role": "user", "content": f"request {i}"}], timeout=10
                    )
                except InterlockError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return
                tallies[r.deployment_id].latencies.append(time.perf_counter() - t0)

        print(
            f"interlock demo: {requests} requests, concurrency {concurrency}, "
            f"strategy {strategy!r}, 3 local upstreams (healthy, flaky, slow)\n"
        )
        started = time.perf_counter()
        async with router:
            await asyncio.gather(*(one(i) for i in range(requests)))
        elapsed = time.perf_counter() - started

        stats = router.statistics()
        header = (
            f"{'deployment':<14}{'served':>8}{'attempts':>10}{'errors':>8}"
            f"{'p50 ms':>9}{'p99 ms':>9}  state"
        )
        print(header)
        print("-" * len(header))
        for d in stats.deployments:
            lat = tallies[d.id].latencies
            print(
                f"{d.id:<14}{len(lat):>8}{d.requests:>10}{d.failures:>8}"
                f"{_pct(lat, 0.5) * 1000:>9.1f}{_pct(lat, 0.99) * 1000:>9.1f}  {d.state}"
            )
        all_lat = [x for t in tallies.values() for x in t.latencies]
        ok = len(all_lat)
        print("-" * len(header))
        print(
            f"{ok}/{requests} requests succeeded in {elapsed:.2f} s "
            f"({ok / elapsed:.0f} req/s); caller p50 {_pct(all_lat, 0.5) * 1000:.1f} ms, "
            f"p99 {_pct(all_lat, 0.99) * 1000:.1f} ms, mean "
            f"{statistics.fmean(all_lat) * 1000 if all_lat else float('nan'):.1f} ms"
        )
        print(
            f"upstream errors absorbed by retries: {sum(d.failures for d in stats.deployments)}"
            f"; in flight at the end: {stats.in_flight}"
        )
        for line in failures[:5]:
            print(f"  failed: {line}")
        return 0 if stats.in_flight == 0 else 1


def main(
    requests: int = 300, concurrency: int = 16, seed: int = 7, strategy: str = "p2c-ewma"
) -> int:
    return asyncio.run(run_demo(requests, concurrency, seed, strategy))
