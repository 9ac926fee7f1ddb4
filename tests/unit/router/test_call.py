"""`router.call(group, fn)`: any async function routed with the same selection,
accounting, health, retries and fallbacks as a chat request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from interlock import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    Deployment,
    HealthPolicy,
    RateLimitError,
    RetryPolicy,
    Router,
    ServiceUnavailableError,
)
from interlock.testing import FakeClock
from tests.unit.scripted_transport import ScriptedTransport, dep, first_candidate, make_router

START = 1000.0
Fn = Callable[[Deployment], Awaitable[str]]


def router_of(clock: FakeClock, *names: str, **options: object) -> Router:
    options.setdefault("strategy", first_candidate)
    return make_router(ScriptedTransport(clock), [dep(n) for n in names], clock, **options)


def scripted(outcomes: dict[str, list[BaseException | None]], seen: list[str]) -> Fn:
    """fn(deployment): the next outcome scripted for that deployment (None: success)."""

    async def fn(d: Deployment) -> str:
        assert d.id is not None
        seen.append(d.id)
        queue = outcomes.get(d.id, [])
        outcome = queue.pop(0) if queue else None
        if outcome is not None:
            raise outcome
        return f"done by {d.id}"

    return fn


async def test_call_routes_and_returns_the_result() -> None:
    clock = FakeClock()
    router = router_of(clock, "a", "b")
    seen: list[str] = []
    assert await router.call("g", scripted({}, seen)) == "done by a"
    assert seen == ["a"]
    a = router.statistics().by_id("a")
    assert (a.requests, a.successes, a.in_flight) == (1, 1, 0)


async def test_call_retries_on_interlock_errors_elsewhere() -> None:
    clock = FakeClock()
    router = router_of(clock, "a", "b")
    seen: list[str] = []
    fn = scripted({"a": [ServiceUnavailableError("down")]}, seen)
    assert await router.call("g", fn) == "done by b"
    assert seen == ["a", "b"]
    assert router.statistics().by_id("a").failures == 1


async def test_call_rate_limit_cools_that_deployment_for_its_retry_after() -> None:
    clock = FakeClock()
    router = router_of(clock, "a", "b")
    seen: list[str] = []
    fn = scripted({"a": [RateLimitError("slow down", retry_after=7.0)]}, seen)
    assert await router.call("g", fn) == "done by b"
    assert router.statistics().by_id("a").cooldown_until == START + 7.0


async def test_call_timeout_error_counts_as_api_timeout() -> None:
    clock = FakeClock()
    router = router_of(clock, "a", "b", retry=RetryPolicy(max_attempts=2, backoff_base=0))
    seen: list[str] = []
    fn = scripted({"a": [TimeoutError()], "b": [TimeoutError()]}, seen)
    with pytest.raises(APITimeoutError) as exc:
        await router.call("g", fn)
    assert seen == ["a", "b"]
    assert exc.value.deployment_id == "b"
    assert [x.deployment_id for x in exc.value.attempts] == ["a", "b"]
    stats = router.statistics()
    assert stats.by_id("a").failures == 1
    assert stats.in_flight == 0


async def test_call_that_outlives_the_deployment_timeout_is_cut() -> None:
    """A fn that never finishes is cut at the deployment's timeout (a real 50 ms on the
    loop clock; nothing is asserted about how long it took) and the call succeeds on
    the next deployment."""
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t, [dep("slow", timeout=0.05), dep("fast")], clock, strategy=first_candidate
    )
    started: list[str] = []

    async def fn(d: Deployment) -> str:
        assert d.id is not None
        started.append(d.id)
        if d.id == "slow":
            await asyncio.get_running_loop().create_future()
        return d.id

    async with asyncio.timeout(10):
        assert await router.call("g", fn) == "fast"
    assert started == ["slow", "fast"]
    slow = router.statistics().by_id("slow")
    assert (slow.failures, slow.in_flight) == (1, 0)


async def test_call_os_error_counts_as_connection_error() -> None:
    clock = FakeClock()
    router = router_of(clock, "a", retry=RetryPolicy(max_attempts=1))
    seen: list[str] = []
    with pytest.raises(APIConnectionError) as exc:
        await router.call("g", scripted({"a": [ConnectionRefusedError()]}, seen))
    assert exc.value.deployment_id == "a"


async def test_call_foreign_exception_propagates_unretried_and_uncounted() -> None:
    clock = FakeClock()
    router = router_of(clock, "a", "b")
    seen: list[str] = []
    boom = KeyError("not ours")
    with pytest.raises(KeyError) as exc:
        await router.call("g", scripted({"a": [boom]}, seen))
    assert exc.value is boom
    assert seen == ["a"]
    a = router.statistics().by_id("a")
    assert (a.failures, a.consecutive_failures, a.in_flight, a.state) == (0, 0, 0, "healthy")


async def test_call_caller_error_is_not_retried() -> None:
    clock = FakeClock()
    router = router_of(clock, "a", "b")
    seen: list[str] = []
    with pytest.raises(BadRequestError):
        await router.call("g", scripted({"a": [BadRequestError("bad input")]}, seen))
    assert seen == ["a"]
    assert router.statistics().by_id("a").failures == 0


async def test_call_falls_back_and_reserves_tokens() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t,
        [dep("a", "main"), dep("b", "spare", tpm=1000)],
        clock,
        fallbacks={"main": ["spare"]},
        health=HealthPolicy(),
    )
    seen: list[str] = []
    fn = scripted({"a": [ServiceUnavailableError("down")] * 3}, seen)
    assert await router.call("main", fn, tokens=120) == "done by b"
    assert seen == ["a", "b"]
    assert router.statistics().by_id("b").tpm_used == 120


async def test_call_cancelled_settles_in_flight() -> None:
    clock = FakeClock()
    router = router_of(clock, "a")
    entered = asyncio.Event()

    async def fn(d: Deployment) -> str:
        entered.set()
        await asyncio.get_running_loop().create_future()
        return "never"

    task = asyncio.create_task(router.call("g", fn))
    await entered.wait()
    assert router.statistics().in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    a = router.statistics().by_id("a")
    assert (a.in_flight, a.failures) == (0, 0)
