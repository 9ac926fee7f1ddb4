"""Cheap per-attempt timeouts: one loop timer per 10 ms bucket instead of one per call.

`asyncio.timeout()` schedules and cancels a timer handle for every attempt and is an
async context manager (two coroutines per use); under load that costs more than the
rest of the routing decision. Here attempts whose deadlines fall in the same bucket
share one timer, and entering and leaving is a dict lookup and a set add/discard in a
plain ``with`` block. Deadlines fire up to one bucket late (10 ms), never early.
Cancellation semantics follow `asyncio.timeout`: only our own cancel turns into
`TimeoutError`; a cancel from outside propagates unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType

__all__ = ["DeadlineWheel"]

_new = object.__new__


class DeadlineWheel:
    """Shared timers for many concurrent timeouts on one event loop."""

    __slots__ = ("_buckets", "_loop", "_resolution", "_time", "on_new_loop")

    def __init__(self, resolution: float = 0.01) -> None:
        self._resolution = resolution
        self._buckets: dict[int, set[_WheelTimeout]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._time: Callable[[], float] = time.monotonic
        """The loop's clock: `time.monotonic` itself for asyncio's own loops (their
        `time()` is a Python method calling it), else the loop's `time`."""
        self.on_new_loop: Callable[[asyncio.AbstractEventLoop], None] | None = None
        """Called (before anything changes) when a timeout is entered on a loop other
        than the last one: the router checks there, off the hot path, that nothing it
        holds is bound to the old loop. It may raise."""

    def timeout(self, seconds: float) -> _WheelTimeout:
        """``with wheel.timeout(s):`` (inside a task) raises TimeoutError if the block
        runs past `s` seconds. ``async with`` works too."""
        # Made without calling an __init__: one Python frame less per attempt.
        t = _new(_WheelTimeout)
        t._wheel = self
        t._seconds = seconds
        t.expired = False
        return t

    def _fire(self, key: int) -> None:
        for entry in self._buckets.pop(key, ()):
            entry.expired = True
            entry.task.cancel()


class _WheelTimeout:
    """One use of the wheel; it is also the entry its bucket holds (one object per
    attempt, not two)."""

    __slots__ = ("_cancelling", "_key", "_seconds", "_wheel", "expired", "task")

    task: asyncio.Task[object]
    _wheel: DeadlineWheel
    _seconds: float
    expired: bool

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("DeadlineWheel.timeout() must be used inside an asyncio task")
        self._cancelling = task.cancelling()
        wheel = self._wheel
        loop = task.get_loop()
        if loop is not wheel._loop:
            if wheel.on_new_loop is not None:
                wheel.on_new_loop(loop)
            # Timers belong to a loop: a router reused under a new loop starts afresh.
            wheel._loop = loop
            wheel._buckets = {}
            # (A loop whose `time` was replaced, on its class or the instance, keeps it.)
            plain = getattr(loop.time, "__func__", None) is asyncio.BaseEventLoop.time
            wheel._time = time.monotonic if plain else loop.time
        res = wheel._resolution
        key = -(-(wheel._time() + self._seconds) // res)  # ceil, so never early
        ikey = int(key)
        bucket = wheel._buckets.get(ikey)
        if bucket is None:
            bucket = wheel._buckets[ikey] = set()
            loop.call_at(ikey * res, wheel._fire, ikey)
        self.task = task
        bucket.add(self)
        self._key = ikey

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.expired:
            bucket = self._wheel._buckets.get(self._key)
            if bucket is not None:
                bucket.discard(self)
            return
        if exc_type is asyncio.CancelledError and self.task.uncancel() <= self._cancelling:
            raise TimeoutError from exc

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
