"""`interlock/cache/coalesce.py`: `Flight`, identical requests in flight sharing one call."""

from __future__ import annotations

import asyncio

from interlock.cache import Flight

# --- coalescing -------------------------------------------------------------------------


async def test_flight_waiters_share_and_leave_cleanly() -> None:
    flight = Flight()
    waiters = [asyncio.create_task(flight.wait(10)) for _ in range(3)]
    await asyncio.sleep(0)
    assert flight.waiters == 3
    waiters[0].cancel()
    await asyncio.sleep(0)
    assert flight.waiters == 2
    assert not flight.done
    flight.succeed(b"data")
    assert await asyncio.gather(*waiters[1:]) == [True, True]
    assert flight.waiters == 0
    assert await flight.wait(0) is True


async def test_flight_wait_times_out() -> None:
    flight = Flight()
    assert await flight.wait(0.001) is False
    assert flight.waiters == 0
    flight.abandon()
    assert flight.abandoned
