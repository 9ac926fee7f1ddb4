"""Streaming at scale: thousands of paced streams at once, raw aiohttp vs the Router.

    python -m benchmarks.streaming_scale [--quick] [--streams N] [--chunks K]
                                         [--interval SECONDS] [--rounds R]
                                         [--hold-interval SECONDS]

A FakeUpstream in a child process streams each reply in `chunks` SSE frames,
`interval` seconds apart. Each pass opens `streams` streams at once on one side and
reads them all to the end: raw aiohttp (POST, split lines, orjson per ``data:``
frame) or `Router.acompletion(stream=True)`. Passes alternate side by side, round by
round (who goes first alternates too). Per pass:

- **CPU per chunk**: client process time over the chunks read (the upstream has its
  own process); the added figure is the median over rounds of Router minus raw
  (4 rounds by default: with the machine saturated, one pair of passes moved the
  difference between 1.3 and 5.1 µs from run to run).
- **event-loop lag**: a ticker task sleeps `tick` seconds in a loop and records how
  late it wakes up; p99 over the pass. This is how long other work on the loop
  waits behind the streams.
- **time to first token**: from a stream's request to its first chunk, p50 and p99
  over the pass's streams (all opened at once, so it includes queueing on the loop).
- **memory per open stream**: a separate pass per side under tracemalloc, on a second
  upstream that sends `HOLD_CHUNKS` frames `hold_interval` seconds apart (slow enough
  for either side to read each frame as it comes): peak traced bytes during the pass
  over the traced bytes before it, divided by `streams`. That is what an open stream
  holds. The same measure on the paced upstream above is reported too
  (`saturated_*`): when the client cannot keep the pace, frames wait unread in
  aiohttp's buffers and that peak is mostly them, so it says how far behind a side
  fell more than what a stream holds (tracemalloc slows every pass it runs in, so
  CPU and lag come from the passes without it).

`chunks_per_s` says how fast the chunks actually came: when it is below
``streams / interval`` the upstream process (or the client) could not keep the pace,
and the scenario measures a saturated machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from interlock import Deployment, Router

from .common import MESSAGES, RawClient, median, percentile, progress
from .upstream import upstreams_process

__all__ = ["StreamingScaleResult", "measure_streaming_scale"]

OneStream = Callable[[], Awaitable[tuple[float, int]]]
"""Read one stream to its end: (seconds to its first chunk, chunks read)."""


@dataclass(frozen=True)
class PassStats:
    cpu_per_chunk_us: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    lag_p99_ms: float
    chunks_per_s: float
    chunks: int


@dataclass(frozen=True)
class StreamingScaleResult:
    streams: int
    """Streams open at once per pass."""
    chunks: int
    """Frames per stream the Router read (raw aiohttp reads one fewer: no usage frame)."""
    interval_ms: float
    """The upstream's pause between two frames of a stream."""
    rounds: int
    raw_cpu_per_chunk_us: float
    router_cpu_per_chunk_us: float
    added_cpu_per_chunk_us: float
    """Median over rounds of (Router - raw) client CPU per chunk. Goal: <= 3 µs."""
    raw_mem_per_stream_kib: float
    router_mem_per_stream_kib: float
    mem_ratio: float
    """Router / raw peak traced memory per open stream, frames read as they come.
    Goal: <= 1.2."""
    saturated_raw_mem_per_stream_kib: float
    saturated_router_mem_per_stream_kib: float
    saturated_mem_ratio: float
    """Router / raw peak traced memory per stream on the paced upstream, unread frames
    included (see the module's docstring)."""
    raw_lag_p99_ms: float
    router_lag_p99_ms: float
    raw_ttft_p50_ms: float
    router_ttft_p50_ms: float
    added_ttft_p50_ms: float
    added_ttft_p99_ms: float
    raw_chunks_per_s: float
    router_chunks_per_s: float
    headline: str


