"""A router's read-only views of itself (interlock/router/introspection.py): its
deployments, groups, fallback chains, statistics, spend and shared ledger."""

from __future__ import annotations

import pytest

from interlock import Router, UnknownModelError
from interlock.testing import FakeClock
from tests.unit.scripted_transport import ScriptedTransport, dep, first_candidate, make_router

START = 1000.0


def two_groups(clock: FakeClock) -> Router:
    deployments = [
        dep("a1", "a", input_cost_per_token=1e-6, output_cost_per_token=2e-6, tags=("team-x",)),
        dep("a2", "a", input_cost_per_token=1e-6, output_cost_per_token=2e-6),
        dep("b1", "b", input_cost_per_token=0.0, output_cost_per_token=0.0),
    ]
    return make_router(
        ScriptedTransport(clock),
        deployments,
        clock,
        strategy=first_candidate,
        fallbacks={"a": ["b"]},
        aliases={"alias-a": "a"},
    )


async def test_deployments_groups_and_chains_in_configuration_order() -> None:
    router = two_groups(FakeClock(START))
    assert [d.id for d in router.deployments] == ["a1", "a2", "b1"]
    assert router.groups == ("a", "b")
    assert router.fallback_chain("a") == ("a", "b")
    assert router.fallback_chain("alias-a") == ("a", "b")  # an alias names its group
    assert router.fallback_chain("b") == ("b",)
    with pytest.raises(UnknownModelError, match="unknown model 'c'"):
        router.fallback_chain("c")
    assert router.shared is None  # no Redis configured
    await router.aclose()


async def test_statistics_and_spend_count_what_was_served() -> None:
    clock = FakeClock(START)
    router = two_groups(clock)
    before = router.statistics()
    assert before.at == START
    assert (before.requests, before.in_flight, before.failures) == (0, 0, 0)
    await router.acompletion("a", [{"role": "user", "content": "hi"}])
    after = router.statistics()
    assert after.by_id("a1").requests == 1  # `first_candidate` always picks a1
    assert after.by_id("a2").requests == 0
    assert after.in_flight == 0
    spend = router.spend()
    assert spend.by_deployment["a1"] > 0
    assert spend.by_group["a"] == pytest.approx(spend.by_deployment["a1"])
    assert spend.by_group["b"] == 0.0
    assert spend.by_tag["team-x"] == pytest.approx(spend.total_usd)
    await router.aclose()
