"""Streaming: what the Router adds to time to first token and to each chunk.

    python -m benchmarks.streaming [--quick]

A FakeUpstream in a child process streams a reply in `chunks` SSE frames. Each round
reads `streams` streams per side, one at a time, with raw aiohttp (POST, split lines,
decode each `data:` frame with orjson) and through `Router.acompletion(stream=True)`
(which also builds a typed chunk object per frame, applies an idle timeout per chunk
and settles accounting at the end). The sides take turns stream by stream; the
figures are medians over rounds of the per-round differences of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from interlock import Deployment, Router

from .common import MESSAGES, RawClient, median, progress
from .upstream import upstream_process

__all__ = ["StreamingResult", "measure_streaming"]


@dataclass(frozen=True)
class StreamingResult:
    streams: int
    """Streams per side per round."""
    rounds: int
    chunks: int
    """Frames per stream as the Router saw them (raw aiohttp sees one fewer: the Router
    asks for the usage frame)."""
    raw_ttft_us: float
    router_ttft_us: float
    added_ttft_us: float
    """Median over rounds of (Router median TTFT - raw median TTFT)."""
    raw_chunk_us: float
    """Wall-clock µs per chunk after the first."""
    router_chunk_us: float
    added_chunk_us: float
    raw_cpu_per_chunk_us: float
    """Client CPU per stream divided by its chunks."""
    router_cpu_per_chunk_us: float
    headline: str


Stats = tuple[float, float, float, int]
"""Median TTFT, median seconds per chunk after the first, CPU per chunk, chunks."""


async def _round(
    n: int, sides: Sequence[Callable[[], Awaitable[tuple[float, float, int]]]]
) -> list[Stats]:
    # The sides take turns stream by stream (who goes first alternates), so a burst
    # of load on the shared machine lands on both alike.
    ttfts: list[list[float]] = [[] for _ in sides]
    per_chunk: list[list[float]] = [[] for _ in sides]
    cpu = [0.0 for _ in sides]
    chunks = [0 for _ in sides]
    for j in range(n):
        order = range(len(sides)) if j % 2 == 0 else reversed(range(len(sides)))
        for k in order:
            cpu0 = time.process_time()
            ttft, total, chunks[k] = await sides[k]()
            cpu[k] += time.process_time() - cpu0
            ttfts[k].append(ttft)
            per_chunk[k].append((total - ttft) / max(1, chunks[k] - 1))
    return [
        (median(ttfts[k]), median(per_chunk[k]), cpu[k] / n / max(1, chunks[k]), chunks[k])
        for k in range(len(sides))
    ]


async def _measure(url: str, streams: int, rounds: int) -> StreamingResult:
    raw = RawClient(url)
    router = Router(
        [Deployment(group="bench", model="bench", api_base=url, api_key="sk-bench", timeout=30)]
    )

    async def raw_one() -> tuple[float, float, int]:
        t0 = time.perf_counter()
        ttft, chunks = await raw.stream()
        return ttft, time.perf_counter() - t0, chunks

    async def router_one() -> tuple[float, float, int]:
        t0 = time.perf_counter()
        stream = await router.acompletion("bench", MESSAGES, stream=True)
        ttft = 0.0
        async for _ in stream:
            if stream.chunks == 1:
                ttft = time.perf_counter() - t0
        return ttft, time.perf_counter() - t0, stream.chunks

    sides: dict[str, list[Stats]] = {"raw": [], "router": []}
    try:
        await _round(min(streams, 20), (raw_one, router_one))  # warm-up
        for i in range(rounds):
            progress(f"round {i + 1}/{rounds}")
            raw_stats, router_stats = await _round(streams, (raw_one, router_one))
            sides["raw"].append(raw_stats)
            sides["router"].append(router_stats)
    finally:
        await raw.aclose()
        await router.aclose()
    if router.statistics().in_flight != 0:
        raise RuntimeError("in-flight did not return to 0")
    pairs = list(zip(sides["raw"], sides["router"], strict=True))
    r, b = sides["raw"], sides["router"]
    added_ttft = median([y[0] - x[0] for x, y in pairs]) * 1e6
    added_chunk = median([y[1] - x[1] for x, y in pairs]) * 1e6
    return StreamingResult(
        streams,
        rounds,
        b[-1][3],
        median([x[0] for x in r]) * 1e6,
        median([y[0] for y in b]) * 1e6,
        added_ttft,
        median([x[1] for x in r]) * 1e6,
        median([y[1] for y in b]) * 1e6,
        added_chunk,
        median([x[2] for x in r]) * 1e6,
        median([y[2] for y in b]) * 1e6,
        f"{added_ttft:+.0f} µs time to first token, {added_chunk:+.1f} µs per chunk",
    )


def measure_streaming(
    streams: int = 200, rounds: int = 7, chunks: int = 64, chunk_interval: float = 0.0
) -> StreamingResult:
    """Stream `streams` replies of `chunks` frames per side per round, alternating."""
    reply = " ".join(f"w{i}" for i in range(chunks))
    with upstream_process(reply=reply, stream_chunks=chunks, chunk_interval=chunk_interval) as url:
        return asyncio.run(_measure(url, streams, rounds))


def main(argv: list[str] | None = None) -> int:
    from .report import render

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    print(render(measure_streaming(60, 3) if args.quick else measure_streaming()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
