"""A runtime change's plan and its application (interlock/router/diff.py): the diff of a
new config against the router's parts and what it keeps, changes refused as
construction refuses them, which state fields an update copies or keeps, and the
release of removed deployments. In memory, on a FakeClock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from interlock import (
    Budget,
    ConfigChange,
    ConfigError,
    PrometheusMetrics,
    Router,
)
from interlock.records.state import DeploymentState
from interlock.router.diff import KEPT, SETTINGS
from interlock.testing import FakeClock
from tests.unit.scripted_transport import (
    MESSAGES,
    ScriptedTransport,
    Step,
    bounded,
    config_of,
    dep,
    make_router,
    two,
    until,
)


async def test_reconfigure_reports_the_diff_and_keeps_surviving_state(tmp_path: Path) -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a"), dep("b")], clock)
    for _ in range(4):
        await bounded(router.acompletion("g", MESSAGES))
    a = router.parts.states[0]
    strategy = router.parts.pools["g"].strategy
    budget = router.parts.pipeline.retry_budget("g")
    data = config_of(
        router,
        deployments=[
            dep("a", weight=2).model_dump(mode="json"),
            dep("n", group="h").model_dump(mode="json"),
        ],
        aliases={"fast": "h"},
        fallbacks={"g": ["h"]},
        strategies={"h": "least-busy"},
    )
    path = tmp_path / "router.json"
    path.write_text(json.dumps(data))
    change = await router.reconfigure(path)
    assert change == ConfigChange(added=("n",), updated=("a",), removed=("b",), groups_added=("h",))
    assert router.parts.states[0] is a
    assert router.parts.pools["g"].strategy is strategy  # its estimates stay
    assert router.parts.pipeline.retry_budget("g") is budget
    assert type(router.parts.pools["h"].strategy).__name__ == "LeastBusyStrategy"
    assert router.fallback_chain("g") == ("g", "h")
    assert (await bounded(router.acompletion("fast", MESSAGES))).deployment_id == "n"
    assert router.config.aliases == {"fast": "h"}


async def test_changing_a_groups_strategy_gives_it_a_new_instance() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a"), dep("b")], clock, strategy="weighted")
    old = router.parts.pools["g"].strategy
    await router.reconfigure(config_of(router, strategy="least-busy"))
    assert router.parts.pools["g"].strategy is not old
    assert type(router.parts.pools["g"].strategy).__name__ == "LeastBusyStrategy"


async def test_budgets_keep_their_spend_across_a_change() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    priced: dict[str, Any] = {"input_cost_per_token": 1e-3, "output_cost_per_token": 1e-3}
    router = make_router(
        t,
        [dep("a", **priced), dep("b", **priced)],
        clock,
        budgets=[Budget(scope="group", name="g", limit_usd=100.0, period=3600)],
    )
    await bounded(router.acompletion("g", MESSAGES))
    spent = router.spend().budgets[0].spent_usd
    assert spent > 0
    await router.reconfigure(
        config_of(
            router,
            budgets=[{"scope": "group", "name": "g", "limit_usd": 50.0, "period": 3600}],
        )
    )
    status = router.spend().budgets[0]
    assert status.spent_usd == spent
    assert status.limit_usd == 50.0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"fallbacks": {"g": ["nope"]}}, "fallbacks"),
        ({"aliases": {"g": "g"}}, "aliases"),
        ({"strategies": {"g": "no-such-strategy"}}, "strategies.g"),
        ({"strategy": "no-such-strategy"}, "strategy"),
        ({"deployments": []}, "deployments"),
        ({"budgets": [{"scope": "group", "name": "nope", "limit_usd": 1.0}]}, "budgets"),
        ({"timeout": -1}, "timeout"),
    ],
)
async def test_an_invalid_change_is_refused_as_at_construction(
    change: dict[str, Any], field: str
) -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a"), dep("b")], clock)
    await bounded(router.acompletion("g", MESSAGES))
    parts = router.parts
    bad = config_of(router, **change)
    with pytest.raises(ConfigError) as at_construction:
        Router.from_config(bad, transports={"fake": t})
    with pytest.raises(ConfigError) as refused:
        await router.reconfigure(bad)
    assert str(refused.value) == str(at_construction.value)
    assert field in str(refused.value)
    assert router.parts is parts
    assert [s.budgets for s in parts.states] == [(), ()]
    assert (await bounded(router.acompletion("g", MESSAGES))).deployment_id in ("a", "b")


async def test_unknown_provider_and_duplicate_id_are_refused() -> None:
    clock = FakeClock()
    _t, router = two(clock)
    parts = router.parts
    with pytest.raises(ConfigError, match=r"deployments\[2\]\.provider.*unknown provider"):
        await router.add_deployment({**dep("c").model_dump(mode="json"), "provider": "nope"})
    with pytest.raises(ConfigError, match=r"deployments\[2\]\.id.*duplicates"):
        await router.add_deployment(dep("a"))
    assert router.parts is parts


async def test_removing_the_last_deployment_a_fallback_needs_is_refused() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t, [dep("a"), dep("z", group="backup")], clock, fallbacks={"g": ["backup"]}
    )
    with pytest.raises(ConfigError, match="fallbacks"):
        await router.remove_deployment("z")
    assert [d.id for d in router.deployments] == ["a", "z"]


@pytest.mark.parametrize(
    "change",
    [{"cache": {"enabled": True}}, {"shared": {"url": "redis://127.0.0.1:1/0"}}],
)
async def test_settings_that_need_a_new_router_are_refused(change: dict[str, Any]) -> None:
    clock = FakeClock()
    _t, router = two(clock)
    field = next(iter(change))
    with pytest.raises(ConfigError, match=f"{field}.*cannot change while the router runs"):
        await router.reconfigure(config_of(router, **change))


async def test_the_first_problem_reported_is_the_one_construction_reports() -> None:
    clock = FakeClock()
    t, router = two(clock)
    bad = config_of(
        router,
        strategy="no-such-strategy",
        deployments=[{**dep("a").model_dump(mode="json"), "provider": "nope"}],
    )
    with pytest.raises(ConfigError) as at_construction:
        Router.from_config(bad, transports={"fake": t})
    with pytest.raises(ConfigError) as refused:
        await router.reconfigure(bad)
    assert str(refused.value) == str(at_construction.value)


def test_every_state_field_is_a_setting_or_kept_through_an_update() -> None:
    """A field added to DeploymentState must say whether an update copies it from the
    new deployment (SETTINGS) or keeps it (KEPT): otherwise it would silently go
    stale or be lost."""
    slots = {
        name
        for cls in DeploymentState.__mro__
        for name in getattr(cls, "__slots__", ())
        if not name.startswith("__")
    }
    assert not set(SETTINGS) & set(KEPT)
    assert slots == set(SETTINGS) | set(KEPT)


async def test_a_release_reads_the_router_as_it_is_then() -> None:
    """Group h goes with c and comes back with d while c drains: releasing c later
    must not drop h's group series."""
    clock = FakeClock()
    t = ScriptedTransport(clock)
    metrics = PrometheusMetrics()
    router = make_router(t, [dep("a"), dep("c", group="h")], clock, metrics=metrics)
    gate = asyncio.Event()
    t.push("c", Step(gate=gate))
    running = asyncio.ensure_future(router.acompletion("h", MESSAGES))
    await until(lambda: router.parts.states[1].in_flight == 1)
    removal = asyncio.ensure_future(router.remove_deployment("c"))
    await until(lambda: router.groups == ("g",))
    await router.add_deployment(dep("d", group="h"))
    gate.set()
    await bounded(running)
    await bounded(removal)

    def group_series(group: str) -> bool:
        return any(
            s.labels.get("group") == group and s.name.endswith("retries_total")
            for m in metrics.collect()
            for s in m.samples
        )

    assert group_series("h")
    assert {s.id for s in metrics.series} == {"a", "d"}
