"""Throughput through the Router against raw aiohttp, to the same upstream, in one run.

    python -m benchmarks.overhead [--requests N] [--concurrency C] [--rounds R]
    python -m benchmarks.overhead --suite [--quick]     (what `interlock bench` runs)

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson

from interlock import Deployment, Router

from .common import (
    MESSAGES,
    RawClient,
    drive,
    loop_names,
    median,
    paired_latencies,
    percentile,
    progress,
    run_on,
    timed,
)
from .upstream import upstream_process

__all__ = [
    "LatencyRow",
    "OverheadResult",
    "OverheadSuiteResult",
    "ThroughputRow",
    "measure_overhead",
    "measure_overhead_suite",
]


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
    return await drive(n, concurrency, one)


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


@dataclass(frozen=True)
class ThroughputRow:
    """Raw aiohttp and the Router at one concurrency, rounds alternating."""

    loop: str
    concurrency: int
    requests: int
    raw_rps: float
    router_rps: float
    ratio: float
    """Median over rounds of router rate / raw rate."""
    raw_cpu_us: float
    """Client-process CPU per request (the upstream runs in another process)."""
    router_cpu_us: float
    added_cpu_us: float
    """Median over rounds of the Router's CPU per request minus raw aiohttp's."""


@dataclass(frozen=True)
class LatencyRow:
    """Sequential requests (concurrency 1): what the Router adds to each one."""

    loop: str
    requests: int
    raw_p50_us: float
    raw_p99_us: float
    router_p50_us: float
    router_p99_us: float
    added_p50_us: float
    """Median over rounds of (router p50 - raw p50)."""
    added_p99_us: float


@dataclass(frozen=True)
class OverheadSuiteResult:
    rounds: int
    throughput: tuple[ThroughputRow, ...]
    latency: tuple[LatencyRow, ...]
    headline: str


async def _suite_on(
    url: str, loop: str, levels: tuple[tuple[int, int], ...], latency_n: int, rounds: int
) -> tuple[list[ThroughputRow], LatencyRow | None]:
    raw = RawClient(url)
    router = Router(
        [Deployment(group="bench", model="bench", api_base=url, api_key="sk-bench", timeout=30)]
    )

    async def router_one() -> object:
        r = await router.acompletion("bench", MESSAGES)
        return r.choices[0].message.content

    rows: list[ThroughputRow] = []
    lat: LatencyRow | None = None
    try:
        for concurrency, n in levels:
            await drive(min(n, 100), concurrency, raw.chat)  # warm both pools
            await drive(min(n, 100), concurrency, router_one)
            sides: dict[str, list[tuple[float, float]]] = {"raw": [], "router": []}
            for i in range(rounds):
                progress(f"{loop}: concurrency {concurrency}, round {i + 1}/{rounds}")
                order = [("raw", raw.chat), ("router", router_one)]
                for name, one in order[:: -1 if i % 2 else 1]:
                    sides[name].append(await timed(n, concurrency, one))
            pairs = list(zip(sides["raw"], sides["router"], strict=True))
            rows.append(
                ThroughputRow(
                    loop,
                    concurrency,
                    n,
                    median([a[0] for a in sides["raw"]]),
                    median([b[0] for b in sides["router"]]),
                    median([b[0] / a[0] for a, b in pairs]),
                    median([a[1] for a in sides["raw"]]) * 1e6,
                    median([b[1] for b in sides["router"]]) * 1e6,
                    median([b[1] - a[1] for a, b in pairs]) * 1e6,
                )
            )
        if latency_n > 0:
            per: dict[str, list[tuple[float, float]]] = {"raw": [], "router": []}
            for i in range(rounds):
                progress(f"{loop}: latency at concurrency 1, round {i + 1}/{rounds}")
                xs, ys = await paired_latencies(latency_n, (raw.chat, router_one))
                per["raw"].append((percentile(xs, 50), percentile(xs, 99)))
                per["router"].append((percentile(ys, 50), percentile(ys, 99)))
            pairs = list(zip(per["raw"], per["router"], strict=True))
            lat = LatencyRow(
                loop,
                latency_n,
                median([a[0] for a in per["raw"]]) * 1e6,
                median([a[1] for a in per["raw"]]) * 1e6,
                median([b[0] for b in per["router"]]) * 1e6,
                median([b[1] for b in per["router"]]) * 1e6,
                median([b[0] - a[0] for a, b in pairs]) * 1e6,
                median([b[1] - a[1] for a, b in pairs]) * 1e6,
            )
    finally:
        await raw.aclose()
        await router.aclose()
    if router.statistics().in_flight != 0:
        raise RuntimeError("in-flight did not return to 0")
    return rows, lat


def measure_overhead_suite(
    concurrency: tuple[int, ...] = (1, 32, 256),
    requests: tuple[int, ...] = (600, 2000, 3000),
    latency_requests: int = 400,
    rounds: int = 15,
    uvloop: bool = True,
) -> OverheadSuiteResult:
    """Throughput at each concurrency and added latency at concurrency 1, Router vs raw
    aiohttp to one FakeUpstream in a child process. Under uvloop too when it is
    installed and `uvloop` is true (throughput at the middle concurrency and latency)."""
    if len(concurrency) != len(requests) or not concurrency:
        raise ValueError("concurrency and requests must be non-empty and of the same length")
    levels = tuple(zip(concurrency, requests, strict=True))
    rows: list[ThroughputRow] = []
    lats: list[LatencyRow] = []
    with upstream_process() as url:
        for loop in loop_names() if uvloop else ["asyncio"]:
            mine = levels if loop == "asyncio" else (levels[len(levels) // 2],)

            def job(
                mine: tuple[tuple[int, int], ...] = mine, loop: str = loop
            ) -> Awaitable[tuple[list[ThroughputRow], LatencyRow | None]]:
                return _suite_on(url, loop, mine, latency_requests, rounds)

            r, lat = run_on(loop, job)
            rows.extend(r)
            if lat is not None:
                lats.append(lat)
    mid = next((r for r in rows if r.loop == "asyncio" and r.concurrency == 32), rows[0])
    head = (
        f"Router throughput {mid.ratio:.2f}x raw aiohttp at concurrency {mid.concurrency}"
        f" ({mid.added_cpu_us:+.0f} µs CPU per request)"
    )
    if lats:
        head += f"; {lats[0].added_p50_us:+.0f} µs p50 latency at concurrency 1"
    return OverheadSuiteResult(rounds, tuple(rows), tuple(lats), head)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--suite", action="store_true", help="the `interlock bench` scenario")
    p.add_argument("--quick", action="store_true", help="with --suite: small workloads")
    args = p.parse_args(argv)
    if args.suite:
        from .report import render

        if args.quick:
            result = measure_overhead_suite((1, 32, 256), (60, 200, 400), 60, 2, uvloop=False)
        else:
            result = measure_overhead_suite()
        print(render(result))
        return 0
    r = measure_overhead(args.requests, args.concurrency, args.rounds)
    print(f"overhead: {r.requests} requests x {r.rounds} rounds at concurrency {r.concurrency}")
    print(f"  raw aiohttp  {r.raw_rps:9.0f} req/s")
    print(f"  Router       {r.router_rps:9.0f} req/s")
    print(f"  ratio        {r.ratio:9.3f}  (median of per-round ratios; target >= 0.9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
