"""Selection: spread across deployments, names and aliases, tiers and tags, what a
result says about where it came from, and bad arguments."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import pytest

from interlock import (
    DeploymentState,
    NoDeploymentAvailableError,
    Request,
    Router,
    ServiceUnavailableError,
    UnknownModelError,
)
from interlock.testing import FakeClock
from tests.unit.scripted_transport import (
    MESSAGES,
    ScriptedTransport,
    Step,
    dep,
    first_candidate,
    make_router,
    until,
)

N = 3000


async def spread(router: Router, n: int = N, model: str = "g") -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(n):
        r = await router.acompletion(model, MESSAGES)
        counts[r.deployment_id] += 1
    return counts


async def test_weighted_spreads_evenly_across_equal_deployments() -> None:
    """3 equal deployments, 3000 sequential requests, seed=1234: each gets 1000 ± 100
    (the binomial standard deviation is ~26, so ±100 is ~4 sd: the fixed seed makes the
    outcome deterministic, the tolerance says what 'spread' means)."""
    t = ScriptedTransport()
    router = make_router(
        t, [dep("a"), dep("b"), dep("c")], FakeClock(), strategy="weighted", seed=1234
    )
    counts = await spread(router)
    assert set(counts) == {"a", "b", "c"}
    for n in counts.values():
        assert abs(n - N / 3) <= 100, counts
    assert router.statistics().requests == N


async def test_weighted_follows_configured_weights() -> None:
    """Weights 1:3, 3000 requests, seed=99: the heavy deployment gets 75 % ± 4 points
    (sd ~0.8 points)."""
    t = ScriptedTransport()
    router = make_router(
        t,
        [dep("light", weight=1), dep("heavy", weight=3)],
        FakeClock(),
        strategy="weighted",
        seed=99,
    )
    counts = await spread(router)
    share = counts["heavy"] / N
    assert 0.71 <= share <= 0.79, counts


async def test_weighted_share_defaults_to_rpm() -> None:
    """No weights, rpm 100 and 300: shares 1:3. 2000 requests one fake second apart
    (never near either rpm limit), seed=7: the rpm-300 deployment gets 75 % ± 4 points."""
    clock = FakeClock()
    t = ScriptedTransport()
    router = make_router(
        t, [dep("small", rpm=100), dep("big", rpm=300)], clock, strategy="weighted", seed=7
    )
    counts: Counter[str] = Counter()
    for _ in range(2000):
        r = await router.acompletion("g", MESSAGES)
        counts[r.deployment_id] += 1
        clock.advance(1.0)
    assert 0.71 <= counts["big"] / 2000 <= 0.79, counts


async def test_least_busy_breaks_ties_at_random() -> None:
    """Sequential requests leave every deployment idle, so every pick is a tie: with
    seed=5 and 3000 requests each of 3 deployments gets 1000 ± 100 (no starvation of
    the first, no pinning to it)."""
    t = ScriptedTransport()
    router = make_router(
        t, [dep("a"), dep("b"), dep("c")], FakeClock(), strategy="least-busy", seed=5
    )
    counts = await spread(router)
    for n in counts.values():
        assert abs(n - N / 3) <= 100, counts


async def test_least_busy_sends_concurrent_requests_to_the_idlest() -> None:
    t = ScriptedTransport()
    gate = asyncio.Event()
    for name in ("a", "b"):
        t.always(name, Step(gate=gate))
    router = make_router(t, [dep("a"), dep("b")], FakeClock(), strategy="least-busy")
    tasks = [asyncio.create_task(router.acompletion("g", MESSAGES)) for _ in range(6)]
    await until(lambda: len(t.calls) == 6)
    assert Counter(t.order) == {"a": 3, "b": 3}
    stats = router.statistics()
    assert stats.by_id("a").in_flight == 3
    assert stats.by_id("b").in_flight == 3
    gate.set()
    await asyncio.gather(*tasks)
    assert router.statistics().in_flight == 0


async def test_same_seed_same_choices() -> None:
    orders = []
    for _ in range(2):
        t = ScriptedTransport()
        router = make_router(t, [dep("a"), dep("b"), dep("c")], FakeClock(), seed=42)
        await spread(router, 50)
        orders.append(t.order)
    assert orders[0] == orders[1]


async def test_custom_strategy_object_and_callable() -> None:
    class Last:
        def choose(
            self, candidates: Sequence[DeploymentState], request: Request
        ) -> DeploymentState:
            return candidates[-1]

    t = ScriptedTransport()
    router = make_router(t, [dep("a"), dep("b"), dep("c")], FakeClock(), strategy=Last())
    assert {(await router.acompletion("g", MESSAGES)).deployment_id for _ in range(5)} == {"c"}
    router = make_router(t, [dep("a"), dep("b"), dep("c")], FakeClock(), strategy=first_candidate)
    assert {(await router.acompletion("g", MESSAGES)).deployment_id for _ in range(5)} == {"a"}


async def test_result_says_which_deployment_and_group_served_it() -> None:
    t = ScriptedTransport()
    router = make_router(t, [dep("only", group="chat")], FakeClock())
    r = await router.acompletion("chat", MESSAGES)
    assert r.deployment_id == "only"
    assert r.group == "chat"
    assert r.model == "model-only"
    assert r.choices[0].message.content == t.reply


async def test_alias_resolves_to_its_group() -> None:
    t = ScriptedTransport()
    router = make_router(
        t,
        [dep("a", group="gpt-4o"), dep("b", group="mini")],
        FakeClock(),
        aliases={"gpt4": "gpt-4o", "small": "mini"},
    )
    r = await router.acompletion("gpt4", MESSAGES)
    assert (r.group, r.deployment_id) == ("gpt-4o", "a")
    assert t.calls[-1].group == "gpt-4o"
    r = await router.acompletion("small", MESSAGES)
    assert (r.group, r.deployment_id) == ("mini", "b")
    e = await router.aembedding("small", "x")
    assert e.deployment_id == "b"
    assert await router.call("gpt4", _deployment_id) == "a"
    assert router.fallback_chain("gpt4") == ("gpt-4o",)


async def _deployment_id(d: Any) -> str:
    return str(d.id)


async def test_unknown_model_lists_known_names() -> None:
    t = ScriptedTransport()
    router = make_router(
        t,
        [dep("a", group="gpt-4o"), dep("b", group="mini")],
        FakeClock(),
        aliases={"gpt4": "gpt-4o"},
    )
    for call in (
        router.acompletion("gpt-5", MESSAGES),
        router.aembedding("gpt-5", "x"),
        router.call("gpt-5", _deployment_id),
    ):
        with pytest.raises(UnknownModelError) as exc:
            await call
        text = str(exc.value)
        assert "'gpt-5'" in text
        for name in ("'gpt-4o'", "'mini'", "'gpt4'"):
            assert name in text
        assert isinstance(exc.value, LookupError)
    assert t.calls == []


async def test_unknown_parameter_is_a_type_error() -> None:
    t = ScriptedTransport()
    router = make_router(t, [dep("a")], FakeClock())
    bogus: dict[str, Any] = {"temperture": 0.2}
    bogus_embedding: dict[str, Any] = {"dimensons": 3}
    with pytest.raises(TypeError, match="temperture"):
        await router.acompletion("g", MESSAGES, **bogus)
    with pytest.raises(TypeError, match="dimensons"):
        await router.aembedding("g", "x", **bogus_embedding)
    assert t.calls == []
    assert router.statistics().requests == 0


async def test_known_parameters_reach_the_request_and_extra_body_stays_nested() -> None:
    """extra_body reaches the transport as is; each transport merges it where its
    provider wants it (docs/providers.md)."""
    seen: list[dict[str, Any]] = []

    def spy(candidates: Sequence[DeploymentState], request: Request) -> DeploymentState:
        seen.append(dict(request.params))
        return candidates[0]

    router = make_router(ScriptedTransport(), [dep("a")], FakeClock(), strategy=spy)
    await router.acompletion("g", MESSAGES, temperature=0.5, max_tokens=7, extra_body={"top_k": 3})
    assert seen == [{"temperature": 0.5, "max_tokens": 7, "extra_body": {"top_k": 3}}]


async def test_acompletion_sets_every_field_of_its_request() -> None:
    """`acompletion` makes its `Request` without the dataclass __init__: every field is
    set, to what the constructor would make of the same call."""
    seen: list[Request] = []

    def spy(candidates: Sequence[DeploymentState], request: Request) -> DeploymentState:
        seen.append(request)
        return candidates[0]

    router = make_router(ScriptedTransport(), [dep("a", tags=["x"])], FakeClock(), strategy=spy)
    await router.acompletion("g", MESSAGES, request_id="r-1", metadata={"k": 1}, tags="x")
    (r,) = seen
    expected = Request(
        "chat", "g", MESSAGES, None, {}, False, frozenset({"x"}), r.est_input_tokens,
        r.est_output_tokens, "g", "drop", None, "r-1", {"k": 1},
    )  # fmt: skip
    assert [getattr(r, f.name) for f in fields(Request)] == [
        getattr(expected, f.name) for f in fields(Request)
    ]
    assert r.est_input_tokens > 0
    assert r.est_output_tokens > 0


async def test_bad_arguments_fail_before_routing() -> None:
    t = ScriptedTransport()
    router = make_router(t, [dep("a")], FakeClock())
    with pytest.raises(ValueError, match="messages"):
        await router.acompletion("g", [])
    with pytest.raises(ValueError, match="timeout"):
        await router.acompletion("g", MESSAGES, timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        await router.acompletion("g", MESSAGES, timeout=-1)
    with pytest.raises(TypeError, match=r"messages\[1\]"):
        await router.acompletion("g", [MESSAGES[0], "hi"])  # type: ignore[list-item]
    assert t.calls == []


async def test_lower_order_tier_is_preferred_and_higher_used_when_it_is_out() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("backup", order=2), dep("p1"), dep("p2")], clock, seed=3)
    counts = await spread(router, 200)
    assert set(counts) == {"p1", "p2"}
    t.always("p1", Step(error=ServiceUnavailableError))
    t.always("p2", Step(error=ServiceUnavailableError))
    r = await router.acompletion("g", MESSAGES)
    assert r.deployment_id == "backup"
    assert set(t.order[-3:]) == {"p1", "p2", "backup"}


async def test_tags_restrict_the_candidates() -> None:
    t = ScriptedTransport()
    router = make_router(
        t,
        [dep("us", tags=["us"]), dep("eu1", tags=["eu", "gdpr"]), dep("eu2", tags=["eu"])],
        FakeClock(),
    )
    seen = {(await router.acompletion("g", MESSAGES, tags=["eu"])).deployment_id for _ in range(40)}
    assert seen == {"eu1", "eu2"}
    r = await router.acompletion("g", MESSAGES, tags=["eu", "gdpr"])
    assert r.deployment_id == "eu1"
    with pytest.raises(NoDeploymentAvailableError) as exc:
        await router.acompletion("g", MESSAGES, tags=["apac"])
    assert "lacks tags" in str(exc.value)
    assert exc.value.retry_after is None


async def test_a_single_tag_given_as_a_string_is_not_split_into_characters() -> None:
    """`tags="eu"` (a str is a Sequence[str], so type checkers let it through) must
    not mean tags {'e', 'u'}: either it means ["eu"] or it is a TypeError."""
    t = ScriptedTransport()
    router = make_router(t, [dep("us", tags=["us"]), dep("eu", tags=["eu"])], FakeClock())
    try:
        r = await router.acompletion("g", MESSAGES, tags="eu")
    except TypeError:
        assert t.calls == []
    else:
        assert r.deployment_id == "eu"
