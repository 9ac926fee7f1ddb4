"""The endpoint methods' checks of their arguments (all before anything is sent) and
their choice of deployments that support the endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from interlock import DeploymentState, Request, Router, UnknownModelError, UnsupportedEndpointError
from interlock.router.endpoint_calls import CapableOnly, incapable

KEY = "sk-unit-endpoint-methods-3Hq"
DEAD = "http://127.0.0.1:9/v1"  # nothing listens: a test that sent anything would fail


def router(*providers: str, group: str = "g", **options: Any) -> Router:
    deployments = [
        {"group": group, "provider": p, "model": "m", "id": f"{p}{i}", "api_base": DEAD,
         **({} if p == "vllm" else {"api_key": KEY})}
        for i, p in enumerate(providers)
    ]  # fmt: skip
    return Router(deployments, seed=7, **options)


async def test_bad_arguments_are_typed_errors() -> None:
    r = router("openai")
    with pytest.raises(ValueError, match="prompt"):
        await r.aimage_generation("g", "")
    with pytest.raises(TypeError, match="extra_body"):
        await r.aimage_generation("g", "x", sizes="1024x1024")
    with pytest.raises(TypeError, match="extra_body must be a mapping"):
        await r.aimage_generation("g", "x", extra_body=[1])
    with pytest.raises(ValueError, match="filename"):
        await r.atranscription("g", b"RIFF")
    with pytest.raises(TypeError, match="file must be"):
        await r.atranscription("g", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot read"):
        await r.atranscription("g", "/no/such/file.mp3")
    with pytest.raises(ValueError, match="voice"):
        await r.aspeech("g", "hello", "")
    with pytest.raises(ValueError, match="input"):
        await r.amoderation("g", [])
    with pytest.raises(ValueError, match="timeout"):
        await r.amoderation("g", "x", timeout=0)
    with pytest.raises(UnknownModelError):
        await r.amoderation("nope", "x")


async def test_rerank_arguments() -> None:
    r = router("vllm")
    with pytest.raises(ValueError, match="documents"):
        await r.arerank("g", "q", "one string")
    with pytest.raises(ValueError, match="top_n"):
        await r.arerank("g", "q", ["d"], top_n=0)
    with pytest.raises(TypeError, match="top_n"):
        await r.arerank("g", "q", ["d"], top_n=True)


@pytest.mark.parametrize(
    "path", ["https://elsewhere.example/v1/x", "//elsewhere.example", "../x", "a/../../x", ""]
)
async def test_passthrough_paths_stay_under_the_base(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        await router("openai").arequest("g", "GET", path)


async def test_passthrough_arguments() -> None:
    r = router("openai")
    with pytest.raises(ValueError, match="method"):
        await r.arequest("g", "CONNECT", "/x")
    with pytest.raises(TypeError, match="not both"):
        await r.arequest("g", "POST", "/x", json={}, data=b"x")
    with pytest.raises(ValueError, match="tokens"):
        await r.arequest("g", "POST", "/x", tokens=-1)


@pytest.mark.parametrize(
    ("providers", "call"),
    [
        (("anthropic",), "moderation"),
        (("openai", "groq"), "rerank"),
        (("bedrock",), "passthrough"),
        (("groq",), "images"),
    ],
)
async def test_a_group_without_the_endpoint_refuses_at_the_call(
    providers: Sequence[str], call: str
) -> None:
    extra = {"aws_region": "us-east-1"} if "bedrock" in providers else {}
    deployments = [{"group": "g", "provider": p, "model": "m", "api_key": KEY, **extra}
                   for p in providers]  # fmt: skip
    if "bedrock" in providers:
        deployments = [{"group": "g", "provider": "bedrock", "model": "m", **extra}]
    r = Router(deployments)
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "moderation": lambda: r.amoderation("g", "x"),
        "rerank": lambda: r.arerank("g", "q", ["d"]),
        "passthrough": lambda: r.arequest("g", "GET", "/x"),
        "images": lambda: r.aimage_generation("g", "x"),
    }
    with pytest.raises(UnsupportedEndpointError) as info:
        await calls[call]()
    assert info.value.endpoint == call
    assert info.value.providers == tuple(sorted(set(providers)))


def test_incapable_lists_the_chain_and_judges_the_first_group() -> None:
    r = Router(
        [
            {"group": "a", "provider": "openai", "model": "m", "id": "o", "api_key": KEY},
            {"group": "b", "provider": "vllm", "model": "m", "id": "v"},
        ],
        fallbacks={"a": ["b"]},
    )
    parts = r.parts
    excluded, first_ok = incapable(parts.pools, ("a", "b"), "rerank")
    assert {s.id for s in excluded} == {"o"}
    assert not first_ok
    excluded, first_ok = incapable(parts.pools, ("b",), "rerank")
    assert not excluded
    assert first_ok


def first(candidates: Sequence[DeploymentState], request: Request) -> DeploymentState:
    return candidates[0]


@pytest.mark.parametrize("inner", [None, "least-busy", first])
def test_capable_only_never_picks_an_incapable_deployment(inner: Any) -> None:
    r = router("openai", "vllm", "openai", "vllm")
    parts = r.parts
    excluded, _ = incapable(parts.pools, ("g",), "rerank")
    from interlock.router.calls import request_strategy
    from interlock.strategies.registry import resolve_strategy

    spec = request_strategy(inner)
    strategy = resolve_strategy(spec, parts.pools["g"].rng) if isinstance(spec, str) else spec
    request = Request("call", "g", strategy=CapableOnly(excluded, parts.pools, strategy))
    now = parts.clock.now()
    picked = {parts.pools["g"].select(request, now).id for _ in range(50)}  # type: ignore[union-attr]
    assert picked <= {"vllm1", "vllm3"}
    assert picked
    # With both capable ones excluded as tried, nothing is eligible.
    tried = {s for s in parts.states if s.id.startswith("vllm")}
    assert parts.pools["g"].select(request, now, tried) is None
