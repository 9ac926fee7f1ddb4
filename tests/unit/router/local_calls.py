"""What the tests that route a local function with `Router.call` on a FakeClock share (no
sockets): a clock that remembers its sleeps, routers of plain groups, failing functions
and a retry budget that pays for nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from interlock import (
    Deployment,
    HealthPolicy,
    InternalServerError,
    RetryPolicy,
    Router,
)
from interlock.errors import InterlockError
from interlock.testing import FakeClock


class RecordingClock(FakeClock):
    """A FakeClock that remembers every sleep (when, and for how long)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[tuple[float, float]] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append((self.now(), seconds))
        await super().sleep(seconds)


def deps(groups: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"group": g, "model": "m", "id": f"{g}{i}"} for g, n in groups.items() for i in range(n)
    ]


def router(clock: FakeClock, groups: dict[str, int], **kw: Any) -> Router:
    kw.setdefault("health", HealthPolicy(allowed_fails=100, failure_rate_threshold=None))
    return Router(deps(groups), clock=clock, seed=11, **kw)


async def drive(clock: FakeClock, coro: Awaitable[Any], step: float = 0.01) -> Any:
    """Run `coro`, advancing fake time whenever it sleeps."""
    task = asyncio.ensure_future(coro)
    for _ in range(100_000):
        if task.done():
            break
        await asyncio.sleep(0)
        if clock.sleepers:
            clock.advance(step)
    return await task


def failing(fail: set[str], exc: Callable[[str], InterlockError] | None = None) -> Any:
    calls: list[str] = []

    async def fn(d: Deployment) -> str:
        assert d.id is not None
        calls.append(d.id)
        if d.id in fail:
            raise (exc or (lambda i: InternalServerError("boom", deployment_id=i)))(d.id)
        return d.id

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def first(candidates: Any, request: Any) -> Any:
    """Always the first eligible deployment, so a test knows which one is tried."""
    return candidates[0]


NO_BUDGET = RetryPolicy(budget_ratio=0.0, budget_floor=0, budget_window=100)
"""A retry budget that pays for nothing: only free retries are sent."""
