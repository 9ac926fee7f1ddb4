"""`interlock/limits/queue.py`: `WaitQueue`, the line of requests waiting for capacity."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from interlock.limits import WaitQueue
from interlock.testing import FakeClock


async def turns(cond: Callable[[], bool]) -> None:
    """Yield to the event loop until `cond()` holds (at most 1000 turns)."""
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# --- WaitQueue ----------------------------------------------------------------------------


async def test_queue_is_fifo_and_a_timed_out_waiter_leaves_cleanly() -> None:
    clock = FakeClock()
    q = WaitQueue(clock, max_size=10)
    order: list[str] = []

    async def waiter(name: str, timeout: float) -> None:
        if await q.wait(timeout, capacity_in=None, front=False):
            order.append(name)
        else:
            order.append(name + ":timeout")

    tasks = [asyncio.create_task(waiter(n, t)) for n, t in (("a", 50), ("b", 5), ("c", 50))]
    await turns(lambda: clock.sleepers >= 3)  # every waiter's timeout is running
    clock.advance(5)  # b times out
    await turns(lambda: q.waiting <= 2)
    q.wake()
    q.wake()
    await asyncio.gather(*tasks)
    assert order == ["b:timeout", "a", "c"]
    assert q.waiting == 0


async def test_queue_timer_wakes_the_head_when_capacity_returns() -> None:
    clock = FakeClock()
    q = WaitQueue(clock, max_size=10)
    task = asyncio.create_task(q.wait(100, capacity_in=3.0, front=False))
    await turns(lambda: clock.sleepers >= 2)  # the waiter's timeout and the line's timer
    clock.advance(3.0)
    assert await task is True
    q.close()


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    clock = FakeClock()
    q = WaitQueue(clock, max_size=10)
    first = asyncio.create_task(q.wait(100, capacity_in=None, front=False))
    second = asyncio.create_task(q.wait(100, capacity_in=None, front=False))
    await turns(lambda: q.waiting >= 2)
    q.wake()  # resolves first's future...
    first.cancel()  # ...but first is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second is True  # the wake-up was not lost
    assert q.waiting == 0
