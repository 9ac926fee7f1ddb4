"""Retries, the deadline, fallback chains and hedging through `Router.call`, driven on a
FakeClock (no sockets: the routed function is local). Backoff, the retry budget and what
a failed attempt leads to are in test_pipeline_branches.py."""

from __future__ import annotations

import asyncio

import pytest

from interlock import (
    ConfigError,
    Deployment,
    HealthPolicy,
    HedgePolicy,
    InternalServerError,
    RetryPolicy,
    Router,
)
from interlock.errors import DeadlineExceededError
from interlock.router.hedge import Hedger
from interlock.testing import FakeClock
from tests.unit.router.local_calls import RecordingClock, deps, drive, failing, first, router


async def test_retries_go_to_untried_deployments_without_sleeping() -> None:
    clock = RecordingClock()
    r = router(clock, {"a": 3}, retry=RetryPolicy(budget_floor=1000))
    fn = failing({"a0", "a1"})
    for _ in range(20):
        assert await r.call("a", fn) == "a2"
    assert clock.sleeps == []
    # Every failed call tried each deployment at most once.
    assert fn.calls.count("a2") == 20


async def test_deadline_spans_every_attempt() -> None:
    clock = FakeClock()
    r = router(clock, {"a": 2, "b": 1}, fallbacks={"a": ["b"]})

    async def slow(d: Deployment) -> str:
        clock.advance(0.6)
        raise InternalServerError("slow boom")

    with pytest.raises(DeadlineExceededError) as info:
        await r.call("a", slow, timeout=1.0)
    assert len(info.value.attempts) == 2


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
