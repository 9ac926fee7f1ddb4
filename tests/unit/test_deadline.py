"""`DeadlineWheel`: shared per-attempt timeouts, one loop timer at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from interlock.deadline import DeadlineWheel


def _count_timers(loop: asyncio.AbstractEventLoop) -> list[float]:
    """Record the loop timers scheduled from now on (their times)."""
    scheduled: list[float] = []
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        scheduled.append(when)
        return call_at(when, callback, *args, **kwargs)

    loop.call_at = counting  # type: ignore[method-assign,assignment]
    return scheduled


async def test_later_deadlines_share_the_one_loop_timer() -> None:
    wheel = DeadlineWheel()
    scheduled = _count_timers(asyncio.get_running_loop())
    for i in range(50):
        with wheel.timeout(60.0 + i * 0.05):  # 50 buckets, each later than the last
            await asyncio.sleep(0)
    assert len(scheduled) == 1


async def test_an_earlier_deadline_entered_later_still_fires_first() -> None:
    wheel = DeadlineWheel()
    loop = asyncio.get_running_loop()
    outcome: list[str] = []
    release = asyncio.Event()

    async def hold(seconds: float, name: str) -> None:
        try:
            with wheel.timeout(seconds):
                await release.wait()
        except TimeoutError:
            outcome.append(name)

    long = asyncio.create_task(hold(60.0, "long"))
    await asyncio.sleep(0)  # the long one arms the timer first
    started = loop.time()
    await asyncio.wait_for(hold(0.02, "short"), timeout=5.0)
    assert outcome == ["short"]
    assert loop.time() - started >= 0.02  # never early
    release.set()
    await long
    assert outcome == ["short"]


async def test_buckets_fire_in_order_and_ended_ones_are_dropped() -> None:
    wheel = DeadlineWheel()
    fired: list[float] = []

    async def hold(seconds: float) -> None:
        with pytest.raises(TimeoutError), wheel.timeout(seconds):
            await asyncio.sleep(10)
        fired.append(seconds)

    with wheel.timeout(0.01):  # ends in time: its bucket is dropped, nothing fires
        pass
    await asyncio.wait_for(asyncio.gather(hold(0.05), hold(0.03), hold(0.07)), timeout=5.0)
    assert fired == [0.03, 0.05, 0.07]
    assert wheel._armed is None  # nothing left to wait for
    assert not wheel._keys
