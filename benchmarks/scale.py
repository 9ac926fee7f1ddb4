"""Scale: throughput and memory as pools grow, as requests in flight grow, and over a
long run.

    python -m benchmarks.scale [--quick]

Everything here uses `InstantTransport` (an in-memory `fake` provider: no socket,
no parsing), so what is measured is the router's own cost; a million requests over
loopback HTTP would take most of an hour on a small machine and measure the HTTP
stack instead. In the long run the router's clock runs 100x faster than real time,
so its 60-second rate windows wrap around many times within the run.
Memory is read three ways: tracemalloc for what a router or a request
in flight holds, RSS (/proc/self/statm) and Python's count of live heap blocks
(`sys.getallocatedblocks()` after a full collection) over the long run. A leak of even
one object per request shows as block growth proportional to requests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from dataclasses import dataclass

from interlock import Router
from interlock.testing import InstantTransport

from .common import (
    MESSAGES,
    allocated_blocks,
    drive,
    drive_for,
    fake_deployments,
    progress,
    rss_bytes,
)

__all__ = ["InFlightRow", "MemorySample", "PoolRow", "ScaleResult", "measure_scale"]


@dataclass(frozen=True)
class PoolRow:
    deployments: int
    rps: float
    """Requests per second through `acompletion` at concurrency 32."""
    cpu_us: float
    """CPU µs per request."""
    router_bytes_per_deployment: float
    """tracemalloc: what building the router allocated, per deployment."""


@dataclass(frozen=True)
class InFlightRow:
    in_flight: int
    rps: float
    """Requests per second with this many workers (each call yields once)."""
    bytes_per_request: float
    """tracemalloc: memory held per request while this many wait in flight at once."""


@dataclass(frozen=True)
class MemorySample:
    requests: int
    rss_mib: float
    heap_blocks: int


@dataclass(frozen=True)
class ScaleResult:
    pools: tuple[PoolRow, ...]
    in_flight: tuple[InFlightRow, ...]
    long_run_requests: int
    long_run_seconds: float
    rss_growth_kib: float
    """RSS at the end minus after the first tenth (warm-up)."""
    heap_block_growth: int
    """Live heap blocks at the end minus after the first tenth."""
    flat: bool
    """Heap blocks grew by at most `_BOUNDED_BLOCKS` plus one per 1,000 requests after
    warm-up: bounded state may still fill, a per-request leak may not."""
    memory: tuple[MemorySample, ...]
    headline: str


class _FastClock:
    """Router time running `factor` times faster than real time, so that a long run
    spans many minutes of router time: every 60-second rate window wraps around many
    times, and state that lives for a window has to be released for memory to stay flat."""

    __slots__ = ("factor",)

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def now(self) -> float:
        return time.monotonic() * self.factor

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)


# Rate windows hold up to 60 bucket counters each (2 windows x 8 deployments here);
# they fill during the first minute whatever the request count. A leak of one object
# per request would exceed this allowance many times over.
_BOUNDED_BLOCKS = 2048


def _router(n: int, transport: InstantTransport, clock: _FastClock | None = None) -> Router:
    return Router(
        fake_deployments(n, rpm=10**9, tpm=10**12),
        strategy="least-busy",
        transports={"fake": transport},
        seed=1,
        clock=clock,
    )


async def _pool_row(n: int, seconds: float) -> PoolRow:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    router = _router(n, InstantTransport(log=False, yield_every_call=True))
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()

    async def one() -> object:
        return await router.acompletion("bench", MESSAGES)

    await drive(32, 32, one)
    _, rps, cpu = await drive_for(seconds, 32, one)
    await router.aclose()
    return PoolRow(n, rps, cpu * 1e6, size / n)


async def _in_flight_row(k: int, seconds: float) -> InFlightRow:
    # Throughput with k workers, each call yielding to the loop once.
    router = _router(8, InstantTransport(log=False, yield_every_call=True))

    async def one() -> object:
        return await router.acompletion("bench", MESSAGES)

    await drive(k, k, one)
    _, rps, _ = await drive_for(seconds, k, one, at_least=2 * k)
    await router.aclose()

    # Memory: k requests parked inside the transport at once.
    gate = asyncio.Event()
    transport = InstantTransport(log=False, gate=gate)
    router = _router(8, transport)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.create_task(router.acompletion("bench", MESSAGES)) for _ in range(k)]
    for _ in range(1000):  # bounded: every task reaches the gate within a few passes
        if transport.attempts >= k:
            break
        await asyncio.sleep(0)
    if transport.attempts < k or router.statistics().in_flight != k:
        raise RuntimeError(f"only {transport.attempts} of {k} requests reached the transport")
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    gate.set()
    await asyncio.gather(*tasks)
    if router.statistics().in_flight != 0:
        raise RuntimeError("in-flight did not return to 0")
    await router.aclose()
    return InFlightRow(k, rps, held / k)


async def _long_run(total: int, samples: int) -> tuple[list[MemorySample], float]:
    router = _router(8, InstantTransport(log=False, yield_every_call=True), _FastClock(100.0))

    async def one() -> object:
        return await router.acompletion("bench", MESSAGES)

    out: list[MemorySample] = []
    step = max(1, total // samples)
    done = 0
    t0 = time.perf_counter()
    while done < total:
        n = min(step, total - done)
        await drive(n, 32, one)
        done += n
        progress(f"long run: {done:,}/{total:,} requests")
        out.append(MemorySample(done, rss_bytes() / 2**20, allocated_blocks()))
    seconds = time.perf_counter() - t0
    if router.statistics().requests != total + 0 or router.statistics().in_flight != 0:
        raise RuntimeError("the long run lost requests")
    await router.aclose()
    return out, seconds


async def _measure(
    sizes: tuple[int, ...], seconds: float, in_flight: tuple[int, ...], long_run: int
) -> ScaleResult:
    pools = []
    for n in sizes:
        progress(f"pool of {n:,} deployments")
        pools.append(await _pool_row(n, seconds))
    flights = []
    for k in in_flight:
        progress(f"{k:,} requests in flight")
        flights.append(await _in_flight_row(k, seconds))
    mem, seconds = await _long_run(long_run, 10)
    warm = mem[0]
    end = mem[-1]
    growth = end.heap_blocks - warm.heap_blocks
    flat = growth <= _BOUNDED_BLOCKS + (end.requests - warm.requests) // 1000
    big = pools[-1]
    head = (
        f"{big.rps:,.0f} req/s with {big.deployments:,} deployments vs {pools[0].rps:,.0f} "
        f"with {pools[0].deployments}; heap {'flat' if flat else 'GROWING'} over "
        f"{long_run:,} requests ({growth:+,} blocks)"
    )
    return ScaleResult(
        tuple(pools),
        tuple(flights),
        long_run,
        seconds,
        (end.rss_mib - warm.rss_mib) * 1024,
        growth,
        flat,
        tuple(mem),
        head,
    )


def measure_scale(
    sizes: tuple[int, ...] = (1, 100, 1_000, 10_000),
    seconds: float = 2.0,
    in_flight: tuple[int, ...] = (1, 100, 1_000, 5_000),
    long_run: int = 1_000_000,
) -> ScaleResult:
    """Throughput (for about `seconds` each) and memory per pool size and per in-flight
    level, and memory over `long_run` requests, all through the in-memory transport."""
    if long_run < 10:
        raise ValueError("long_run must be >= 10 requests")
    return asyncio.run(_measure(sizes, seconds, in_flight, long_run))


def main(argv: list[str] | None = None) -> int:
    from .report import render

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        result = measure_scale((1, 100, 1_000), 0.2, (1, 1_000, 5_000), 20_000)
    else:
        result = measure_scale()
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
