"""Runtime changes (interlock/router/runtime.py): adding, updating (what survives) and
removing deployments, draining, and a call that is mid-retry across a change. The diff
itself and refused changes are in test_diff.py. In memory, on a FakeClock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from interlock import (
    ConfigChange,
    ConfigError,
    HealthPolicy,
    InternalServerError,
    NoDeploymentAvailableError,
    PrometheusMetrics,
    RateLimitError,
    RetryPolicy,
)
from interlock.records.state import DeploymentState
from interlock.router.calls import complete_call
from interlock.testing import FakeClock
from interlock.types import Request
from tests.unit.scripted_transport import (
    MESSAGES,
    ScriptedTransport,
    Step,
    bounded,
    config_of,
    dep,
    fail,
    first_candidate,
    make_router,
    two,
    until,
)

# --- adding -----------------------------------------------------------------------


async def test_add_deployment_to_a_group_takes_requests_from_the_next_pick() -> None:
    clock = FakeClock()
    t, router = two(clock)
    t.always("a", fail(InternalServerError))
    t.always("b", fail(InternalServerError))
    added = await router.add_deployment(dep("c"))
    assert added.id == "c"
    assert [d.id for d in router.deployments] == ["a", "b", "c"]
    r = await bounded(router.acompletion("g", MESSAGES))
    assert r.deployment_id == "c"


async def test_added_deployment_without_id_is_named_like_at_construction() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a").model_copy(update={"id": None})], clock)
    assert [d.id for d in router.deployments] == ["g-0"]
    added = await router.add_deployment({**dep("x").model_dump(mode="json"), "id": None})
    assert added.id == "g-1"


async def test_add_deployment_in_a_new_group_makes_the_group() -> None:
    clock = FakeClock()
    _t, router = two(clock)
    await router.add_deployment(dep("n", group="new"))
    assert router.groups == ("g", "new")
    r = await bounded(router.acompletion("new", MESSAGES))
    assert r.deployment_id == "n"
    # A new group shares a default strategy given as an instance, as at construction.
    assert router.parts.pools["new"].strategy is router.parts.pools["g"].strategy


# --- updating keeps state -----------------------------------------------------------


async def test_update_keeps_the_state_and_its_counts() -> None:
    clock = FakeClock()
    t, router = two(clock)
    t.push("a", fail(InternalServerError))
    await bounded(router.acompletion("g", MESSAGES))  # a fails, b serves
    await bounded(router.acompletion("g", MESSAGES))  # a serves
    before = {s.id: s for s in router.parts.states}
    a = before["a"]
    snapshot = (a.requests, a.failures, a.successes, a.latency_ewma, a.spend, a.input_tokens)
    updated = await router.update_deployment(dep("a", weight=5, input_cost_per_token=1e-6))
    assert updated.weight == 5
    after = {s.id: s for s in router.parts.states}
    assert after["a"] is a
    assert after["b"] is before["b"]
    assert (a.requests, a.failures, a.successes, a.latency_ewma, a.spend, a.input_tokens) == (
        snapshot
    )
    assert a.deployment.input_cost_per_token == 1e-6
    assert a.input_cost == 1e-6  # a price change applies to the next settlement


async def test_a_lowered_limit_applies_from_the_next_pick() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a", rpm=100), dep("b")], clock, strategy=first_candidate)
    window = router.parts.states[0].rate_window
    for _ in range(3):
        assert (await bounded(router.acompletion("g", MESSAGES))).deployment_id == "a"
    await router.update_deployment(dep("a", rpm=3))
    # The three requests a served this minute count against its new limit at once.
    assert router.parts.states[0].rate_window is window
    assert (await bounded(router.acompletion("g", MESSAGES))).deployment_id == "b"
    await router.update_deployment(dep("a", rpm=4))
    assert (await bounded(router.acompletion("g", MESSAGES))).deployment_id == "a"


async def test_a_raised_concurrency_cap_applies_at_once() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t, [dep("a", max_concurrency=1)], clock, strategy=first_candidate, queue={"max_wait": 0}
    )
    gate = asyncio.Event()
    t.push("a", Step(gate=gate))
    first = asyncio.ensure_future(router.acompletion("g", MESSAGES))
    await until(lambda: router.parts.states[0].in_flight == 1)
    with pytest.raises(RateLimitError, match="concurrency cap"):
        await bounded(router.acompletion("g", MESSAGES))
    await router.update_deployment(dep("a", max_concurrency=2))
    r = await bounded(router.acompletion("g", MESSAGES))
    assert r.deployment_id == "a"
    gate.set()
    await bounded(first)
    assert router.parts.states[0].in_flight == 0


async def test_a_cooling_deployment_stays_cooling_after_an_update() -> None:
    clock = FakeClock()
    t, router = two(clock)
    t.push("a", fail(RateLimitError, retry_after=30))
    await bounded(router.acompletion("g", MESSAGES))
    a = router.parts.states[0]
    until_before = a.cooldown_until
    assert until_before > clock.now()
    await router.update_deployment(dep("a", weight=3))
    assert a.cooldown_until == until_before
    assert (await bounded(router.acompletion("g", MESSAGES))).deployment_id == "b"


async def test_update_moving_a_deployment_to_another_group_recounts_pool_health() -> None:
    clock = FakeClock()
    t, router = two(clock, health=HealthPolicy(allowed_fails=1, cooldown=60))
    t.push("a", fail(InternalServerError))
    await bounded(router.acompletion("g", MESSAGES))
    assert router.parts.health.pools["g"].unhealthy == 1
    await router.update_deployment(dep("a", group="h"))
    assert router.parts.health.pools["g"].unhealthy == 0
    assert router.parts.health.pools["h"].unhealthy == 1
    assert router.parts.states[0].circuit.pool is router.parts.health.pools["h"]


# --- removing ---------------------------------------------------------------------


async def test_remove_waits_for_requests_in_flight_then_takes_no_new_ones() -> None:
    clock = FakeClock()
    t, router = two(clock)
    gate = asyncio.Event()
    t.push("a", Step(gate=gate))
    running = asyncio.ensure_future(router.acompletion("g", MESSAGES))
    await until(lambda: router.parts.states[0].in_flight == 1)
    a = router.parts.states[0]
    removal = asyncio.ensure_future(router.remove_deployment("a"))
    await until(lambda: [d.id for d in router.deployments] == ["b"])
    assert not removal.done()
    # New requests go elsewhere while a drains.
    assert (await bounded(router.acompletion("g", MESSAGES))).deployment_id == "b"
    gate.set()
    r = await bounded(running)
    assert r.deployment_id == "a"  # finished and settled normally
    await bounded(removal)
    assert a.in_flight == 0
    assert a.successes == 1
    assert t.served("a") == 1
    assert [s.id for s in router.statistics().deployments] == ["b"]


async def test_removed_deployments_metric_series_are_released_after_draining() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    metrics = PrometheusMetrics()
    router = make_router(t, [dep("a"), dep("b")], clock, metrics=metrics)
    await bounded(router.acompletion("g", MESSAGES))
    await router.add_deployment(dep("c", group="h"))
    assert {s.id for s in metrics.series} == {"a", "b", "c"}
    await router.remove_deployment("a")
    await router.remove_deployment("c")
    assert {s.id for s in metrics.series} == {"b"}
    text = "\n".join(str(m) for m in metrics.collect())
    assert "'a'" not in text
    assert "group': 'h'" not in text


async def test_removing_a_group_a_running_call_falls_back_to_ends_it_cleanly() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t,
        [dep("a"), dep("z", group="backup")],
        clock,
        fallbacks={"g": ["backup"]},
        retry=RetryPolicy(max_attempts=1),
    )
    gate = asyncio.Event()
    t.push("a", Step(gate=gate, error=InternalServerError))
    running = asyncio.ensure_future(router.acompletion("g", MESSAGES))
    await until(lambda: router.parts.states[0].in_flight == 1)
    await router.reconfigure(
        config_of(router, deployments=[dep("a").model_dump(mode="json")], fallbacks={})
    )
    gate.set()
    # The call's chain named "backup", which is gone: it ends with a's error, not a
    # KeyError, and z got nothing.
    with pytest.raises(InternalServerError):
        await bounded(running)
    assert t.served("z") == 0
    assert router.groups == ("g",)


async def test_a_retry_after_a_change_picks_from_the_pool_as_it_is_now() -> None:
    clock = FakeClock()
    t, router = two(clock)
    gate = asyncio.Event()
    t.push("a", Step(gate=gate, error=InternalServerError))
    running = asyncio.ensure_future(router.acompletion("g", MESSAGES))
    await until(lambda: router.parts.states[0].in_flight == 1)
    change = asyncio.ensure_future(
        router.reconfigure(
            config_of(
                router,
                deployments=[dep("a").model_dump(mode="json"), dep("c").model_dump(mode="json")],
            )
        )
    )
    await until(lambda: [d.id for d in router.deployments] == ["a", "c"])
    gate.set()
    r = await bounded(running)
    assert r.deployment_id == "c"  # b was removed before the retry: never sent to
    assert t.served("b") == 0
    got = await bounded(change)
    assert got == ConfigChange(added=("c",), removed=("b",), unchanged=("a",))


async def test_update_and_remove_name_a_deployment_that_exists() -> None:
    clock = FakeClock()
    _t, router = two(clock)
    with pytest.raises(ConfigError, match="no deployment has id 'x'"):
        await router.update_deployment(dep("x"))
    with pytest.raises(ConfigError, match="no deployment has id 'x'"):
        await router.remove_deployment("x")
    with pytest.raises(ConfigError, match="needs the id"):
        await router.update_deployment({**dep("a").model_dump(mode="json"), "id": None})
    with pytest.raises(TypeError, match="must be a Deployment or a mapping"):
        await router.add_deployment("a")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["p2c-ewma", "latency"])
async def test_a_removed_deployments_strategy_estimates_are_released(name: str) -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a"), dep("b")], clock, strategy=name)
    t.always("a", Step(takes=2.0))
    t.always("b", Step(takes=0.1))
    for _ in range(20):
        await bounded(router.acompletion("g", MESSAGES))
    a, b = router.parts.states
    strategy: Any = router.parts.pools["g"].strategy

    def known(s: Any) -> bool:
        if name == "latency":
            return strategy.estimate(s) is not None
        return bool(strategy.latency(s) != strategy.latency(dep_state))

    dep_state = type(a)(dep("never", group="g"), a.transport)  # a state it never saw
    assert t.served("a") > 0
    assert known(a)
    await router.remove_deployment("a")
    assert not known(a)
    assert known(b)  # the survivor keeps what was learnt about it


async def test_each_applied_change_is_logged_without_keys(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    _, router = two(clock)
    secret = "sk-runtime-secret-1234567890"
    with caplog.at_level("INFO", logger="interlock.router"):
        await router.add_deployment(dep("c", group="h", api_key=secret))
        await router.remove_deployment("a")
    lines = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "config_change"]
    assert lines == [
        "interlock: configuration changed: added ['c'], updated [], removed []; "
        "groups added ['h'], removed []",
        "interlock: configuration changed: added [], updated [], removed ['a']; "
        "groups added [], removed []",
    ]
    assert all(secret not in r.getMessage() for r in caplog.records)


async def test_a_request_waiting_for_capacity_is_served_by_an_added_deployment() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t, [dep("a", max_concurrency=1)], clock, queue={"max_wait": 30, "max_size": 10}
    )
    queue = router.parts.queues["g"]
    gate = asyncio.Event()
    t.push("a", Step(gate=gate))
    first = asyncio.ensure_future(router.acompletion("g", MESSAGES))
    await until(lambda: router.parts.states[0].in_flight == 1)
    waiting = asyncio.ensure_future(router.acompletion("g", MESSAGES))
    await until(lambda: queue.waiting == 1)
    await router.add_deployment(dep("b"))
    assert router.parts.queues["g"] is queue  # the line and whoever is in it stay
    r = await bounded(waiting)
    assert r.deployment_id == "b"
    gate.set()
    assert (await bounded(first)).deployment_id == "a"


async def test_a_call_that_starts_on_a_group_removed_meanwhile_fails_cleanly() -> None:
    """With the response cache on, a call resolves its group, awaits the cache, then
    starts the pipeline: the group may be gone by then."""
    clock = FakeClock()
    t, router = two(clock)
    await router.add_deployment(dep("c", group="h"))
    await router.remove_deployment("c")
    request = Request("call", "h", requested="h")

    async def send(state: DeploymentState, req: Request, timeout: float) -> str:
        return state.id  # pragma: no cover - nothing is eligible

    with pytest.raises(NoDeploymentAvailableError):
        await bounded(router.parts.pipeline.run(request, 5.0, send, complete_call))
    assert t.served("c") == 0


async def test_hedgers_health_and_probing_follow_their_settings() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t, [dep("a"), dep("b")], clock, hedging={"g": {"delay": 1.0}}, strategy=first_candidate
    )
    hedger = router.parts.pipeline.hedger("g")
    tracker = router.parts.health
    assert hedger is not None
    assert not router.parts.prober.running
    # Unchanged hedging and health: the same hedger (its latencies) and tracker.
    await router.add_deployment(dep("c"))
    assert router.parts.pipeline.hedger("g") is hedger
    assert router.parts.health is tracker
    assert router.parts.health.pools["g"].size == 3
    # New settings: a new hedger and tracker; probing starts, and stops again.
    await router.reconfigure(
        config_of(
            router,
            hedging={"g": {"delay": 2.0}},
            health={"probe_interval": 5.0, "max_ejected_share": 1.0},
        )
    )
    new_hedger = router.parts.pipeline.hedger("g")
    assert new_hedger is not None
    assert new_hedger is not hedger
    assert new_hedger.policy.delay == 2.0
    assert router.parts.health is not tracker
    assert router.parts.health.pools["g"].max_ejected == 3
    assert router.parts.prober.running
    await router.reconfigure(config_of(router, hedging={}, health={}))
    assert router.parts.pipeline.hedger("g") is None
    assert not router.parts.prober.running
    await router.aclose()
