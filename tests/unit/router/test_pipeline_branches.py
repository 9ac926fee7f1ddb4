"""The cold branches of `Pipeline.run` (interlock/router/pipeline_branches.py): waiting
and backing off when nothing is eligible, paying for retries from the retry budget,
what a failed attempt leads to, and the error when nothing could be sent. Time is a
FakeClock; nothing sleeps for real."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from prometheus_client import generate_latest

from interlock import (
    BadRequestError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    HealthPolicy,
    InterlockError,
    InternalServerError,
    NoDeploymentAvailableError,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
)
from interlock.observability import PrometheusMetrics
from interlock.testing import FakeClock
from tests.unit.router.local_calls import (
    NO_BUDGET,
    RecordingClock,
    drive,
    failing,
    first,
    router,
)
from tests.unit.scripted_transport import (
    MESSAGES,
    START,
    ScriptedTransport,
    bounded,
    dep,
    fail,
    first_candidate,
    make_router,
    two,
    until,
)

# --- nothing eligible: wait for a cooldown, back off, or give the group up ---------


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


async def test_backoff_only_when_all_tried_never_after_last_or_past_deadline() -> None:
    clock = RecordingClock()
    r = router(clock, {"a": 1}, retry=RetryPolicy(max_attempts=4, backoff_base=0.1))
    fn = failing({"a0"})
    with pytest.raises(InternalServerError) as info:
        await drive(clock, r.call("a", fn))
    assert len(info.value.attempts) == 4
    assert len(clock.sleeps) == 3  # between attempts, none after the last
    assert all(0 <= d <= 0.1 * 2**i for i, (_, d) in enumerate(clock.sleeps))

    clock2 = RecordingClock()
    r2 = router(clock2, {"a": 1}, retry=RetryPolicy(max_attempts=50, backoff_base=1.0))
    start = clock2.now()
    with pytest.raises(InterlockError):
        await drive(clock2, r2.call("a", fn, timeout=3.0))
    assert all(at + d < start + 3.0 for at, d in clock2.sleeps)


# --- the retry budget pays for a retry, or refuses it ------------------------------


async def test_budget_stops_retries_when_spent() -> None:
    clock = FakeClock()
    r = router(
        clock,
        {"a": 3},
        retry=RetryPolicy(budget_ratio=0.5, budget_floor=0, budget_window=100),
    )
    fn = failing({"a0", "a1", "a2"})
    for _ in range(40):
        with pytest.raises(InternalServerError):
            await r.call("a", fn)
    assert len(fn.calls) <= 40 * 1.5


async def test_first_retry_to_a_healthy_deployment_is_free() -> None:
    # a0 always fails and is tried first; a1 is healthy. With a budget that pays for
    # nothing every call still succeeds: its one retry goes to a healthy deployment.
    clock = FakeClock()
    r = router(clock, {"a": 2}, retry=NO_BUDGET, strategy=first)
    fn = failing({"a0"})
    for _ in range(20):
        assert await r.call("a", fn) == "a1"
    budget = r.parts.pipeline.retry_budget("a")
    assert (budget.free, budget.denied) == (20, 0)


async def test_a_refused_retry_moves_on_to_a_fallback_and_the_error_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    metrics = PrometheusMetrics()
    r = router(
        clock,
        {"a": 2, "b": 1},
        retry=NO_BUDGET,
        strategy=first,
        fallbacks={"a": ["b"]},
        metrics=metrics,
    )
    fn = failing({"a0", "a1"})
    # First call: a0 fails, the free retry goes to a1 (nothing known against it yet)
    # and fails; the fallback's first try would be a paid retry: refused.
    with (
        caplog.at_level(logging.WARNING, logger="interlock.router"),
        pytest.raises(InternalServerError) as info,
    ):
        await r.call("a", fn)
    assert fn.calls == ["a0", "a1"]
    err = info.value
    assert "a retry was refused by the retry budget of group 'a'" in str(err)
    assert "0 + 0 x 1 calls allow 0" in str(err)
    *sent, refused = err.attempts
    assert [a.deployment_id for a in sent] == ["a0", "a1"]
    assert (refused.group, refused.deployment_id, refused.duration) == ("b", "b0", 0.0)
    assert refused.error.startswith("a retry was refused by the retry budget")
    [line] = [rec for rec in caplog.records if getattr(rec, "event", None) == "retry_refused"]
    assert line.levelno == logging.WARNING
    assert "retry refused" in line.getMessage()
    assert (line.group, line.budget_group, line.deployment) == ("b", "a", "b0")  # type: ignore[attr-defined]
    # Second call: a1 is known to fail now, so the retry after a0 goes to... nothing
    # healthy in a: paid, refused; the call moves on to b, where its free retry applies.
    fn.calls.clear()
    assert await r.call("a", fn) == "b0"
    assert fn.calls == ["a0", "b0"]
    budget = r.parts.pipeline.retry_budget("a")
    assert (budget.free, budget.denied) == (2, 2)
    text = generate_latest(metrics.registry).decode()
    assert 'interlock_retries_refused_total{group="a"} 2.0' in text


async def test_a_backoff_the_budget_cannot_pay_for_is_refused_and_said() -> None:
    # One deployment that fails: the retry would have to wait and go back to it.
    clock = FakeClock()
    r = router(clock, {"a": 1}, retry=NO_BUDGET)
    fn = failing({"a0"})
    with pytest.raises(InternalServerError) as info:
        await r.call("a", fn)
    assert fn.calls == ["a0"]
    assert [(a.group, a.deployment_id) for a in info.value.attempts] == [("a", "a0"), ("a", "")]
    assert "refused by the retry budget" in str(info.value)
    assert clock.sleepers == 0


# --- after a failed attempt: try another, move on, redirect or raise ---------------


async def test_caller_errors_are_not_retried() -> None:
    clock = FakeClock()
    r = router(clock, {"a": 3}, fallbacks={"a": []})
    fn = failing({"a0", "a1", "a2"}, lambda i: BadRequestError("bad", deployment_id=i))
    with pytest.raises(BadRequestError) as info:
        await r.call("a", fn)
    assert len(fn.calls) == 1
    assert len(info.value.attempts) == 1
    assert r.statistics().deployments[0].failures == 0


async def test_attempts_by_kind_moves_on_to_the_fallback() -> None:
    clock = FakeClock()
    r = router(
        clock,
        {"a": 3, "b": 1},
        fallbacks={"a": ["b"]},
        retry=RetryPolicy(attempts_by_kind={"server_error": 1}),
    )
    fn = failing({"a0", "a1", "a2"})
    assert await r.call("a", fn) == "b0"
    assert len(fn.calls) == 2


async def test_wildcard_and_special_fallback_chains() -> None:
    clock = FakeClock()
    r = router(
        clock,
        {"a": 1, "b": 1, "big": 1, "safe": 1},
        fallbacks={"*": ["b"], "b": []},
        context_window_fallbacks={"*": ["big"]},
        content_policy_fallbacks={"a": ["safe"]},
    )
    assert r.fallback_chain("a") == ("a", "b")
    assert r.fallback_chain("big") == ("big", "b")
    assert await r.call("a", failing({"a0"})) == "b0"

    cw = failing({"a0"}, lambda i: ContextWindowExceededError("long", deployment_id=i))
    assert await r.call("a", cw) == "big0"
    cp = failing({"a0"}, lambda i: ContentPolicyViolationError("no", deployment_id=i))
    assert await r.call("a", cp) == "safe0"
    cp_b = failing({"b0"}, lambda i: ContentPolicyViolationError("no", deployment_id=i))
    with pytest.raises(ContentPolicyViolationError) as info:
        await r.call("b", cp_b)  # no content-policy chain for b
    assert [a.deployment_id for a in info.value.attempts] == ["b0"]
    assert r.statistics().by_id("b0").failures == 0


# --- nothing could be sent: the final error ----------------------------------------


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
