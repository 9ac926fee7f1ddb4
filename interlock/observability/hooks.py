"""Hooks: user callbacks for what the router does, kept off the request's critical path.

A hook is any object with some of the `Hook` methods; subclass `Hook` to implement
only those you need (the others are no-ops and are never called). Each method may be
a plain function or a coroutine function:

- a **sync** method runs inline, right where the event happens, inside a
  ``try/except``: an exception is logged (WARNING, rate-limited) and counted, never
  raised into the request. It must be cheap: it runs on the event loop, so a sync hook
  that blocks blocks the loop. Hand slow work to an async method instead.
- an **async** method never runs inline: the event is put on a bounded queue that one
  background task drains in order (started on first use, stopped by
  ``Router.aclose()``). When the queue is full the event is dropped and counted; the
  request never waits. Each call is bounded by a timeout so one stuck hook cannot
  stall the queue for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from interlock.observability.events import (
    CooldownEvent,
    FailureEvent,
    FallbackEvent,
    HedgeEvent,
    RateLimitWaitEvent,
    RecoveryEvent,
    RequestStartEvent,
    RetryEvent,
    SuccessEvent,
)
from interlock.observability.logs import hooks_logger as logger

__all__ = ["HOOK_METHODS", "Channel", "Hook", "HookRunner"]

HOOK_METHODS = (
    "on_request_start",
    "on_success",
    "on_failure",
    "on_retry",
    "on_fallback",
    "on_cooldown",
    "on_recovery",
    "on_hedge",
    "on_rate_limit_wait",
)


class Hook(Protocol):
    """What a hook may implement. Every method is optional when you subclass `Hook`;
    return None, or make the method ``async``."""

    def on_request_start(self, event: RequestStartEvent) -> Awaitable[None] | None:
        """A request entered the router."""
        return None

    def on_success(self, event: SuccessEvent) -> Awaitable[None] | None:
        """An attempt succeeded."""
        return None

    def on_failure(self, event: FailureEvent) -> Awaitable[None] | None:
        """An attempt failed, or the router refused the request."""
        return None

    def on_retry(self, event: RetryEvent) -> Awaitable[None] | None:
        """Another attempt in the same group after a failure."""
        return None

    def on_fallback(self, event: FallbackEvent) -> Awaitable[None] | None:
        """The request moves on to a fallback group."""
        return None

    def on_cooldown(self, event: CooldownEvent) -> Awaitable[None] | None:
        """A deployment was taken out of rotation."""
        return None

    def on_recovery(self, event: RecoveryEvent) -> Awaitable[None] | None:
        """A cooled deployment served a request successfully again."""
        return None

    def on_hedge(self, event: HedgeEvent) -> Awaitable[None] | None:
        """A hedged attempt was sent."""
        return None

    def on_rate_limit_wait(self, event: RateLimitWaitEvent) -> Awaitable[None] | None:
        """The router waited for rate-limit headroom."""
        return None


Callback = Callable[[Any], Any]
_Item = tuple[Callback, str, object]


class Channel:
    """The callbacks of one event kind, split into inline (sync) and queued (async)."""

    __slots__ = ("active", "asynchronous", "name", "runner", "synchronous")

    def __init__(
        self,
        name: str,
        synchronous: tuple[Callback, ...],
        asynchronous: tuple[Callback, ...],
        runner: HookRunner,
    ) -> None:
        self.name = name
        self.synchronous = synchronous
        self.asynchronous = asynchronous
        self.runner = runner
        self.active = bool(synchronous or asynchronous)

    def emit(self, event: object) -> None:
        for cb in self.synchronous:
            try:
                cb(event)
            except Exception as exc:
                self.runner.failed(cb, self.name, exc)
        for cb in self.asynchronous:
            self.runner.enqueue(cb, self.name, event)


class HookRunner:
    """Runs hook callbacks: sync ones guarded, async ones through a bounded queue."""

    __slots__ = (
        "_last_warning",
        "_loop",
        "_queue",
        "_suppressed",
        "_task",
        "call_timeout",
        "dropped",
        "errors",
        "queue_size",
        "warn_interval",
    )

    def __init__(
        self, queue_size: int = 10_000, call_timeout: float = 5.0, warn_interval: float = 60.0
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"hook queue_size must be >= 1, got {queue_size!r}")
        if not call_timeout > 0:
            raise ValueError(f"hook call_timeout must be > 0 seconds, got {call_timeout!r}")
        self.queue_size = queue_size
        self.call_timeout = call_timeout
        self.warn_interval = warn_interval
        self.errors = 0
        """Hook calls that raised (or timed out), since the start."""
        self.dropped = 0
        """Events for async hooks dropped because the queue was full."""
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_warning: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def channels(self, hooks: Sequence[object]) -> dict[str, Channel]:
        """One `Channel` per hook method name, holding what `hooks` implement."""
        out: dict[str, Channel] = {}
        for name in HOOK_METHODS:
            sync: list[Callback] = []
            coro: list[Callback] = []
            for h in hooks:
                fn = getattr(h, name, None)
                if fn is None or getattr(type(h), name, None) is getattr(Hook, name):
                    continue  # not implemented, or Hook's no-op default
                if not callable(fn):
                    raise TypeError(f"hook {type(h).__name__}.{name} is not callable")
                (coro if inspect.iscoroutinefunction(fn) else sync).append(fn)
            out[name] = Channel(name, tuple(sync), tuple(coro), self)
        return out

    def failed(self, cb: Callback, event: str, exc: BaseException) -> None:
        """A hook raised: count it and log it, at most once per `warn_interval` per hook."""
        self.errors += 1
        key = f"{getattr(cb, '__qualname__', type(cb).__name__)}"
        now = time.monotonic()
        last = self._last_warning.get(key)
        if last is not None and now - last < self.warn_interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last_warning[key] = now
        suppressed = self._suppressed.pop(key, 0)
        logger.warning(
            "hook %s failed on %s%s",
            key,
            event,
            f" ({suppressed} more failures not logged)" if suppressed else "",
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"event": "hook_error", "hook": key, "hook_event": event},
        )

    def enqueue(self, cb: Callback, name: str, event: object) -> None:
        """Queue an async callback; never blocks (drops and counts when full)."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        if queue is None or loop is not self._loop or self._task is None or self._task.done():
            queue = self._start(loop)
        try:
            queue.put_nowait((cb, name, event))
        except asyncio.QueueFull:
            self.dropped += 1

    def _start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[_Item]:
        # A router reused under a new event loop gets a fresh queue and drainer.
        if loop is not self._loop or self._queue is None:
            self._queue = asyncio.Queue(self.queue_size)
        self._loop = loop
        self._task = loop.create_task(self._drain(self._queue), name="interlock-hooks")
        return self._queue

    async def _drain(self, queue: asyncio.Queue[_Item]) -> None:
        while True:
            cb, name, event = await queue.get()
            try:
                async with asyncio.timeout(self.call_timeout):
                    await cb(event)
            except Exception as exc:
                self.failed(cb, name, exc)
            finally:
                queue.task_done()

    @property
    def pending(self) -> int:
        """Events waiting for an async hook."""
        return self._queue.qsize() if self._queue is not None else 0

    async def aclose(self, flush_timeout: float = 1.0) -> None:
        """Deliver what is queued (for up to `flush_timeout` seconds), then stop."""
        task, queue = self._task, self._queue
        self._task = None
        if task is None or queue is None:
            return
        if task.get_loop() is asyncio.get_running_loop() and not task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    await queue.join()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Whatever the flush could not deliver is lost: count it.
        self.dropped += queue.qsize()
        self._queue = None
