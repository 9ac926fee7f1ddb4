"""The clock every time-dependent decision reads.

Health, cooldowns, rate windows and budgets ask a `Clock` for the time instead of
calling `time.monotonic()` directly, so unit tests can advance time with
`interlock.testing.FakeClock` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "MonotonicClock"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds plus a way to wait on them."""

    def now(self) -> float:
        """Seconds on a monotonic scale; only differences are meaningful."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic()` and `asyncio.sleep`."""

    __slots__ = ()

    # The builtin itself, not a method calling it: no Python frame per reading (the
    # router reads the clock a few times per request).
    now = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "MonotonicClock()"
