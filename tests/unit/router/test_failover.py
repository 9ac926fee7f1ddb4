"""Failures: skipping a failing deployment, cooldowns (Retry-After, consecutive
failures, bad keys), caller errors, fallbacks, limits that leave nothing to send to,
and the deadline. Time is a FakeClock; nothing sleeps for real. Backoff, waiting and
the error when nothing could be sent are in test_pipeline_branches.py."""

from __future__ import annotations

import asyncio

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
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
)
from interlock.testing import FakeClock
from tests.unit.scripted_transport import (
    MESSAGES,
    START,
    TIMEOUT,
    ScriptedTransport,
    Step,
    bounded,
    dep,
    fail,
    first_candidate,
    make_router,
    two,
    until,
)

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


# --- limits leave nothing to send to -----------------------------------------------


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
