"""Throughput through the Router against raw aiohttp, to the same upstream, in one run.

    python -m benchmarks.overhead [--requests N] [--concurrency C] [--rounds R]

The upstream is a FakeUpstream in its own process. Each round runs N requests at
concurrency C with raw aiohttp (one session, POST, read, orjson decode: what a caller
without a router does) and then through a Router with one deployment. Rounds
alternate (the side that goes first alternates too) so drift on a shared machine hits
both sides alike; the ratio is the median of the per-round ratios, the rates the
medians of each side (target: Router >= 0.9x raw at C=32).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson

from benchmarks.upstream import upstream_process
from interlock import Deployment, Router

__all__ = ["OverheadResult", "measure_overhead"]

MESSAGES = [{"role": "user", "content": "Say hello."}]


@dataclass(frozen=True)
class OverheadResult:
    requests: int
    concurrency: int
    rounds: int
    raw_rps: float
    router_rps: float
    ratio: float
    """Median over rounds of router rate / raw rate measured back to back."""


async def _drive(n: int, concurrency: int, one: Callable[[], Awaitable[object]]) -> float:
    """Requests per second for `n` calls of `one` with `concurrency` workers."""
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


async def _measure(url: str, n: int, concurrency: int, rounds: int) -> OverheadResult:
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=30.0)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
    chat_url = f"{url}/chat/completions"
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}

    async def raw_one() -> object:
        body = orjson.dumps({"model": "bench", "messages": MESSAGES})
        async with session.post(chat_url, data=body, headers=headers) as resp:
            data = orjson.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"upstream said {resp.status}")
            return data["choices"][0]["message"]["content"]

    router = Router(
        [Deployment(group="bench", model="bench", api_base=url, api_key="sk-bench", timeout=30)]
    )

    async def router_one() -> object:
        r = await router.acompletion("bench", MESSAGES)
        return r.choices[0].message.content

    raw: list[float] = []
    routed: list[float] = []
    try:
        # Warm both connection pools before timing.
        await _drive(min(n, 200), concurrency, raw_one)
        await _drive(min(n, 200), concurrency, router_one)
        for i in range(rounds):
            if i % 2:
                routed.append(await _drive(n, concurrency, router_one))
                raw.append(await _drive(n, concurrency, raw_one))
            else:
                raw.append(await _drive(n, concurrency, raw_one))
                routed.append(await _drive(n, concurrency, router_one))
    finally:
        await session.close()
        await router.aclose()
    if router.statistics().in_flight != 0:
        raise RuntimeError("in-flight did not return to 0")
    ratios = [b / a for a, b in zip(raw, routed, strict=True)]
    return OverheadResult(
        n,
        concurrency,
        rounds,
        statistics.median(raw),
        statistics.median(routed),
        statistics.median(ratios),
    )


def measure_overhead(
    requests: int = 2000, concurrency: int = 32, rounds: int = 9
) -> OverheadResult:
    """Run the comparison against a FakeUpstream in a child process."""
    with upstream_process() as url:
        return asyncio.run(_measure(url, requests, concurrency, rounds))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    r = measure_overhead(args.requests, args.concurrency, args.rounds)
    print(f"overhead: {r.requests} requests x {r.rounds} rounds at concurrency {r.concurrency}")
    print(f"  raw aiohttp  {r.raw_rps:9.0f} req/s")
    print(f"  Router       {r.router_rps:9.0f} req/s")
    print(f"  ratio        {r.ratio:9.3f}  (median of per-round ratios; target >= 0.9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
