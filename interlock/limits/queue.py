"""A bounded FIFO line of requests waiting for capacity in one group.

A request joins when no deployment of its group has rate or concurrency headroom
(or when others are already waiting: arrivals never overtake the line). Capacity
comes back in two ways, and each wakes the request at the head of the line:

- a reservation is settled or released (`Ledger` calls `wake()`), which frees
  concurrency and tokens;
- time passes: the head arms one timer for the moment the first window frees up.

A woken request that finds capacity takes it and wakes the next one (so a burst of
freed capacity drains the line in order); one that finds none goes back to the front.
A waiter that times out or is cancelled leaves at once: its entry is skipped lazily
and compacted away, and a wake-up it received but did not use is passed on, so no
wake-up is lost. Every operation is O(1) amortized.
"""

from __future__ import annotations

import asyncio
from collections import deque

from interlock.clock import Clock

__all__ = ["WaitQueue"]

_MIN_TIMER = 0.001  # never spin on a zero-length timer


class WaitQueue:
    """The line for one group. Waiters are futures resolved with True (woken) or
    False (their own time ran out)."""

    __slots__ = ("_clock", "_live", "_q", "_timer", "_timer_at", "max_size")

    def __init__(self, clock: Clock, max_size: int) -> None:
        self._clock = clock
        self.max_size = max_size
        self._q: deque[asyncio.Future[bool]] = deque()
        self._live = 0
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = 0.0

    @property
    def waiting(self) -> int:
        """Requests in line now."""
        return self._live

    @property
    def full(self) -> bool:
        return self._live >= self.max_size

    def wake(self) -> None:
        """Wake the request at the head of the line, if any."""
        q = self._q
        while q:
            fut = q.popleft()
            if not fut.done():
                fut.set_result(True)
                return

    async def wait(self, timeout: float, *, capacity_in: float | None, front: bool) -> bool:
        """Park for at most `timeout` seconds; True when woken, False when the time
        ran out. `capacity_in` (seconds until a window frees, when known) arms the
        line's timer; `front` puts a woken request that found nothing back first."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        if front:
            self._q.appendleft(fut)
        else:
            self._q.append(fut)
        self._live += 1
        if capacity_in is not None:
            self._arm(max(capacity_in, _MIN_TIMER))
        sleeper = asyncio.ensure_future(self._clock.sleep(timeout))
        sleeper.add_done_callback(lambda _: _resolve(fut, False))
        used = False
        try:
            used = await fut
            return used
        finally:
            self._live -= 1
            sleeper.cancel()
            if not fut.done():
                fut.cancel()
            elif not used and not fut.cancelled() and fut.result():
                # Woken, then cancelled before running: hand the wake-up on.
                self.wake()
            if len(self._q) > 2 * self._live + 16:
                self._q = deque(f for f in self._q if not f.done())

    def _arm(self, delay: float) -> None:
        at = self._clock.now() + delay
        timer = self._timer
        if timer is not None and not timer.done():
            if self._timer_at <= at:
                return
            timer.cancel()
        self._timer_at = at
        self._timer = asyncio.ensure_future(self._fire(delay))

    async def _fire(self, delay: float) -> None:
        await self._clock.sleep(delay)
        self._timer = None
        self.wake()

    def close(self) -> None:
        """Cancel the timer (the router is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __repr__(self) -> str:
        return f"<WaitQueue waiting={self._live}/{self.max_size}>"


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)
