"""Soak: many requests through one Router over 8 FakeUpstreams whose faults switch on
and off at random, to show that faults do not reach callers and nothing leaks.

    python -m benchmarks.soak [--requests N] [--concurrency C] [--seed S] [--hedge]

The upstreams run in this process (their faults are switched from a driver task);
active health probes run every 0.2 s.
Every `--flip` seconds one random upstream changes: a healthy one gets a random fault
(500, 503, 429 with Retry-After, hang past the deployment timeout, dropped
connection, malformed JSON, a slow answer, a stream cut after its first chunk),
a faulty one recovers; at most half of them are faulty at once. One request in ten
is streamed. At the end the faults stop, every request has finished, and the
router's in-flight count must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

from interlock import HealthPolicy, HedgePolicy, InterlockError, RetryPolicy, Router
from interlock.testing import FakeUpstream, Fault

__all__ = ["SoakResult", "main", "run_soak"]

MESSAGES = [{"role": "user", "content": "soak"}]
DEPLOYMENT_TIMEOUT = 0.5


def _faults() -> list[Fault]:
    return [
        Fault.status(500),
        Fault.status(503),
        Fault.rate_limit(0.5),
        Fault.hang(),
        Fault.drop(),
        Fault.malformed(),
        Fault.delay(0.2),
        Fault.cut_stream(2),
    ]


@dataclass(frozen=True)
class SoakResult:
    requests: int
    succeeded: int
    errors: dict[str, int] = field(default_factory=dict)
    """Error class name -> count, for calls that failed."""
    attempts: int = 0
    """Attempts the router sent (retries and hedges included)."""
    upstream_requests: int = 0
    """Requests the upstreams received (attempts plus probes)."""
    probes: int = 0
    """Active health probes sent to ejected deployments."""
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    seconds: float = 0.0
    fault_flips: int = 0
    ejections: int = 0
    in_flight_end: int = 0
    """Router in-flight count after every call finished: must be 0."""
    budget_denied: int = 0
    """Retries the retry budget refused."""

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.requests if self.requests else 0.0

    @property
    def attempts_per_request(self) -> float:
        return self.attempts / self.requests if self.requests else 0.0

    def report(self) -> str:
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
        return "\n".join(
            [
                f"soak: {self.requests} requests in {self.seconds:.1f} s "
                f"({self.requests / self.seconds:.0f} req/s), {self.fault_flips} fault flips, "
                f"{self.ejections} ejections, {self.budget_denied} retries refused by the budget",
                f"success rate      {self.success_rate * 100:.3f}% "
                f"({self.succeeded}/{self.requests}); errors: {errors}",
                f"attempts/request  {self.attempts_per_request:.3f} "
                f"(upstreams received {self.upstream_requests}, {self.probes} of them probes)",
                f"latency           p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms",
                f"in flight at end  {self.in_flight_end}",
            ]
        )


async def _soak(
    n: int, concurrency: int, seed: int, n_upstreams: int, flip: float, hedge: bool
) -> SoakResult:
    rng = random.Random(seed)
    ups = [FakeUpstream(name=f"soak{i}", log_limit=0) for i in range(n_upstreams)]
    for up in ups:
        await up.start()
    router = Router(
        [
            {
                "group": "soak",
                "model": "m",
                "id": f"up{i}",
                "api_base": up.url,
                "timeout": DEPLOYMENT_TIMEOUT,
            }
            for i, up in enumerate(ups)
        ],
        strategy="least-busy",
        seed=seed,
        timeout=10.0,
        retry=RetryPolicy(max_attempts=3, budget_ratio=0.2, budget_floor=50, budget_window=5),
        health=HealthPolicy(
            allowed_fails=3,
            cooldown=1.0,
            cooldown_max=5.0,
            failure_rate_window=5.0,
            half_open_successes=2,
            rate_limit_cooldown=0.5,
            probe_interval=0.2,
            probe_timeout=DEPLOYMENT_TIMEOUT,
        ),
        hedging={"soak": HedgePolicy(delay=0.1, percentile=99)} if hedge else None,
        connection_limit=4 * concurrency,
    )
    faulty: set[int] = set()
    flips = 0
    stop = asyncio.Event()

    async def driver() -> None:
        nonlocal flips
        faults = _faults()
        while not stop.is_set():
            await asyncio.sleep(flip)
            i = rng.randrange(n_upstreams)
            if i in faulty:
                ups[i].clear()
                faulty.discard(i)
            elif len(faulty) < n_upstreams // 2:
                ups[i].always(rng.choice(faults))
                faulty.add(i)
            flips += 1

    latencies: list[float] = []
    errors: Counter[str] = Counter()
    remaining = n

    async def one(stream: bool) -> None:
        t0 = time.perf_counter()
        try:
            if stream:
                s = await router.acompletion(model="soak", messages=MESSAGES, stream=True)
                async for _ in s:
                    pass
            else:
                await router.acompletion(model="soak", messages=MESSAGES)
        except InterlockError as exc:
            errors[type(exc).__name__] += 1
            return
        latencies.append(time.perf_counter() - t0)

    async def worker(wrng: random.Random) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one(wrng.random() < 0.1)

    await router.__aenter__()  # starts the active probes
    drive = asyncio.create_task(driver())
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker(random.Random(seed * 1000 + k)) for k in range(concurrency)))
    finally:
        seconds = time.perf_counter() - t0
        stop.set()
        drive.cancel()
        await asyncio.gather(drive, return_exceptions=True)
        stats = router.statistics()
        denied = router.parts.pipeline.retry_budget("soak").denied
        probes = router.parts.prober.probes
        await router.aclose()
        for up in ups:
            await up.stop()
    latencies.sort()
    return SoakResult(
        requests=n,
        succeeded=len(latencies),
        errors=dict(errors),
        attempts=stats.requests - probes,
        probes=probes,
        upstream_requests=sum(up.request_count for up in ups),
        p50_ms=statistics.median(latencies) * 1000 if latencies else 0.0,
        p99_ms=latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else 0.0,
        seconds=seconds,
        fault_flips=flips,
        ejections=sum(d.ejections for d in stats.deployments),
        in_flight_end=stats.in_flight,
        budget_denied=denied,
    )


def run_soak(
    requests: int = 100_000,
    concurrency: int = 64,
    seed: int = 1,
    upstreams: int = 8,
    flip: float = 0.1,
    hedge: bool = False,
) -> SoakResult:
    """Run the soak in a fresh event loop and return its figures."""
    if requests < 1 or concurrency < 1 or upstreams < 2 or flip <= 0:
        raise ValueError("requests and concurrency must be >= 1, upstreams >= 2, flip > 0")
    return asyncio.run(_soak(requests, concurrency, seed, upstreams, flip, hedge))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--upstreams", type=int, default=8)
    parser.add_argument("--flip", type=float, default=0.1, help="seconds between fault flips")
    parser.add_argument("--hedge", action="store_true", help="hedge at the group's p99")
    args = parser.parse_args(argv)
    result = run_soak(
        args.requests, args.concurrency, args.seed, args.upstreams, args.flip, args.hedge
    )
    print(result.report())
    return 0 if result.in_flight_end == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
