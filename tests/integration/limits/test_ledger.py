"""The ledger through a Router against real FakeUpstreams on loopback, on a FakeClock."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from interlock import (
    Budget,
    BudgetExceededError,
    ChatCompletion,
    ContextWindowExceededError,
    Deployment,
    RateLimitError,
    Router,
)
from interlock.testing import FakeClock, FakeUpstream, Fault

MSG = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
async def ups(clock: FakeClock) -> AsyncIterator[list[FakeUpstream]]:
    a = FakeUpstream(name="a", clock=clock.now)
    b = FakeUpstream(name="b", clock=clock.now)
    await a.start()
    await b.start()
    yield [a, b]
    await a.stop()
    await b.stop()


def max_in_window(times: Sequence[float], span: float = 60.0) -> int:
    """The most arrivals in any half-open interval [t, t + span)."""
    ts = sorted(times)
    return max((bisect.bisect_left(ts, t + span) - i for i, t in enumerate(ts)), default=0)


async def until(cond: Callable[[], bool], limit: int = 100_000) -> None:
    """Yield to the loop until `cond()` has held for 20 loop turns in a row (woken tasks
    get to run before the test moves the clock again); a bounded number of turns."""
    streak = 0
    for i in range(limit):
        streak = streak + 1 if cond() else 0
        if streak >= 20:
            return
        await asyncio.sleep(0 if i % 100 else 0.001)
    raise AssertionError("condition never held")


async def test_500_concurrent_requests_never_exceed_rpm_in_any_window(
    clock: FakeClock, ups: list[FakeUpstream]
) -> None:
    deps = [
        Deployment(group="g", model="m", id=u.name, api_base=u.url, rpm=100, tpm=10_000_000)
        for u in ups
    ]
    router = Router(deps, clock=clock, queue={"max_wait": 600}, timeout=3600, seed=1)
    n = 500
    tasks = [asyncio.create_task(router.acompletion("g", MSG)) for _ in range(n)]
    queue = router.parts.queues["g"]

    def quiet() -> bool:
        done = sum(t.done() for t in tasks)
        return (
            done + queue.waiting == n
            and router.statistics().in_flight == 0
            and all(u.in_flight == 0 for u in ups)
        )

    for _ in range(400):  # fake seconds; 500 requests need about three 61 s windows
        await until(quiet)
        if all(t.done() for t in tasks):
            break
        clock.advance(1.0)
    results = await asyncio.gather(*tasks)
    assert len(results) == n
    assert all(isinstance(r, ChatCompletion) for r in results)
    for u in ups:
        times = [r.at for r in u.received]
        assert max_in_window(times) <= 100, u.name  # tolerance: none
    assert sum(u.request_count for u in ups) == n
    # Reconciliation: what the router recorded is exactly what the upstreams reported.
    stats = router.statistics()
    assert sum(d.input_tokens + d.output_tokens for d in stats.deployments) == sum(
        r.usage.total_tokens for r in results if r.usage is not None
    )
    assert stats.in_flight == 0
    assert queue.waiting == 0
    await router.aclose()


async def test_reconciliation_leaves_exact_window_totals(
    clock: FakeClock, ups: list[FakeUpstream]
) -> None:
    u = ups[0]
    router = Router(
        [Deployment(group="g", model="m", api_base=u.url, tpm=1_000_000, rpm=1000)],
        clock=clock,
        expected_output_tokens=500,
        retry={"max_attempts": 1},
    )
    results = await asyncio.gather(
        *(router.acompletion("g", [{"role": "user", "content": "x" * (i * 7)}]) for i in range(50))
    )
    u.push(Fault.status(500))
    with pytest.raises(Exception, match="500"):
        await router.acompletion("g", MSG)
    stats = router.statistics().deployments[0]
    actual = sum(r.usage.total_tokens for r in results if r.usage is not None)
    assert stats.tpm_used == actual  # estimates replaced by usage; the failure gave back all
    assert stats.rpm_used == 51  # the failed request still counts as a request
    assert stats.in_flight == 0
    await router.aclose()


async def test_a_queued_request_is_served_when_capacity_frees(
    clock: FakeClock, ups: list[FakeUpstream]
) -> None:
    u = ups[0]
    router = Router(
        [Deployment(group="g", model="m", api_base=u.url, rpm=1)],
        clock=clock,
        queue={"max_wait": 120},
    )
    await router.acompletion("g", MSG)
    second = asyncio.create_task(router.acompletion("g", MSG))
    queue = router.parts.queues["g"]
    await until(lambda: queue.waiting == 1 and clock.sleepers >= 2)
    clock.advance(30)
    await until(lambda: clock.sleepers >= 2)
    assert not second.done()
    assert u.request_count == 1
    clock.advance(31)  # the first request's bucket leaves the window at +61 s
    result = await second
    assert result.deployment_id == "g-0"
    assert u.request_count == 2
    assert queue.waiting == 0
    await router.aclose()


async def test_a_queued_request_times_out_cleanly(
    clock: FakeClock, ups: list[FakeUpstream]
) -> None:
    u = ups[0]
    router = Router(
        [Deployment(group="g", model="m", api_base=u.url, rpm=1)],
        clock=clock,
        queue={"max_wait": 5},
    )
    await router.acompletion("g", MSG)
    waiting = asyncio.create_task(router.acompletion("g", MSG))
    queue = router.parts.queues["g"]
    await until(lambda: queue.waiting == 1 and clock.sleepers >= 2)
    clock.advance(5)
    with pytest.raises(RateLimitError) as info:
        await waiting
    assert info.value.retry_after == pytest.approx(56.0)
    assert "rpm limit" in str(info.value)
    assert queue.waiting == 0
    assert u.request_count == 1
    assert router.statistics().in_flight == 0
    await router.aclose()


async def test_concurrency_freed_by_a_finished_call_wakes_the_line(
    clock: FakeClock, ups: list[FakeUpstream]
) -> None:
    u = ups[0]
    router = Router(
        [Deployment(group="g", model="m", api_base=u.url, max_concurrency=1)],
        clock=clock,
        queue={"max_wait": 60},
    )
    u.push(Fault.delay(0.05))
    first = asyncio.create_task(router.acompletion("g", MSG))
    await until(lambda: u.in_flight == 1)
    later = [asyncio.create_task(router.acompletion("g", MSG)) for _ in range(5)]
    results = await asyncio.gather(first, *later)  # no clock advance needed
    assert len(results) == 6
    assert u.max_in_flight == 1
    await router.aclose()


async def test_without_a_queue_the_caller_learns_when_capacity_returns(
    clock: FakeClock, ups: list[FakeUpstream]
) -> None:
    router = Router(
        [Deployment(group="g", model="m", api_base=u.url, rpm=2) for u in ups], clock=clock
    )
    for _ in range(4):
        await router.acompletion("g", MSG)
    clock.advance(10)
    with pytest.raises(RateLimitError) as info:
        await router.acompletion("g", MSG)
    assert info.value.retry_after == pytest.approx(51.0)
    assert info.value.status_code == 429
    assert sum(u.request_count for u in ups) == 4
    await router.aclose()


async def test_budget_stops_traffic_at_the_limit_and_resumes_next_period(
    clock: FakeClock, ups: list[FakeUpstream]
) -> None:
    u = ups[0]
    # FakeUpstream usage for MSG: 3 prompt tokens + 6 completion tokens = $0.012 a call.
    router = Router(
        [
            Deployment(
                group="g",
                model="m",
                api_base=u.url,
                input_cost_per_token=0.001,
                output_cost_per_token=0.0015,
            )
        ],
        clock=clock,
        budgets=[Budget(scope="group", name="g", limit_usd=0.05, period="1h")],
    )
    served = 0
    for _ in range(5):
        await router.acompletion("g", MSG)
        served += 1
    with pytest.raises(BudgetExceededError) as info:
        await router.acompletion("g", MSG)
    assert served == 5  # 4 calls = $0.048 < $0.05; the 5th crosses it; then none
    assert "group 'g' $0.05/1h" in str(info.value)
    assert info.value.retry_after == pytest.approx(3600.0)
    assert u.request_count == 5
    spend = router.spend()
    assert spend.by_group["g"] == pytest.approx(0.06)
    assert spend.budgets[0].exhausted
    assert router.statistics().deployments[0].spend == pytest.approx(0.06)
    clock.advance(3600)
    await router.acompletion("g", MSG)
    assert u.request_count == 6
    assert router.spend().budgets[0].spent_usd == pytest.approx(0.012)
    await router.aclose()


async def test_context_window_pre_check(clock: FakeClock, ups: list[FakeUpstream]) -> None:
    small, big = ups
    router = Router(
        [
            Deployment(group="g", model="m", id="small", api_base=small.url, context_window=100),
            Deployment(group="g", model="m", id="big", api_base=big.url, context_window=5000),
        ],
        clock=clock,
    )
    long = [{"role": "user", "content": "x" * 2000}]  # ~504 tokens
    for _ in range(10):
        r = await router.acompletion("g", long, max_tokens=100)
        assert r.deployment_id == "big"
    with pytest.raises(ContextWindowExceededError, match="context window"):
        await router.acompletion("g", long, max_tokens=4600)
    assert small.request_count == 0
    assert big.request_count == 10
    await router.aclose()
