"""What accounting costs per request: in memory (µs) and with Redis (round trips, µs).

    python -m benchmarks.accounting [--requests N] [--redis-requests M] [--no-redis]

In memory: the ledger's hot path for one request (headroom check, reserve, settle
with usage: RPM and TPM windows, spend, one budget) on one deployment, timed over N
requests, against the same loop with no limits configured. With Redis: a
redis-server is started on a free loopback port (skipped if the binary is missing),
and M admissions run through `RedisLedger.admit` then settle, one at a time; the
figure is wall time per request including the loopback round trip, plus the hot-path
round trips and background write batches per request.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

from interlock.clock import MonotonicClock
from interlock.config import Budget, Deployment, SharedState
from interlock.limits import Ledger, RedisLedger, attach_budgets
from interlock.records.state import DeploymentState
from interlock.types import Usage

__all__ = ["AccountingResult", "main", "measure_accounting"]


@dataclass(frozen=True)
class AccountingResult:
    requests: int
    bare_us: float
    """µs per request: headroom + reserve + settle with no limits configured."""
    limited_us: float
    """µs per request with rpm, tpm, prices and one budget."""
    redis_requests: int
    redis_us: float | None
    """µs per request for admit + settle against a loopback Redis (None: not run)."""
    redis_round_trips: float | None
    """Hot-path Redis round trips per request."""
    redis_write_batches: float | None
    """Background pipelined writes per request (reconciliations batched)."""


def _state(limited: bool) -> DeploymentState:
    if limited:
        d = Deployment(
            group="g",
            model="m",
            id="d",
            rpm=10**9,
            tpm=10**12,
            input_cost_per_token=1e-6,
            output_cost_per_token=2e-6,
        )
    else:
        # Free: priced as before built-in prices (and no unknown-model warning).
        d = Deployment(group="g", model="m", id="d", input_cost_per_token=0.0,
                       output_cost_per_token=0.0)  # fmt: skip
    return DeploymentState(d, transport=None)  # type: ignore[arg-type]


def _memory_us(n: int, limited: bool) -> float:
    s = _state(limited)
    if limited:
        attach_budgets([Budget(scope="group", name="g", limit_usd=1e12, period="1d")], [s], 0.0)
    usage = Usage(120, 30, 150)
    has_headroom, reserve, settle = Ledger.has_headroom, Ledger.reserve, Ledger.settle
    now = time.monotonic
    t0 = time.perf_counter()
    for _ in range(n):
        t = now()
        if has_headroom(s, 200, t):
            r = reserve(s, 200, t)
            settle(r, 150, t, usage)
    return (time.perf_counter() - t0) / n * 1e6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _redis_run(url: str, n: int) -> tuple[float, float, float]:
    s = _state(True)
    ledger = RedisLedger(SharedState(url=url, prefix="bench"), [s], MonotonicClock())
    usage = Usage(120, 30, 150)
    clock = time.monotonic
    for _ in range(50):  # warm the connection and the script cache
        r = Ledger.reserve(s, 200, clock())
        await ledger.admit(r)
        Ledger.settle(r, 150, clock(), usage)
    await ledger.flush()
    trips0, batches0 = ledger.round_trips, ledger.write_batches
    t0 = time.perf_counter()
    for _ in range(n):
        r = Ledger.reserve(s, 200, clock())
        if not await ledger.admit(r):
            raise RuntimeError("the benchmark's limits refused a request")
        Ledger.settle(r, 150, clock(), usage)
    await ledger.flush()
    elapsed = time.perf_counter() - t0
    if not ledger.active:
        raise RuntimeError("Redis became unreachable during the benchmark")
    trips = (ledger.round_trips - trips0) / n
    batches = (ledger.write_batches - batches0) / n
    await ledger.aclose()
    return elapsed / n * 1e6, trips, batches


def _with_redis(n: int) -> tuple[float, float, float] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.01)
        return asyncio.run(_redis_run(f"redis://127.0.0.1:{port}/0", n))
    finally:
        proc.kill()
        proc.wait(10)


def measure_accounting(
    requests: int = 200_000, redis_requests: int = 2000, use_redis: bool = True
) -> AccountingResult:
    """Run both measurements (the in-memory ones best of 3)."""
    bare = min(_memory_us(requests, False) for _ in range(3))
    limited = min(_memory_us(requests, True) for _ in range(3))
    r = _with_redis(redis_requests) if use_redis else None
    return AccountingResult(
        requests,
        bare,
        limited,
        redis_requests,
        r[0] if r else None,
        r[1] if r else None,
        r[2] if r else None,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--redis-requests", type=int, default=2000)
    p.add_argument("--no-redis", action="store_true")
    args = p.parse_args(argv)
    r = measure_accounting(args.requests, args.redis_requests, not args.no_redis)
    print(f"accounting: {r.requests} requests in memory, {r.redis_requests} with Redis")
    print(f"  in memory, no limits        {r.bare_us:8.2f} µs/request")
    print(f"  in memory, rpm+tpm+budget   {r.limited_us:8.2f} µs/request")
    if r.redis_us is None:
        print("  Redis                       skipped (no redis-server)")
    else:
        print(f"  Redis admit + settle        {r.redis_us:8.1f} µs/request (loopback)")
        print(f"  Redis hot-path round trips  {r.redis_round_trips:8.2f} per request")
        print(f"  Redis background batches    {r.redis_write_batches:8.2f} per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
