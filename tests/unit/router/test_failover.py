"""Failures: skipping a failing deployment, cooldowns (Retry-After, consecutive
failures, bad keys), caller errors, fallbacks, backoff, the deadline, and what the
router says when nothing can serve. Time is a FakeClock; nothing sleeps for real."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from interlock import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    DeadlineExceededError,
    HealthPolicy,
    InterlockError,
    InternalServerError,
    MalformedResponseError,
    NoDeploymentAvailableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    Router,
    ServiceUnavailableError,
)
from interlock.testing import FakeClock
from tests.unit.scripted_transport import (
    MESSAGES,
    TIMEOUT,
    ScriptedTransport,
    Step,
    dep,
    fail,
    first_candidate,
    make_router,
    until,
)

T = TypeVar("T")
START = 1000.0  # FakeClock's default start


async def bounded(aw: Awaitable[T]) -> T:
    """Fail (instead of hanging the suite) if the router parks on the fake clock."""
    async with asyncio.timeout(5):
        return await aw


def two(clock: FakeClock, **options: Any) -> tuple[ScriptedTransport, Router]:
    """Deployments a and b; the strategy always tries a first when it is eligible."""
    t = ScriptedTransport(clock)
    options.setdefault("strategy", first_candidate)
    return t, make_router(t, [dep("a"), dep("b")], clock, **options)


# --- a failing deployment is skipped --------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        InternalServerError,
        ServiceUnavailableError,
        APITimeoutError,
        APIConnectionError,
        MalformedResponseError,
        RateLimitError,
        AuthenticationError,
        PermissionDeniedError,
    ],
)
async def test_failing_deployment_is_skipped_and_request_succeeds(
    error: type[InterlockError],
) -> None:
    clock = FakeClock()
    t, router = two(clock)
    t.always("a", fail(error))
    r = await bounded(router.acompletion("g", MESSAGES))
    assert r.deployment_id == "b"
    assert t.order == ["a", "b"]
    stats = router.statistics()
    assert stats.by_id("a").failures == 1
    assert stats.by_id("b").successes == 1
    assert stats.in_flight == 0
    # moving on to a healthy deployment never waits
    assert clock.now() == START
    assert clock.sleepers == 0


async def test_no_deployment_is_tried_twice_within_a_group_while_others_remain() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    names = ["a", "b", "c", "d", "e"]
    for n in names:
        t.always(n, fail(ServiceUnavailableError))
    router = make_router(
        t, [dep(n) for n in names], clock, retry=RetryPolicy(max_attempts=4, backoff_base=0)
    )
    with pytest.raises(ServiceUnavailableError) as exc:
        await bounded(router.acompletion("g", MESSAGES))
    assert len(t.calls) == 4
    assert len(set(t.order)) == 4
    assert [a.deployment_id for a in exc.value.attempts] == t.order
    assert all(a.group == "g" for a in exc.value.attempts)
    assert all("ServiceUnavailableError" in a.error for a in exc.value.attempts)


# --- cooldowns ---------------------------------------------------------------------


async def test_retry_after_cools_exactly_that_deployment_for_exactly_that_long() -> None:
    clock = FakeClock()
    t, router = two(clock)
    t.push("a", fail(RateLimitError, retry_after=7.5))
    r = await router.acompletion("g", MESSAGES)
    assert r.deployment_id == "b"
    stats = router.statistics()
    a, b = stats.by_id("a"), stats.by_id("b")
    assert a.state == "cooling"
    assert a.cooldown_until == START + 7.5
    assert a.cooldown_remaining == 7.5
    assert a.ejections == 1
    assert (b.state, b.cooldown_until, b.cooldown_remaining, b.ejections) == (
        "healthy",
        None,
        0.0,
        0,
    )

    clock.advance(7.49)
    r = await router.acompletion("g", MESSAGES)
    assert r.deployment_id == "b"  # a is still out
    assert t.served("a") == 1
    clock.advance(0.01)
    # Back exactly at the end of its Retry-After, in rotation at once: a rate limit
    # is not ill health, so no half-open trials (docs/resilience.md).
    assert router.statistics().by_id("a").state == "healthy"
    r = await router.acompletion("g", MESSAGES)
    assert r.deployment_id == "a"


async def test_rate_limit_without_retry_after_uses_the_policy() -> None:
    clock = FakeClock()
    t, router = two(clock, health=HealthPolicy(rate_limit_cooldown=4.0))
    t.push("a", fail(RateLimitError))
    await router.acompletion("g", MESSAGES)
    assert router.statistics().by_id("a").cooldown_until == START + 4.0


async def test_retry_after_is_capped_by_max_retry_after() -> None:
    clock = FakeClock()
    t, router = two(clock, health=HealthPolicy(max_retry_after=30.0))
    t.push("a", fail(RateLimitError, retry_after=86_400))
    await router.acompletion("g", MESSAGES)
    assert router.statistics().by_id("a").cooldown_until == START + 30.0


async def test_bad_key_takes_only_that_deployment_out_for_auth_cooldown() -> None:
    clock = FakeClock()
    t, router = two(clock, health=HealthPolicy(auth_cooldown=45.0))
    t.push("a", fail(AuthenticationError, status_code=401))
    r = await router.acompletion("g", MESSAGES)
    assert r.deployment_id == "b"
    stats = router.statistics()
    assert stats.by_id("a").cooldown_until == START + 45.0
    assert stats.by_id("b").state == "healthy"


async def test_a_recooldown_never_shortens_a_running_one() -> None:
    clock = FakeClock()
    t, router = two(clock)
    gate = asyncio.Event()
    t.push(
        "a",
        Step(gate=gate, error=RateLimitError, retry_after=30.0),
        Step(gate=gate, error=RateLimitError, retry_after=5.0),
    )
    tasks = [asyncio.create_task(router.acompletion("g", MESSAGES)) for _ in range(2)]
    await until(lambda: len(t.calls) == 2)
    assert t.order == ["a", "a"]
    gate.set()
    results = await asyncio.gather(*tasks)
    assert [r.deployment_id for r in results] == ["b", "b"]
    assert router.statistics().by_id("a").cooldown_until == START + 30.0


async def test_n_consecutive_failures_cool_a_deployment_for_the_configured_time() -> None:
    clock = FakeClock()
    t, router = two(clock, health=HealthPolicy(allowed_fails=3, cooldown=10.0))
    t.always("a", fail(InternalServerError))
    for i in range(1, 3):
        r = await router.acompletion("g", MESSAGES)
        assert r.deployment_id == "b"
        a = router.statistics().by_id("a")
        assert (a.state, a.consecutive_failures) == ("healthy", i)
    clock.advance(1.0)
    await router.acompletion("g", MESSAGES)  # the third consecutive failure
    a = router.statistics().by_id("a")
    assert a.state == "cooling"
    assert a.cooldown_until == START + 1.0 + 10.0
    assert a.ejections == 1
    assert t.served("a") == 3

    clock.advance(9.999)
    await router.acompletion("g", MESSAGES)
    assert t.served("a") == 3  # still cooling: not tried
    clock.advance(0.001)
    t.always("a", None)
    r = await router.acompletion("g", MESSAGES)
    assert r.deployment_id == "a"
    assert router.statistics().by_id("a").consecutive_failures == 0


async def test_a_success_resets_the_consecutive_failure_count() -> None:
    clock = FakeClock()
    t, router = two(clock, health=HealthPolicy(allowed_fails=3))
    t.push(
        "a",
        fail(InternalServerError),
        fail(InternalServerError),
        Step(),
        fail(InternalServerError),
        fail(InternalServerError),
    )
    for _ in range(5):
        await router.acompletion("g", MESSAGES)
    a = router.statistics().by_id("a")
    assert a.state == "healthy"
    assert a.consecutive_failures == 2
    assert a.failures == 4
    assert a.successes == 1


# --- caller errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (BadRequestError, 400),
        (ContextWindowExceededError, 400),
        (ContentPolicyViolationError, 400),
        (NotFoundError, 404),
    ],
)
async def test_caller_errors_are_not_retried_and_not_counted(
    error: type[InterlockError], status: int
) -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t,
        [dep("a"), dep("b"), dep("z", group="other")],
        clock,
        fallbacks={"g": ["other"]},
        strategy=first_candidate,
    )
    t.always("a", fail(error, status_code=status))
    with pytest.raises(error) as exc:
        await bounded(router.acompletion("g", MESSAGES))
    assert type(exc.value) is error
    assert exc.value.status_code == status
    assert exc.value.deployment_id == "a"
    assert len(exc.value.attempts) == 1
    assert t.order == ["a"]  # neither b nor the fallback group
    a = router.statistics().by_id("a")
    assert (a.failures, a.consecutive_failures, a.state, a.in_flight) == (0, 0, "healthy", 0)


# --- fallbacks ---------------------------------------------------------------------


async def test_exhausted_pool_falls_back_along_the_chain() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t,
        [dep("a1", "a"), dep("a2", "a"), dep("b1", "b"), dep("c1", "c")],
        clock,
        fallbacks={"a": ["b", "c"]},
        retry=RetryPolicy(max_attempts=2),
    )
    for name in ("a1", "a2", "b1"):
        t.always(name, fail(ServiceUnavailableError))
    r = await bounded(router.acompletion("a", MESSAGES))
    assert (r.group, r.deployment_id) == ("c", "c1")
    assert sorted(t.order[:2]) == ["a1", "a2"]
    assert t.order[2:] == ["b1", "c1"]
    assert [c.group for c in t.calls] == ["a", "a", "b", "c"]
    assert clock.sleepers == 0


async def test_cooling_group_goes_straight_to_its_fallback() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a1", "a"), dep("b1", "b")], clock, fallbacks={"a": ["b"]})
    t.push("a1", fail(RateLimitError, retry_after=2.0))
    r = await bounded(router.acompletion("a", MESSAGES))
    assert r.deployment_id == "b1"
    # a1 cools for 2 s, within max_wait, but a fallback exists: no waiting
    r = await bounded(router.acompletion("a", MESSAGES))
    assert r.deployment_id == "b1"
    assert t.order == ["a1", "b1", "b1"]
    assert clock.now() == START


async def test_whole_chain_failing_raises_the_last_error_with_every_attempt() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t, [dep("a1", "a"), dep("b1", "b")], clock, fallbacks={"a": ["b"]},
        retry=RetryPolicy(max_attempts=1),
    )  # fmt: skip
    t.always("a1", fail(InternalServerError))
    t.always("b1", fail(APIConnectionError))
    with pytest.raises(APIConnectionError) as exc:
        await bounded(router.acompletion("a", MESSAGES))
    assert [(x.group, x.deployment_id) for x in exc.value.attempts] == [("a", "a1"), ("b", "b1")]


# --- backoff and waiting ---------------------------------------------------------


async def test_backoff_only_after_every_deployment_was_tried() -> None:
    clock = FakeClock()
    t, router = two(clock, retry=RetryPolicy(max_attempts=3, backoff_base=1.0, backoff_max=1.0))
    t.push("a", fail(InternalServerError))
    t.push("b", fail(InternalServerError))
    task = asyncio.create_task(router.acompletion("g", MESSAGES))
    await until(lambda: clock.sleepers == 1)
    assert t.order == ["a", "b"]  # both tried before any sleep
    assert router.statistics().in_flight == 0  # nothing held while backing off
    clock.advance(1.0)  # full jitter: the sleep is at most backoff_base * 2**0
    r = await bounded(task)
    assert r.deployment_id == "a"
    assert len(t.calls) == 3


async def test_no_sleep_after_the_last_attempt() -> None:
    clock = FakeClock()
    t, router = two(clock, retry=RetryPolicy(max_attempts=2, backoff_base=1.0))
    t.always("a", fail(InternalServerError))
    t.always("b", fail(InternalServerError))
    with pytest.raises(InternalServerError) as exc:
        await bounded(router.acompletion("g", MESSAGES))
    assert len(exc.value.attempts) == 2
    assert clock.sleepers == 0


async def test_short_cooldown_is_waited_for_when_there_is_no_alternative() -> None:
    """The only deployment answers 429 with Retry-After 2 s (within max_wait and the
    deadline): the router waits exactly that long on its clock, then retries."""
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a")], clock, retry=RetryPolicy(max_wait=5.0))
    t.push("a", fail(RateLimitError, retry_after=2.0))
    task = asyncio.create_task(router.acompletion("g", MESSAGES))
    await until(lambda: clock.sleepers == 1)
    assert len(t.calls) == 1
    assert router.statistics().in_flight == 0
    clock.advance(1.999)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    assert len(t.calls) == 1
    clock.advance(0.001)
    r = await bounded(task)
    assert r.deployment_id == "a"
    assert len(t.calls) == 2


async def test_cooldown_longer_than_max_wait_is_not_waited_for() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a")], clock, retry=RetryPolicy(max_wait=5.0))
    t.push("a", fail(RateLimitError, retry_after=5.5))
    with pytest.raises(RateLimitError) as exc:
        await bounded(router.acompletion("g", MESSAGES))
    assert exc.value.retry_after == 5.5
    assert clock.sleepers == 0
    assert len(t.calls) == 1


async def test_no_wait_past_the_deadline() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a")], clock, retry=RetryPolicy(max_wait=5.0))
    t.push("a", fail(RateLimitError, retry_after=2.0))
    with pytest.raises(RateLimitError):
        await bounded(router.acompletion("g", MESSAGES, timeout=1.0))
    assert clock.sleepers == 0
    with pytest.raises(NoDeploymentAvailableError) as exc:
        await bounded(router.acompletion("g", MESSAGES, timeout=1.0))
    assert exc.value.retry_after == 2.0
    assert clock.sleepers == 0
    assert len(t.calls) == 1


# --- everything down ---------------------------------------------------------------


async def test_every_deployment_down_gives_a_typed_error_fast() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    names = ["a", "b", "c"]
    for n in names:
        t.always(n, fail(ServiceUnavailableError))
    router = make_router(
        t,
        [dep(n) for n in names],
        clock,
        # No ejection cap and no panic mode here: this is about the error when every
        # deployment is really out (the cap and panic mode are tested in
        # tests/integration/router/test_resilience.py).
        health=HealthPolicy(
            allowed_fails=3, cooldown=10.0, max_ejected_share=1.0, panic_threshold=0.0
        ),
        retry=RetryPolicy(max_attempts=3, backoff_base=0),
    )
    for _ in range(3):
        with pytest.raises(ServiceUnavailableError) as exc:
            await bounded(router.acompletion("g", MESSAGES))
        assert len(exc.value.attempts) == 3
    assert {s.state for s in router.statistics().deployments} == {"cooling"}
    calls = len(t.calls)
    with pytest.raises(NoDeploymentAvailableError) as no:
        await bounded(router.acompletion("g", MESSAGES))
    assert len(t.calls) == calls  # nothing was sent
    assert no.value.retry_after == 10.0
    text = str(no.value)
    for n in names:
        assert re.search(rf"{n}: cooling until \S+ UTC \(in 10\.0 s\) after ServiceUnavail", text)
    assert "'g'" in text
    assert clock.now() == START


async def test_no_deployment_available_reports_the_soonest_return() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a"), dep("b")], clock, strategy=first_candidate)
    t.push("a", fail(RateLimitError, retry_after=60.0))
    t.push("b", fail(RateLimitError, retry_after=90.0))
    with pytest.raises(RateLimitError):
        await bounded(router.acompletion("g", MESSAGES))
    clock.advance(10.0)
    with pytest.raises(NoDeploymentAvailableError) as exc:
        await bounded(router.acompletion("g", MESSAGES))
    assert exc.value.retry_after == 50.0
    text = str(exc.value)
    assert re.search(r"a: cooling until \S+ UTC \(in 50\.0 s\) after RateLimitError \(429\)", text)
    assert re.search(r"b: cooling until \S+ UTC \(in 80\.0 s\) after RateLimitError \(429\)", text)
    assert re.search(r"the first may be usable at \S+ UTC \(in 50\.0 s\)", text)


async def test_no_deployment_available_names_every_group_of_the_chain() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t, [dep("a1", "a"), dep("b1", "b")], clock, fallbacks={"a": ["b"]}, aliases={"x": "a"}
    )
    t.push("a1", fail(RateLimitError, retry_after=40.0))
    t.push("b1", fail(RateLimitError, retry_after=20.0))
    with pytest.raises(RateLimitError):
        await bounded(router.acompletion("x", MESSAGES))
    with pytest.raises(NoDeploymentAvailableError) as exc:
        await bounded(router.acompletion("x", MESSAGES))
    text = str(exc.value)
    assert "'x'" in text  # the name the caller asked for
    assert re.search(r"group 'a': a1: cooling until \S+ UTC \(in 40\.0 s\) after RateLimit", text)
    assert re.search(r"group 'b': b1: cooling until \S+ UTC \(in 20\.0 s\) after RateLimit", text)
    assert exc.value.retry_after == 20.0
    assert len(t.calls) == 2


async def test_no_deployment_available_at_the_concurrency_cap() -> None:
    """Over its limits, the caller gets a RateLimitError (docs/limits.md)."""
    clock = FakeClock()
    t = ScriptedTransport(clock)
    gate = asyncio.Event()
    t.push("a", Step(gate=gate))
    router = make_router(t, [dep("a", max_concurrency=1)], clock)
    held = asyncio.create_task(router.acompletion("g", MESSAGES))
    await until(lambda: len(t.calls) == 1)
    with pytest.raises(RateLimitError) as exc:
        await bounded(router.acompletion("g", MESSAGES))
    assert "a: at its concurrency cap (1/1 in flight)" in str(exc.value)
    assert exc.value.retry_after is None
    gate.set()
    await held
    assert (await router.acompletion("g", MESSAGES)).deployment_id == "a"


async def test_concurrency_caps_are_never_exceeded() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    gate = asyncio.Event()
    t.always("a", Step(gate=gate))
    t.always("b", Step(gate=gate))
    router = make_router(t, [dep("a", max_concurrency=2), dep("b", max_concurrency=3)], clock)
    tasks = [asyncio.create_task(router.acompletion("g", MESSAGES)) for _ in range(5)]
    await until(lambda: len(t.calls) == 5)
    stats = router.statistics()
    assert (stats.by_id("a").in_flight, stats.by_id("b").in_flight) == (2, 3)
    with pytest.raises(RateLimitError) as exc:
        await bounded(router.acompletion("g", MESSAGES))
    assert "a: at its concurrency cap (2/2 in flight)" in str(exc.value)
    assert "b: at its concurrency cap (3/3 in flight)" in str(exc.value)
    gate.set()
    await asyncio.gather(*tasks)
    assert router.statistics().in_flight == 0


async def test_tpm_limit_is_never_exceeded_by_concurrent_requests() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    gate = asyncio.Event()
    t.always("a", Step(gate=gate))
    router = make_router(t, [dep("a", tpm=100)], clock)
    held = asyncio.create_task(router.acompletion("g", MESSAGES, max_tokens=50))
    await until(lambda: len(t.calls) == 1)
    with pytest.raises(RateLimitError) as exc:
        await bounded(router.acompletion("g", MESSAGES, max_tokens=50))
    assert "a: over its tpm limit" in str(exc.value)
    assert len(t.calls) == 1
    gate.set()
    await held


async def test_no_deployment_available_over_rpm() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a", rpm=2)], clock)
    for _ in range(2):
        await router.acompletion("g", MESSAGES)
    with pytest.raises(RateLimitError) as exc:
        await bounded(router.acompletion("g", MESSAGES))
    assert "a: over its rpm limit (2)" in str(exc.value)
    wait = exc.value.retry_after
    assert wait is not None
    assert 0 < wait <= 61.0  # counts are held 60-61 s (docs/limits.md)
    assert len(t.calls) == 2
    clock.advance(wait)
    assert (await router.acompletion("g", MESSAGES)).deployment_id == "a"


# --- the deadline ------------------------------------------------------------------


async def test_deadline_covers_every_attempt() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    names = ["a", "b", "c", "d", "e"]
    for n in names:
        t.always(n, fail(ServiceUnavailableError, takes=4.0))
    router = make_router(t, [dep(n) for n in names], clock, retry=RetryPolicy(max_attempts=5))
    with pytest.raises(DeadlineExceededError) as exc:
        await bounded(router.acompletion("g", MESSAGES, timeout=10.0))
    # each attempt gets what is left of the deadline (deployment timeout is 60 s)
    assert [c.timeout for c in t.calls] == [10.0, 6.0, 2.0]
    assert len(exc.value.attempts) == 3
    assert isinstance(exc.value, TimeoutError)
    assert "ServiceUnavailableError" in str(exc.value)


async def test_attempt_timeout_is_the_deployments_when_that_is_shorter() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a", timeout=3.0)], clock)
    await router.acompletion("g", MESSAGES, timeout=100.0)
    await router.acompletion("g", MESSAGES, timeout=2.0)
    assert [c.timeout for c in t.calls] == [3.0, 2.0]


async def test_router_default_deadline_applies() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a", timeout=600.0)], clock, timeout=7.0)
    await router.acompletion("g", MESSAGES)
    assert t.calls[0].timeout == 7.0


async def test_timeout_of_the_deployment_counts_and_moves_on() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a", timeout=2.0), dep("b")], clock, strategy=first_candidate)
    t.push("a", TIMEOUT)
    r = await bounded(router.acompletion("g", MESSAGES, timeout=100.0))
    assert r.deployment_id == "b"
    assert router.statistics().by_id("a").failures == 1
    assert clock.now() == START + 2.0


async def test_timeout_caused_by_the_call_deadline_is_not_held_against_the_deployment() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a", timeout=60.0), dep("b")], clock, strategy=first_candidate)
    t.push("a", TIMEOUT)
    with pytest.raises(DeadlineExceededError) as exc:
        await bounded(router.acompletion("g", MESSAGES, timeout=5.0))
    assert "APITimeoutError" in str(exc.value)
    a = router.statistics().by_id("a")
    assert (a.failures, a.consecutive_failures, a.in_flight) == (0, 0, 0)
    assert t.order == ["a"]
