"""Resilience against real faults: three FakeUpstreams on loopback, one of them faulty.

The router runs on a FakeClock, so cooldowns and Retry-After are exact and nothing
waits for them in real time; the upstreams log on the same clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from interlock import (
    HealthPolicy,
    HedgePolicy,
    InterlockError,
    InternalServerError,
    RetryPolicy,
    Router,
    StreamInterruptedError,
)
from interlock.testing import FakeClock, FakeUpstream, Fault

MESSAGES = [{"role": "user", "content": "hello"}]
COOLDOWN = 10.0


@dataclass
class Pool:
    clock: FakeClock
    ups: list[FakeUpstream]
    router: Router

    @property
    def bad(self) -> FakeUpstream:
        return self.ups[0]

    def state(self, i: int) -> Any:
        return self.router.parts.states[i]


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


def make_router(
    clock: FakeClock, ups: list[FakeUpstream], *, timeout: float = 5.0, **kw: Any
) -> Router:
    health = kw.pop(
        "health",
        HealthPolicy(
            allowed_fails=2,
            cooldown=COOLDOWN,
            failure_rate_threshold=None,
            half_open_successes=2,
        ),
    )
    deployments = [
        {
            "group": "g",
            "model": "m",
            "id": f"d{i}",
            "api_base": up.url,
            "timeout": timeout,
        }
        for i, up in enumerate(ups)
    ]
    return Router(deployments, clock=clock, seed=7, health=health, **kw)


@pytest.fixture
async def pool(clock: FakeClock) -> AsyncIterator[Pool]:
    ups = [FakeUpstream(name=f"u{i}", clock=clock.now) for i in range(3)]
    for up in ups:
        await up.start()
    router = make_router(clock, ups, timeout=0.3)
    try:
        yield Pool(clock, ups, router)
    finally:
        await router.aclose()
        for up in ups:
            await up.stop()


async def chat(router: Router) -> str:
    r = await router.acompletion(model="g", messages=MESSAGES)
    return r.deployment_id


async def stream(router: Router) -> str:
    s = await router.acompletion(model="g", messages=MESSAGES, stream=True)
    async for _ in s:
        pass
    return s.deployment_id


FAULTS: dict[str, Fault | None] = {
    "429+retry-after": Fault.rate_limit(COOLDOWN * 2),
    "500": Fault.status(500),
    "503": Fault.status(503),
    "hang-past-timeout": Fault.hang(),
    "refused": None,  # the upstream is stopped
    "dropped": Fault.drop(),
    "malformed-json": Fault.malformed(),
    "stream-cut-before-first-chunk": Fault.cut_stream(0),
}


@pytest.mark.parametrize("name", list(FAULTS))
async def test_fault_matrix_one_bad_of_three(pool: Pool, name: str) -> None:
    fault = FAULTS[name]
    send: Callable[[Router], Awaitable[str]] = stream if "stream" in name else chat
    if fault is None:
        await pool.bad.stop()
    else:
        pool.bad.always(fault)
    served = [await send(pool.router) for _ in range(30)]  # every request succeeds
    assert "d0" not in served
    bad = pool.state(0)
    assert bad.ejections >= 1
    assert pool.router.statistics().by_id("d0").state == "cooling"
    sent_while_faulty = pool.bad.request_count
    assert sent_while_faulty <= 2  # ejected after its allowance (or at once for a 429)

    # The fault stops; once the cooldown has passed the deployment is half-open and
    # comes back through trial requests. A 429 is a rate signal, not ill health: when
    # its Retry-After is over the deployment is back in rotation at once, no trials.
    if fault is None:
        await pool.bad.start()
    else:
        pool.bad.clear()
    pool.clock.advance(COOLDOWN * 2 + 0.001)
    rate_limited = name.startswith("429")
    expected = "healthy" if rate_limited else "half_open"
    assert pool.router.statistics().by_id("d0").state == expected
    for _ in range(300):
        await send(pool.router)
        if pool.router.statistics().by_id("d0").state == "healthy":
            break
    assert pool.router.statistics().by_id("d0").state == "healthy"
    if not rate_limited:
        assert pool.bad.request_count >= sent_while_faulty + 2  # the k=2 trials
    assert pool.router.statistics().in_flight == 0


async def test_stream_cut_after_first_chunk_is_typed_and_counted(pool: Pool) -> None:
    pool.bad.always(Fault.cut_stream(2))
    cut = 0
    ok = 0
    cut_at: list[str | None] = []
    for _ in range(30):
        try:
            await stream(pool.router)
            ok += 1
        except StreamInterruptedError as exc:
            cut_at.append(exc.deployment_id)
            cut += 1
    assert cut == 2  # the allowance, then d0 is ejected
    assert cut_at == ["d0", "d0"]
    assert ok == 28
    assert pool.router.statistics().by_id("d0").state == "cooling"
    pool.bad.clear()
    pool.clock.advance(COOLDOWN + 0.001)
    for _ in range(300):
        await stream(pool.router)
        if pool.router.statistics().by_id("d0").state == "healthy":
            break
    assert pool.router.statistics().by_id("d0").state == "healthy"
    assert pool.router.statistics().in_flight == 0


@pytest.mark.parametrize("header", ["seconds", "ms", "http-date"])
async def test_no_request_reaches_a_429_deployment_before_retry_after(
    pool: Pool, header: Any
) -> None:
    retry_after = 30.0
    pool.bad.push(Fault.rate_limit(retry_after, header=header))
    for _ in range(20):
        await chat(pool.router)
    for _step in range(8):  # walk through the Retry-After in fake time
        pool.clock.advance(retry_after / 4)
        for _ in range(10):
            await chat(pool.router)
    log = pool.bad.received
    limited = [e for e in log if e.status == 429]
    assert len(limited) == 1
    after = [e for e in log if e.seq > limited[0].seq]
    assert after, "the deployment came back after its Retry-After"
    # HTTP-dates are whole seconds: the header may say up to 1 s more than asked.
    assert all(e.at >= limited[0].at + retry_after for e in after)


async def test_retries_bounded_by_budget_when_everything_fails(clock: FakeClock) -> None:
    ups = [FakeUpstream(name=f"u{i}", clock=clock.now) for i in range(3)]
    for up in ups:
        await up.start()
        up.always(Fault.status(500))
    ratio, floor, n = 0.2, 5, 100
    router = make_router(
        clock,
        ups,
        retry=RetryPolicy(
            max_attempts=3, budget_ratio=ratio, budget_floor=floor, budget_window=600
        ),
        health=HealthPolicy(allowed_fails=1000, failure_rate_threshold=None),
    )
    try:
        failures = 0
        for _ in range(n):
            try:
                await chat(router)
            except InternalServerError:
                failures += 1
        assert failures == n
        received = sum(up.request_count for up in ups)
        assert n < received <= (1 + ratio) * n + floor
        assert router.statistics().in_flight == 0
    finally:
        await router.aclose()
        for up in ups:
            await up.stop()


async def test_final_error_lists_its_attempts(pool: Pool) -> None:
    for up in pool.ups:
        up.always(Fault.status(500, "boom"))
    with pytest.raises(InternalServerError) as info:
        await chat(pool.router)
    attempts = info.value.attempts
    assert sorted(a.deployment_id for a in attempts) == ["d0", "d1", "d2"]
    assert all(a.group == "g" and "InternalServerError" in a.error for a in attempts)
    assert all(a.duration >= 0 for a in attempts)


@pytest.mark.parametrize("panic_threshold", [0.5, 0.0])
async def test_panic_mode_routes_across_the_whole_pool(
    clock: FakeClock, panic_threshold: float
) -> None:
    ups = [FakeUpstream(name=f"u{i}", clock=clock.now) for i in range(3)]
    for up in ups:
        await up.start()
    health = HealthPolicy(
        allowed_fails=1,
        cooldown=COOLDOWN,
        failure_rate_threshold=None,
        max_ejected_share=1.0,
        panic_threshold=panic_threshold,
    )
    router = make_router(clock, ups, health=health, retry=RetryPolicy(budget_floor=1000))
    try:
        ups[0].always(Fault.status(500))
        ups[1].always(Fault.status(500))
        for _ in range(50):
            if router.parts.health.pools["g"].unhealthy == 2:
                break
            await chat(router)
        stats = router.statistics()
        assert [stats.by_id(f"d{i}").state for i in range(3)] == ["cooling", "cooling", "healthy"]
        assert router.parts.health.pools["g"].panic is (panic_threshold > 0)  # 1 of 3 healthy
        # The ejected two are fine again (still cooling); the last one breaks. Without
        # panic mode every request fails; with it, the pool is used as a whole.
        ups[0].clear()
        ups[1].clear()
        ups[2].always(Fault.status(500))
        outcomes: list[str] = []
        for _ in range(20):
            try:
                outcomes.append(await chat(router))
            except InterlockError:
                outcomes.append("failed")
        if panic_threshold:
            assert set(outcomes) <= {"d0", "d1"}
        else:
            assert set(outcomes) == {"failed"}
    finally:
        await router.aclose()
        for up in ups:
            await up.stop()


async def test_hedging_beats_a_slow_deployment_and_settles_the_loser() -> None:
    ups = [FakeUpstream(name=f"u{i}") for i in range(3)]
    for up in ups:
        await up.start()
    ups[0].always(Fault.delay(30.0))  # without hedging, a third of calls take 30 s
    router = Router(
        [
            {"group": "g", "model": "m", "id": f"d{i}", "api_base": up.url, "timeout": 60}
            for i, up in enumerate(ups)
        ],
        seed=3,
        hedging={"g": HedgePolicy(delay=0.05)},
        retry=RetryPolicy(budget_floor=1000),
    )
    try:
        served = await asyncio.gather(*(chat(router) for _ in range(30)))
        assert "d0" not in served
        assert ups[0].request_count >= 1
        assert router.parts.pipeline.hedges_sent >= ups[0].request_count
        assert router.statistics().in_flight == 0
        # The slow deployment saw every hedged request go away (cancelled, no status).
        await asyncio.sleep(0)
        for _ in range(100):
            if ups[0].in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert all(e.status is None for e in ups[0].received)
    finally:
        await router.aclose()
        for up in ups:
            await up.stop()


async def test_caller_cancellation_settles_every_reservation() -> None:
    ups = [FakeUpstream(name=f"u{i}") for i in range(3)]
    for up in ups:
        await up.start()
        up.always(Fault.hang())
    router = Router(
        [
            {"group": "g", "model": "m", "id": f"d{i}", "api_base": up.url, "timeout": 60}
            for i, up in enumerate(ups)
        ],
        seed=5,
        hedging={"g": HedgePolicy(delay=0.01, max_hedges=2)},
        retry=RetryPolicy(budget_floor=1000),
    )
    try:
        tasks = [asyncio.create_task(chat(router)) for _ in range(10)]
        for _ in range(500):  # until every call has its first attempt and hedges out
            if sum(up.in_flight for up in ups) >= 30:
                break
            await asyncio.sleep(0.01)
        assert router.statistics().in_flight == 30
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert router.statistics().in_flight == 0
        assert all(s.circuit.trials == 0 for s in router.parts.states)
    finally:
        await router.aclose()
        for up in ups:
            await up.stop()


async def test_active_probe_restores_an_ejected_deployment(clock: FakeClock) -> None:
    ups = [FakeUpstream(name=f"u{i}", clock=clock.now) for i in range(3)]
    for up in ups:
        await up.start()
    health = HealthPolicy(
        allowed_fails=1,
        cooldown=1000.0,
        cooldown_max=1000.0,
        failure_rate_threshold=None,
        half_open_successes=1,
        probe_interval=1.0,
    )
    router = make_router(clock, ups, health=health)
    try:
        async with router:
            ups[0].always(Fault.status(500))
            for _ in range(10):
                await chat(router)
            assert router.statistics().by_id("d0").state == "cooling"
            prober = router.parts.prober
            assert prober.probe_once() == 1  # fails: still ejected
            for _ in range(200):
                if not router.parts.states[0].circuit.probing:
                    break
                await asyncio.sleep(0.01)
            assert router.statistics().by_id("d0").state == "cooling"
            ups[0].clear()
            assert prober.probe_once() == 1
            for _ in range(200):
                if not router.parts.states[0].circuit.probing:
                    break
                await asyncio.sleep(0.01)
            assert router.statistics().by_id("d0").state == "healthy"
            assert router.statistics().in_flight == 0
    finally:
        for up in ups:
            await up.stop()
