"""Retries, backoff, deadline, budget, fallbacks and hedging through `Router.call`,
driven on a FakeClock (no sockets: the routed function is local)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import generate_latest

from interlock import (
    ConfigError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    Deployment,
    HealthPolicy,
    HedgePolicy,
    InternalServerError,
    RetryPolicy,
    Router,
)
from interlock.errors import BadRequestError, DeadlineExceededError, InterlockError
from interlock.observability import PrometheusMetrics
from interlock.router.hedge import Hedger
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


async def test_retries_go_to_untried_deployments_without_sleeping() -> None:
    clock = RecordingClock()
    r = router(clock, {"a": 3}, retry=RetryPolicy(budget_floor=1000))
    fn = failing({"a0", "a1"})
    for _ in range(20):
        assert await r.call("a", fn) == "a2"
    assert clock.sleeps == []
    # Every failed call tried each deployment at most once.
    assert fn.calls.count("a2") == 20


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


async def test_deadline_spans_every_attempt() -> None:
    clock = FakeClock()
    r = router(clock, {"a": 2, "b": 1}, fallbacks={"a": ["b"]})

    async def slow(d: Deployment) -> str:
        clock.advance(0.6)
        raise InternalServerError("slow boom")

    with pytest.raises(DeadlineExceededError) as info:
        await r.call("a", slow, timeout=1.0)
    assert len(info.value.attempts) == 2


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


async def test_max_fallback_depth() -> None:
    clock = FakeClock()
    groups = {"a": 1, "b": 1, "c": 1, "d": 1}
    chain = {"a": ["b"], "b": ["c"], "c": ["d"]}
    r = router(clock, groups, fallbacks=chain, max_fallback_depth=2)
    assert r.fallback_chain("a") == ("a", "b", "c")
    fn = failing({"a0", "b0", "c0"})
    with pytest.raises(InternalServerError) as info:
        await drive(clock, r.call("a", fn))
    # The last group is retried after a backoff (max_attempts 3); d is never reached.
    assert [a.group for a in info.value.attempts] == ["a", "b", "c", "c", "c"]


@pytest.mark.parametrize(
    ("fallbacks", "field"),
    [
        ({"a": ["b"], "b": ["a"]}, "fallbacks"),
        ({"a": ["b"], "*": ["a"]}, "fallbacks"),
        ({"a": ["a"]}, "fallbacks.a[0]"),
        ({"nope": ["a"]}, "fallbacks.nope"),
    ],
)
def test_fallback_cycles_and_unknown_groups_rejected(
    fallbacks: dict[str, list[str]], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Router(deps({"a": 1, "b": 1}), fallbacks=fallbacks)
    assert any(p.startswith(field) for p in info.value.problems)


def test_policy_validation() -> None:
    with pytest.raises(ConfigError, match="unknown failure kind 'nope'"):
        RetryPolicy(attempts_by_kind={"nope": 1})
    with pytest.raises(ConfigError, match="unknown failure kind 'caller'"):
        HealthPolicy(allowed_fails_by_kind={"caller": 1})
    with pytest.raises(ConfigError, match="delay"):
        HedgePolicy()
    with pytest.raises(ConfigError, match=r"hedging\.zzz"):
        Router(deps({"a": 1}), hedging={"zzz": HedgePolicy(delay=1)})


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


async def test_hedge_wins_and_the_loser_is_settled() -> None:
    clock = FakeClock()
    r = router(clock, {"a": 2}, hedging={"a": HedgePolicy(delay=0.5)})
    gate = asyncio.Event()
    cancelled: list[str] = []

    async def fn(d: Deployment) -> str:
        assert d.id is not None
        if not gate.is_set():
            gate.set()  # the first attempt hangs until cancelled
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(d.id)
                raise
        return d.id

    task = asyncio.ensure_future(r.call("a", fn))
    for _ in range(100):
        await asyncio.sleep(0)
    assert r.statistics().in_flight == 1
    clock.advance(0.5)
    winner = await task
    assert len(cancelled) == 1
    assert cancelled[0] != winner
    assert r.statistics().in_flight == 0
    assert r.parts.pipeline.hedges_sent == 1


def test_hedger_percentile() -> None:
    h = Hedger(HedgePolicy(delay=1.0, percentile=90, min_samples=10))
    assert h.delay() == 1.0
    for i in range(1, 161):  # recomputed every 16 samples: 160 is a recompute point
        h.record(i / 160)
    assert h.delay() == pytest.approx(0.90)


def first(candidates: Any, request: Any) -> Any:
    """Always the first eligible deployment, so a test knows which one is tried."""
    return candidates[0]


NO_BUDGET = RetryPolicy(budget_ratio=0.0, budget_floor=0, budget_window=100)
"""A retry budget that pays for nothing: only free retries are sent."""


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


async def test_a_retry_prefers_a_healthy_untried_deployment() -> None:
    # a0 and a1 fail, a2 works. The first call learns that a1 fails (its free retry
    # goes there, as nothing is known against a1 yet); from then on a retry skips a1
    # for the healthy a2, though the strategy lists a1 first.
    clock = FakeClock()
    r = router(clock, {"a": 3}, retry=RetryPolicy(budget_floor=1000), strategy=first)
    fn = failing({"a0", "a1"})
    assert await r.call("a", fn) == "a2"
    assert fn.calls == ["a0", "a1", "a2"]
    fn.calls.clear()
    assert await r.call("a", fn) == "a2"
    assert fn.calls == ["a0", "a2"]


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
