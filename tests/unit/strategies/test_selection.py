"""Eligibility in front of every strategy (order tiers, tags, retries, large pools),
the Strategy protocol and how strategies are chosen per router, group and request."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

import pytest

from interlock import ConfigError, Deployment, NoDeploymentAvailableError, Router
from interlock.records.state import DeploymentState
from interlock.strategies import (
    Candidates,
    CostStrategy,
    LatencyStrategy,
    PeakEwmaStrategy,
    WeightedStrategy,
    builtin_strategies,
    register_strategy,
)
from interlock.strategies.registry import BUILTIN_NAMES
from interlock.testing import FakeClock
from interlock.types import Request
from tests.unit.strategy_helpers import make_pool, pick, request

STRATEGIES = list(BUILTIN_NAMES)


@pytest.mark.parametrize("name", STRATEGIES)
def test_order_tiers_apply_before_any_strategy(name: str) -> None:
    pool, _, clock = make_pool([{"order": 2}, {"order": 1}, {"order": 1}, {"order": 3}], name)
    assert {pick(pool, clock).id for _ in range(50)} <= {"d1", "d2"}
    pool.states[1].cooldown_until = pool.states[2].cooldown_until = math.inf
    assert {pick(pool, clock).id for _ in range(20)} == {"d0"}
    pool.states[0].in_flight = 5
    pool.states[0].max_concurrency = 5  # at its cap: tier 2 is out too
    assert {pick(pool, clock).id for _ in range(20)} == {"d3"}


@pytest.mark.parametrize("name", STRATEGIES)
def test_tags_must_all_be_on_the_deployment(name: str) -> None:
    specs: list[dict[str, object]] = [
        {"tags": frozenset({"eu"})},
        {"tags": frozenset({"eu", "fast"})},
        {"tags": frozenset({"us"})},
    ]
    pool, _, clock = make_pool(specs, name)
    assert {pick(pool, clock, request(tags=frozenset({"eu"}))).id for _ in range(50)} == {
        "d0",
        "d1",
    }
    assert {pick(pool, clock, request(tags=frozenset({"eu", "fast"}))).id for _ in range(20)} == {
        "d1"
    }
    assert pool.select(request(tags=frozenset({"eu", "us"})), clock.now()) is None
    # no default tag in the pool: an untagged request may go anywhere
    assert {pick(pool, clock).id for _ in range(100)} == {"d0", "d1", "d2"}


def test_untagged_requests_go_to_default_tagged_deployments() -> None:
    specs: list[dict[str, object]] = [{"tags": frozenset({"default"})}, {"tags": frozenset({"eu"})}]
    pool, _, clock = make_pool(specs, "weighted")
    assert {pick(pool, clock).id for _ in range(50)} == {"d0"}
    assert pick(pool, clock, request(tags=frozenset({"eu"}))).id == "d1"
    pool.states[0].cooldown_until = math.inf
    assert pool.select(request(), clock.now()) is None
    reasons = pool.diagnose(request(), clock.now()).reasons
    assert any("d1: lacks tags ['default']" in r for r in reasons)


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("n", [3, 300])
def test_tried_deployments_are_excluded_and_sampling_falls_back_to_a_scan(
    name: str, n: int
) -> None:
    pool, _, clock = make_pool([{} for _ in range(n)], name)
    last = pool.states[n // 2]
    for s in pool.states:
        if s is not last:
            s.cooldown_until = math.inf
    assert pool.select(request(), clock.now(), {last}) is None
    assert {pick(pool, clock).id for _ in range(10)} == {last.id}
    last.cooldown_until = math.inf
    assert pool.select(request(), clock.now()) is None
    for s in pool.states:
        s.cooldown_until = 0.0
    tried = set(pool.states[: n - 1])
    assert {pool.select(request(), clock.now(), tried) for _ in range(10)} == {pool.states[-1]}


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_pick_checks_a_bounded_number_of_deployments(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2,000 deployments, half of them cooling, 1,000 picks (seed 1): eligibility is
    # checked for a handful of sampled deployments per pick, never the whole tier.
    pool, _, clock = make_pool([{"weight": 1.0 + i % 3} for i in range(2000)], name)
    for s in pool.states[::2]:
        s.cooldown_until = math.inf
    calls = 0
    real_ok = Candidates.ok

    def counting_ok(self: Candidates, s: DeploymentState) -> bool:
        nonlocal calls
        calls += 1
        return real_ok(self, s)

    monkeypatch.setattr(Candidates, "ok", counting_ok)
    for _ in range(1000):
        assert pick(pool, clock).cooldown_until == 0.0
    assert calls / 1000 <= 12, calls


def test_headroom_is_checked_for_the_request_tokens() -> None:
    pool, _, clock = make_pool([{"tpm": 1000}, {"tpm": 10_000}], "cost")
    from interlock.limits.ledger import Ledger

    Ledger.reserve(pool.states[0], 900, clock.now())
    assert pick(pool, clock, request(est_input_tokens=50, est_output_tokens=50)).id == "d0"
    assert pick(pool, clock, request(est_input_tokens=150, est_output_tokens=50)).id == "d1"


# --- the protocol -------------------------------------------------------------------


def test_a_plain_callable_gets_the_eligible_list() -> None:
    seen: list[list[str]] = []

    def last(candidates: Sequence[DeploymentState], req: Request) -> DeploymentState:
        seen.append([c.id for c in candidates])
        return candidates[-1]

    pool, _, clock = make_pool([{}, {}, {"order": 2}], last)
    pool.states[1].cooldown_until = math.inf
    assert pick(pool, clock).id == "d0"
    assert seen == [["d0"]]


def test_a_callable_returning_garbage_is_a_type_error() -> None:
    pool, _, clock = make_pool([{}], lambda c, r: "d0")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="returned str"):
        pick(pool, clock)


def test_a_custom_strategy_sees_a_nonempty_sequence_and_gets_feedback() -> None:
    class Busiest:
        def __init__(self) -> None:
            self.outcomes: list[tuple[str, bool]] = []

        def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
            assert len(candidates) > 0
            assert candidates.first in candidates
            return max(candidates, key=lambda s: s.in_flight)

        def record(
            self, state: DeploymentState, ok: bool, latency: float, ttft: float | None
        ) -> None:
            self.outcomes.append((state.id, ok))

    strat = Busiest()
    pool, pipeline, clock = make_pool([{}, {}, {}], strat)
    pool.states[2].in_flight = 3
    assert pick(pool, clock).id == "d2"
    pipeline.success(pool.states[2], clock.now() - 0.1, clock.now())
    assert strat.outcomes == [("d2", True)]


def test_register_strategy_by_name() -> None:
    class First:
        def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
            return candidates[0]

    register_strategy("test-first", lambda rng: First(), replace=True)
    assert "test-first" in builtin_strategies()
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("test-first", lambda rng: First())
    with pytest.raises(ValueError, match="built-in"):
        register_strategy("weighted", lambda rng: First())
    with pytest.raises(ValueError, match="non-empty"):
        register_strategy(" ", lambda rng: First())
    router = Router.from_config(
        {
            "deployments": [{"group": "g", "model": "m"}, {"group": "g", "model": "m"}],
            "strategy": "test-first",
        }
    )
    assert type(router.parts.pools["g"].strategy) is First


# --- per router, per group, per request -----------------------------------------------


def _router(**kw: object) -> Router:
    deployments = [
        Deployment(group="g", model="m", id="dear", input_cost_per_token=1e-5),
        Deployment(group="g", model="m", id="cheap", input_cost_per_token=1e-7),
        Deployment(group="h", model="m", id="h-dear", input_cost_per_token=1e-5),
        Deployment(group="h", model="m", id="h-cheap", input_cost_per_token=1e-7),
    ]
    return Router(deployments, clock=FakeClock(), seed=3, **kw)  # type: ignore[arg-type]


async def _served_by(router: Router, group: str, n: int, **kw: object) -> Counter[str]:
    async def who(d: Deployment) -> str:
        assert d.id is not None
        return d.id

    counts: Counter[str] = Counter()
    for _ in range(n):
        counts[await router.call(group, who, tokens=100, **kw)] += 1  # type: ignore[arg-type]
    return counts


def test_default_strategy_is_p2c_ewma() -> None:
    router = _router()
    assert all(isinstance(p.strategy, PeakEwmaStrategy) for p in router.parts.pools.values())
    # one instance per group: estimates are per group
    assert router.parts.pools["g"].strategy is not router.parts.pools["h"].strategy


async def test_per_group_strategy() -> None:
    router = _router(strategies={"g": "cost"})
    assert isinstance(router.parts.pools["g"].strategy, CostStrategy)
    assert isinstance(router.parts.pools["h"].strategy, PeakEwmaStrategy)
    assert await _served_by(router, "g", 20) == Counter({"cheap": 20})
    with pytest.raises(ConfigError, match=r"strategies\.nope"):
        Router.from_config(
            {"deployments": [{"group": "g", "model": "m"}], "strategies": {"nope": "cost"}}
        )
    with pytest.raises(ConfigError, match="unknown strategy 'fastest'"):
        Router.from_config(
            {"deployments": [{"group": "g", "model": "m"}], "strategies": {"g": "fastest"}}
        )
    with pytest.raises(ConfigError, match=r"strategies\.nope"):
        _router(strategies={"nope": CostStrategy()})
    cfg_router = Router.from_config(
        {"deployments": [{"group": "g", "model": "m"}], "strategies": {"g": "latency"}}
    )
    assert isinstance(cfg_router.parts.pools["g"].strategy, LatencyStrategy)


async def test_per_request_strategy_override() -> None:
    router = _router(strategy="weighted")
    assert await _served_by(router, "g", 20, strategy="cost") == Counter({"cheap": 20})
    by_instance = await _served_by(router, "h", 20, strategy=CostStrategy(random.Random(1)))
    assert by_instance == Counter({"h-cheap": 20})

    def dearest(cands: Sequence[DeploymentState], req: Request) -> DeploymentState:
        return max(cands, key=lambda s: s.input_cost)

    assert await _served_by(router, "g", 5, strategy=dearest) == Counter({"dear": 5})
    # the group's own strategy is untouched
    assert isinstance(router.parts.pools["g"].strategy, WeightedStrategy)
    with pytest.raises(ValueError, match="unknown strategy 'fastest'"):
        await _served_by(router, "g", 1, strategy="fastest")
    with pytest.raises(TypeError, match="strategy must be"):
        await _served_by(router, "g", 1, strategy=42)


async def test_per_request_named_strategy_learns_from_every_outcome() -> None:
    router = _router(strategy="weighted")
    await _served_by(router, "g", 4, strategy="p2c-ewma")
    pool = router.parts.pools["g"]
    learned = pool._named["p2c-ewma"]
    assert isinstance(learned, PeakEwmaStrategy)
    before = dict(learned._est)
    await _served_by(router, "g", 4)  # routed by the group's own strategy
    assert learned._est.keys() == before.keys() == set(pool.states)


async def test_no_eligible_deployment_names_the_tags() -> None:
    router = _router()
    with pytest.raises(NoDeploymentAvailableError, match="lacks tags"):
        await _served_by(router, "g", 1, tags=["gpu"])
