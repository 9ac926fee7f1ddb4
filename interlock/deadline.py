"""Cheap per-attempt timeouts: 10 ms buckets of deadlines and one loop timer, for the
earliest bucket, instead of a timer per call.

`asyncio.timeout()` schedules and cancels a timer handle for every attempt and is an
async context manager (two coroutines per use); under load that costs more than the
rest of the routing decision. Here attempts whose deadlines fall in the same bucket
share it, entering and leaving is a dict lookup and a set add/discard in a plain
``with`` block, and a new bucket pushes its key on a heap of ints (the loop timer is
moved only when the new bucket is the earliest). Deadlines fire up to one bucket late
(10 ms), never early.
Cancellation semantics follow `asyncio.timeout`: only our own cancel turns into
`TimeoutError`; a cancel from outside propagates unchanged.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from types import TracebackType

__all__ = ["DeadlineWheel"]

_new = object.__new__
_current_task = asyncio.current_task


class DeadlineWheel:
    """Shared timers for many concurrent timeouts on one event loop."""

    __slots__ = ("_armed", "_buckets", "_keys", "_loop", "_resolution", "_time", "on_new_loop")

    def __init__(self, resolution: float = 0.01) -> None:
        self._resolution = resolution
        self._buckets: dict[int, set[_WheelTimeout]] = {}
        self._keys: list[int] = []
        """The buckets' keys, a heap: the earliest is the one the loop timer is for."""
        self._armed: tuple[int, asyncio.TimerHandle] | None = None
        """The one loop timer (for the earliest bucket) and its bucket's key. One at a
        time: a loop timer per bucket costs a Python-level heap insert in the loop
        for every 10 ms of new deadlines, an int pushed here costs next to nothing."""
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

    def _arm(self, key: int, loop: asyncio.AbstractEventLoop) -> None:
        armed = self._armed
        if armed is not None:
            armed[1].cancel()
        self._armed = (key, loop.call_at(key * self._resolution, self._fire, loop))

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop or self._armed is None:
            return  # a timer left on a loop the wheel no longer uses
        due = self._armed[0]
        self._armed = None
        now_key = self._time() // self._resolution
        keys = self._keys
        buckets = self._buckets
        # Every bucket whose time has come (the armed one, and any the loop reached
        # late), then the buckets emptied by timeouts that ended in time.
        while keys and (keys[0] <= due or keys[0] <= now_key or not buckets.get(keys[0])):
            bucket = buckets.pop(heapq.heappop(keys), None)
            if bucket:
                for entry in bucket:
                    entry.expired = True
                    entry.task.cancel()
                bucket.clear()  # its entries hold it: no cycle left for the collector
        if keys:
            self._arm(keys[0], loop)


class _WheelTimeout:
    """One use of the wheel; it is also the entry its bucket holds (one object per
    attempt, not two)."""

    __slots__ = ("_bucket", "_cancelling", "_seconds", "_wheel", "expired", "task")

    task: asyncio.Task[object]
    _bucket: set[_WheelTimeout]
    _wheel: DeadlineWheel
    _seconds: float
    expired: bool

    def __enter__(self) -> None:
        task = _current_task()
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
            wheel._keys = []
            wheel._armed = None
            # (A loop whose `time` was replaced, on its class or the instance, keeps it.)
            plain = getattr(loop.time, "__func__", None) is asyncio.BaseEventLoop.time
            wheel._time = time.monotonic if plain else loop.time
        res = wheel._resolution
        key = -(-(wheel._time() + self._seconds) // res)  # ceil, so never early
        ikey = int(key)
        bucket = wheel._buckets.get(ikey)
        if bucket is None:
            bucket = wheel._buckets[ikey] = set()
            heapq.heappush(wheel._keys, ikey)
            armed = wheel._armed
            if armed is None or ikey < armed[0]:
                wheel._arm(ikey, loop)
        self.task = task
        bucket.add(self)
        # The bucket itself, not its key: leaving in time is one discard, no lookup.
        self._bucket = bucket

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.expired:
            self._bucket.discard(self)
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