async def _ticker(tick: float, lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + tick
        await asyncio.sleep(tick)
        lags.append(loop.time() - due)


async def _pass(streams: int, one: OneStream, tick: float) -> PassStats:
    gc.collect()
    lags: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(tick, lags, stop))
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        results = await asyncio.gather(*(one() for _ in range(streams)))
    finally:
        stop.set()
        await ticker
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    chunks = sum(k for _, k in results)
    ttfts = [t for t, _ in results]
    return PassStats(
        cpu / max(1, chunks) * 1e6,
        percentile(ttfts, 50) * 1e3,
        percentile(ttfts, 99) * 1e3,
        percentile(lags, 99) * 1e3,
        chunks / wall,
        chunks,
    )


async def _memory_pass(streams: int, one: OneStream) -> float:
    """Peak traced bytes per open stream during one pass."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await asyncio.gather(*(one() for _ in range(streams)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - base) / streams


async def _measure(
    url: str, hold_url: str, streams: int, interval: float, rounds: int, tick: float
) -> StreamingScaleResult:
    limit = streams + 64  # every stream gets its own connection on both sides
    raw = RawClient(url, connection_limit=limit)
    raw_hold = RawClient(hold_url, connection_limit=limit)
    router = Router(
        [
            Deployment(group="bench", model="bench", api_base=url, api_key="sk-bench", timeout=60),
            Deployment(
                group="hold", model="bench", api_base=hold_url, api_key="sk-bench", timeout=60
            ),
        ],
        connection_limit=limit,
    )

    async def raw_one() -> tuple[float, int]:
        return await raw.stream()

    async def router_on(group: str) -> tuple[float, int]:
        t0 = time.perf_counter()
        stream = await router.acompletion(group, MESSAGES, stream=True)
        ttft = time.perf_counter() - t0  # the call returns with the first chunk read
        async for _ in stream:
            pass
        return ttft, stream.chunks

    async def router_one() -> tuple[float, int]:
        return await router_on("bench")

    async def raw_hold_one() -> tuple[float, int]:
        return await raw_hold.stream()

    async def router_hold_one() -> tuple[float, int]:
        return await router_on("hold")

    sides: dict[str, OneStream] = {"raw": raw_one, "router": router_one}
    holding: dict[str, OneStream] = {"raw": raw_hold_one, "router": router_hold_one}
    stats: dict[str, list[PassStats]] = {"raw": [], "router": []}
    mem: dict[str, float] = {}
    saturated: dict[str, float] = {}
    try:
        for name, one in sides.items():  # warm-up: connections, caches, estimates
            progress(f"warm-up: {name}")
            await _pass(min(streams, 50), one, tick)
        for i in range(rounds):
            for name in ("raw", "router") if i % 2 == 0 else ("router", "raw"):
                progress(f"round {i + 1}/{rounds}: {name}, {streams} streams")
                stats[name].append(await _pass(streams, sides[name], tick))
        for name in ("raw", "router"):
            progress(f"memory: {name}, {streams} streams under tracemalloc, read as they come")
            # Unmeasured first: the connections to the second upstream are then open, as
            # they are to the first for the paced passes.
            await _pass(streams, holding[name], tick)
            mem[name] = await _memory_pass(streams, holding[name])
            progress(f"memory: {name}, {streams} streams under tracemalloc, paced upstream")
            saturated[name] = await _memory_pass(streams, sides[name])
    finally:
        await raw.aclose()
        await raw_hold.aclose()
        await router.aclose()
    if router.statistics().in_flight != 0:
        raise RuntimeError("in-flight did not return to 0")
    r, b = stats["raw"], stats["router"]
    pairs = list(zip(r, b, strict=True))
    added_cpu = median([y.cpu_per_chunk_us - x.cpu_per_chunk_us for x, y in pairs])
    added_p50 = median([y.ttft_p50_ms - x.ttft_p50_ms for x, y in pairs])
    mem_ratio = mem["router"] / mem["raw"] if mem["raw"] > 0 else float("nan")
    sat = saturated
    sat_ratio = sat["router"] / sat["raw"] if sat["raw"] > 0 else float("nan")
    router_lag = median([y.lag_p99_ms for y in b])
    head = (
        f"{streams:,} streams: {added_cpu:+.1f} µs CPU per chunk, {mem_ratio:.2f}x memory per"
        f" open stream ({sat_ratio:.2f}x at the paced passes' peak, unread frames included),"
        f" loop lag p99 {median([x.lag_p99_ms for x in r]):.0f} ms raw vs"
        f" {router_lag:.0f} ms Router, TTFT p50 {added_p50:+.0f} ms"
    )
    return StreamingScaleResult(
        streams=streams,
        chunks=b[-1].chunks // streams if b else 0,
        interval_ms=interval * 1e3,
        rounds=rounds,
        raw_cpu_per_chunk_us=median([x.cpu_per_chunk_us for x in r]),
        router_cpu_per_chunk_us=median([y.cpu_per_chunk_us for y in b]),
        added_cpu_per_chunk_us=added_cpu,
        raw_mem_per_stream_kib=mem["raw"] / 1024,
        router_mem_per_stream_kib=mem["router"] / 1024,
        mem_ratio=mem_ratio,
        saturated_raw_mem_per_stream_kib=sat["raw"] / 1024,
        saturated_router_mem_per_stream_kib=sat["router"] / 1024,
        saturated_mem_ratio=sat_ratio,
        raw_lag_p99_ms=median([x.lag_p99_ms for x in r]),
        router_lag_p99_ms=router_lag,
        raw_ttft_p50_ms=median([x.ttft_p50_ms for x in r]),
        router_ttft_p50_ms=median([y.ttft_p50_ms for y in b]),
        added_ttft_p50_ms=added_p50,
        added_ttft_p99_ms=median([y.ttft_p99_ms - x.ttft_p99_ms for x, y in pairs]),
        raw_chunks_per_s=median([x.chunks_per_s for x in r]),
        router_chunks_per_s=median([y.chunks_per_s for y in b]),
        headline=head,
    )


def measure_streaming_scale(
    streams: int = 2000,
    chunks: int = 200,
    interval: float = 0.02,
    rounds: int = 4,
    tick: float = 0.005,
    hold_interval: float = 1.0,
) -> StreamingScaleResult:
    """`streams` concurrent streams of `chunks` frames `interval` seconds apart, raw
    aiohttp vs the Router, rounds alternating; memory per open stream on a second
    upstream, `HOLD_CHUNKS` frames `hold_interval` seconds apart; see the module's
    docstring."""
    if streams < 1 or chunks < 1 or rounds < 1 or interval < 0 or tick <= 0 or hold_interval < 0:
        raise ValueError(
            "streams, chunks and rounds must be >= 1, interval and hold_interval >= 0, tick > 0"
        )
    reply = " ".join(f"w{i}" for i in range(chunks))
    specs = [
        {"reply": reply, "stream_chunks": chunks, "chunk_interval": interval},
        {
            "reply": " ".join(f"w{i}" for i in range(HOLD_CHUNKS)),
            "stream_chunks": HOLD_CHUNKS,
            "chunk_interval": hold_interval,
        },
    ]
    with upstreams_process(specs) as group:
        url, hold_url = group.urls
        return asyncio.run(_measure(url, hold_url, streams, interval, rounds, tick))


HOLD_CHUNKS = 4
"""Frames per stream in the memory pass (`hold_interval` apart)."""

QUICK: dict[str, Any] = {
    "streams": 50,
    "chunks": 20,
    "interval": 0.01,
    "rounds": 1,
    "hold_interval": 0.2,
}
"""The CI smoke variant: a few seconds."""


def main(argv: list[str] | None = None) -> int:
    from .report import render

    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="50 streams of 20 chunks")
    p.add_argument("--streams", type=int, default=2000)
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument(
        "--hold-interval",
        type=float,
        default=1.0,
        help="seconds between frames in the memory-per-open-stream pass",
    )
    a = p.parse_args(argv)
    if a.quick:
        result = measure_streaming_scale(**QUICK)
    else:
        result = measure_streaming_scale(
            a.streams, a.chunks, a.interval, a.rounds, hold_interval=a.hold_interval
        )
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
