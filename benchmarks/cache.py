"""What the response cache costs per request: µs per hit, per miss, per stored miss.

    python -m benchmarks.cache [--iterations N] [--rounds R] [--no-redis]

Measured on the cache itself (`ResponseCache.fetch` with a provider call that returns
a prebuilt response at once, minus the cost of that call alone), in memory and in a
real redis-server started on 127.0.0.1 for the run:

- hit: key + lookup + decoding a fresh response;
- miss: key + lookup that finds nothing (the overhead a cached group adds to every
  request that still goes to the provider);
- stored miss: a miss whose response is then serialized and stored.

Also the end-to-end `Router.acompletion` answered from the memory cache. Each figure
is the median over rounds; a Redis figure includes a loopback round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from interlock import CacheConfig, ChatCompletion, Deployment, Router
from interlock.cache import CacheStore, MemoryStore, RedisStore, ResponseCache
from interlock.clock import MonotonicClock
from interlock.testing import FakeUpstream, RedisServer, RedisServerError
from interlock.types import Request

__all__ = ["CacheBenchResult", "StoreCosts", "main", "measure_cache"]

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France? Answer in one sentence."},
]
RESPONSE = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The capital of France is Paris. " * 8},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 30, "completion_tokens": 64, "total_tokens": 94},
}


@dataclass(frozen=True)
class StoreCosts:
    """Microseconds per request for one backend."""

    hit_us: float
    miss_us: float
    stored_miss_us: float


@dataclass(frozen=True)
class CacheBenchResult:
    iterations: int
    rounds: int
    entry_bytes: int
    memory: StoreCosts
    redis: StoreCosts | None
    """None when redis-server is not available (or --no-redis)."""
    router_hit_us: float
    """`Router.acompletion` end to end, answered from the memory cache."""


def _request(i: int | None = None) -> Request:
    msgs = MESSAGES if i is None else [*MESSAGES, {"role": "user", "content": f"#{i}"}]
    return Request("chat", "bench", messages=msgs, params={"temperature": 0.0})


async def _per_call(n: int, one: Callable[[int], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        await one(i)
    return (time.perf_counter() - t0) / n * 1e6


async def _store_costs(store: CacheStore, n: int, rounds: int) -> tuple[StoreCosts, int]:
    cache = ResponseCache(CacheConfig(enabled=True), ["bench"], MonotonicClock(), store)
    response = ChatCompletion.from_dict(RESPONSE, deployment_id="bench-0", group="bench")
    plan = cache.plan("bench", None, None)
    no_store = cache.plan("bench", "no-store", None)
    assert plan is not None
    assert no_store is not None

    async def provider() -> ChatCompletion:
        return response

    hit_req = _request()
    await cache.fetch(plan, hit_req, 60.0, ChatCompletion, provider)  # stores the entry
    size = len(await store.get(cache.key(hit_req) or "") or b"")
    miss_req = _request(-1)
    hits, misses, stored, base = [], [], [], []
    for r in range(rounds):
        fresh = [_request(r * n + i) for i in range(n)]  # distinct keys: every one a miss

        def hit(i: int) -> Awaitable[ChatCompletion]:
            return cache.fetch(plan, hit_req, 60.0, ChatCompletion, provider)

        def miss(i: int) -> Awaitable[ChatCompletion]:
            return cache.fetch(no_store, miss_req, 60.0, ChatCompletion, provider)

        def stored_miss(i: int, fresh: list[Request] = fresh) -> Awaitable[ChatCompletion]:
            return cache.fetch(plan, fresh[i], 60.0, ChatCompletion, provider)

        base.append(await _per_call(n, lambda i: provider()))
        hits.append(await _per_call(n, hit))
        misses.append(await _per_call(n, miss))
        stored.append(await _per_call(n, stored_miss))
    b = statistics.median(base)
    costs = StoreCosts(
        statistics.median(hits) - b, statistics.median(misses) - b, statistics.median(stored) - b
    )
    return costs, size


async def _router_hit(n: int, rounds: int) -> float:
    async with FakeUpstream() as up:
        router = Router(
            [Deployment(group="bench", model="bench", api_base=up.url)],
            cache=CacheConfig(enabled=True),
        )
        async with router:
            await router.acompletion("bench", MESSAGES)

            async def one(i: int) -> object:
                return await router.acompletion("bench", MESSAGES)

            return statistics.median([await _per_call(n, one) for _ in range(rounds)])


async def _measure(n: int, rounds: int, redis_url: str | None) -> CacheBenchResult:
    clock = MonotonicClock()
    memory = MemoryStore(clock, max_entries=n * rounds + 10, max_bytes=1 << 30)
    mem, size = await _store_costs(memory, n, rounds)
    red = None
    if redis_url is not None:
        store = RedisStore(redis_url, clock)
        try:
            red, _ = await _store_costs(store, max(1, n // 10), rounds)
        finally:
            await store.aclose()
    return CacheBenchResult(n, rounds, size, mem, red, await _router_hit(n, rounds))


def measure_cache(
    iterations: int = 5000, rounds: int = 5, *, redis: bool = True
) -> CacheBenchResult:
    """Run the measurements (Redis ones with a redis-server started for the run, and
    1/10 of the iterations since each is a network round trip)."""
    # The redis client is an extra (interlock[redis]): an installed wheel without it
    # measures memory only, as on a machine without a redis-server binary.
    if not redis or importlib.util.find_spec("redis") is None:
        return asyncio.run(_measure(iterations, rounds, None))
    try:
        with RedisServer() as server:
            return asyncio.run(_measure(iterations, rounds, server.url))
    except RedisServerError:
        return asyncio.run(_measure(iterations, rounds, None))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-redis", action="store_true", help="skip the Redis measurements")
    args = p.parse_args(argv)
    r = measure_cache(args.iterations, args.rounds, redis=not args.no_redis)
    print(
        f"cache: {r.iterations} requests x {r.rounds} rounds, "
        f"entry of {r.entry_bytes} bytes (median µs per request)"
    )
    print(f"  {'':8} {'hit':>8} {'miss':>8} {'stored miss':>12}")
    rows = [("memory", r.memory), ("redis", r.redis)]
    for name, c in rows:
        if c is None:
            print(f"  {name:8} (redis-server not available)")
        else:
            print(f"  {name:8} {c.hit_us:8.2f} {c.miss_us:8.2f} {c.stored_miss_us:12.2f}")
    print(f"  Router.acompletion answered from memory: {r.router_hit_us:.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
