"""What the scenarios share: progress reporting, load drivers, timing and memory helpers,
a raw aiohttp baseline client and in-memory deployments.

Every comparison in the suite is a ratio measured in one run: the sides alternate
round by round (and which side goes first alternates too), so drift on a shared
machine hits both alike, and the figure reported is the median of per-round values.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import aiohttp
import orjson

from interlock.config import Deployment

__all__ = [
    "MESSAGES",
    "RawClient",
    "allocated_blocks",
    "drive",
    "drive_for",
    "fake_deployments",
    "latencies",
    "loop_names",
    "median",
    "paired_latencies",
    "percentile",
    "progress",
    "progress_to",
    "rss_bytes",
    "run_on",
    "timed",
]

T = TypeVar("T")

MESSAGES = [{"role": "user", "content": "Say hello."}]

_sink: ContextVar[Callable[[str], None] | None] = ContextVar("bench_progress", default=None)


def progress(message: str) -> None:
    """Report what a scenario is doing now (shown by `interlock bench`; silent otherwise)."""
    sink = _sink.get()
    if sink is not None:
        sink(message)


@contextmanager
def progress_to(sink: Callable[[str], None] | None) -> Iterator[None]:
    """Send `progress()` messages to `sink` inside the block."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


async def drive(n: int, concurrency: int, one: Callable[[], Awaitable[object]]) -> float:
    """Requests per second for `n` calls of `one` with `concurrency` workers."""
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    return n / (time.perf_counter() - t0)


async def latencies(n: int, one: Callable[[], Awaitable[object]]) -> list[float]:
    """Seconds each of `n` sequential calls of `one` took."""
    out: list[float] = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        await one()
        out.append(clock() - t0)
    return out


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def allocated_blocks() -> int:
    """Python heap blocks alive after a full collection: a leak shows as steady growth."""
    gc.collect()
    return sys.getallocatedblocks()


class RawClient:
    """What a caller without a router does: one aiohttp session, POST, read, decode."""

    def __init__(self, api_base: str, connection_limit: int = 1000) -> None:
        connector = aiohttp.TCPConnector(
            limit=connection_limit, limit_per_host=0, keepalive_timeout=30.0
        )
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        )
        self.chat_url = f"{api_base}/chat/completions"
        self.headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}

    async def chat(self) -> str:
        body = orjson.dumps({"model": "bench", "messages": MESSAGES})
        async with self.session.post(self.chat_url, data=body, headers=self.headers) as resp:
            data = orjson.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"upstream said {resp.status}")
            return str(data["choices"][0]["message"]["content"])

    async def stream(self) -> tuple[float, int]:
        """Seconds to the first content chunk and the number of chunks decoded (each
        held until the next is read, as a loop variable holds it)."""
        t0 = time.perf_counter()
        ttft = 0.0
        chunks = 0
        body = orjson.dumps({"model": "bench", "messages": MESSAGES, "stream": True})
        async with self.session.post(self.chat_url, data=body, headers=self.headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"upstream said {resp.status}")
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].strip()
                if payload == b"[DONE]":
                    break
                # Kept until the next one, as the Router side's `async for _ in stream`
                # keeps its chunk: a chunk alive across the wait is work for the
                # cyclic collector, and both sides should pay it.
                _ = orjson.loads(payload)
                if chunks == 0:
                    ttft = time.perf_counter() - t0
                chunks += 1
        return ttft, chunks

    async def aclose(self) -> None:
        await self.session.close()


def fake_deployments(n: int, group: str = "bench", **fields: Any) -> list[Deployment]:
    """`n` deployments of `group` on the provider ``fake`` (register an
    `interlock.testing.InstantTransport` under that name). Free unless `fields` price
    them: a model without a price would log a warning per deployment."""
    fields = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, **fields}
    return [
        Deployment(group=group, model="bench", provider="fake", id=f"{group}-{i}", **fields)
        for i in range(n)
    ]


def loop_names() -> list[str]:
    """Event loops to measure: asyncio always, uvloop when it is installed."""
    import importlib.util

    return ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])


def run_on(loop: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh event loop of kind `loop`."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    elif loop != "asyncio":
        raise ValueError(f"unknown event loop {loop!r}; use 'asyncio' or 'uvloop'")

    async def wrapper() -> T:
        return await main()

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(wrapper())


async def timed(
    n: int, concurrency: int, one: Callable[[], Awaitable[object]]
) -> tuple[float, float]:
    """Requests per second and client CPU seconds per request for `n` calls of `one`."""
    cpu0 = time.process_time()
    rps = await drive(n, concurrency, one)
    return rps, (time.process_time() - cpu0) / n


async def drive_for(
    seconds: float, concurrency: int, one: Callable[[], Awaitable[object]], at_least: int = 32
) -> tuple[int, float, float]:
    """Calls of `one` in batches with `concurrency` workers until `seconds` have passed
    (and at least `at_least` calls): the count, requests per second and CPU seconds
    per request."""
    n = 0
    batch = max(concurrency, 8)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    while True:
        await drive(batch, concurrency, one)
        n += batch
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n >= at_least:
            break
        batch = min(batch * 2, 8192)
    return n, n / elapsed, (time.process_time() - cpu0) / n


async def paired_latencies(
    n: int, sides: Sequence[Callable[[], Awaitable[object]]]
) -> list[list[float]]:
    """Seconds each of `n` sequential calls per side took, the sides taking turns call
    by call (who goes first alternates) so that load bursts hit every side alike."""
    out: list[list[float]] = [[] for _ in sides]
    clock = time.perf_counter
    for j in range(n):
        for k in range(len(sides)) if j % 2 == 0 else reversed(range(len(sides))):
            t0 = clock()
            await sides[k]()
            out[k].append(clock() - t0)
    return out
