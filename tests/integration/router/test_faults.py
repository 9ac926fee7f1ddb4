"""Faults and bad input end to end (issue 15, point 8): each fault staged by a loopback
server speaking the provider's wire format, each seen through a real Router."""

from __future__ import annotations

from typing import Any

import pytest

from interlock import (
    ConfigError,
    Deployment,
    RetryPolicy,
    Router,
)
from tests.integration.loopback import (
    MESSAGES,
    router_over,
    upstreams,
)

ONE_TRY = RetryPolicy(max_attempts=1, max_wait=0)


# --- configuration that is wrong in shape ----------------------------------------------


async def test_an_infinite_timeout_is_refused_when_the_router_is_built() -> None:
    """It used to be accepted, and then every call failed with a bare ValueError."""
    async with upstreams(1) as ups:
        with pytest.raises(ConfigError) as exc:
            router_over(ups, timeout=float("inf"))
        assert exc.value.problems == ("timeout: input should be a finite number",)
        async with router_over(ups, timeout=5) as router:
            with pytest.raises(ValueError, match="finite"):
                await router.acompletion("g", MESSAGES, timeout=float("inf"))
            assert (await router.acompletion("g", MESSAGES)).deployment_id == "u0"


@pytest.mark.parametrize(
    "settings",
    [
        {"fallbacks": [{}]},
        {"fallbacks": {"g": None}},
        {"budgets": 5},
    ],
    ids=["fallbacks-list", "fallbacks-none", "budgets-int"],
)
async def test_config_of_the_wrong_shape_is_a_config_error(settings: dict[str, Any]) -> None:
    async with upstreams(1) as ups:
        with pytest.raises(ConfigError):
            router_over(ups, **settings)
        doc: dict[Any, Any] = {"deployments": [{"group": "g", "model": "m"}], 1: "x"}
        with pytest.raises(ConfigError):
            Router.from_config(doc)


@pytest.mark.parametrize("cycle", [False, True], ids=["chain", "cycle"])
async def test_a_thousand_group_fallback_chain_is_built_or_refused_without_recursion(
    cycle: bool,
) -> None:
    n = 1000
    async with upstreams(1) as ups:
        url = ups[0].url
        ds = [Deployment(group=f"g{i}", model="m", id=f"d{i}", api_base=url) for i in range(n)]
        chains = {f"g{i}": [f"g{i + 1}"] for i in range(n - 1)}
        if cycle:
            chains[f"g{n - 1}"] = ["g0"]
            with pytest.raises(ConfigError) as exc:
                Router(ds, fallbacks=chains, max_fallback_depth=n)
            assert exc.value.problems[0].startswith("fallbacks: cycle g0 -> g1 -> g2")
            assert exc.value.problems[0].endswith(f"g{n - 1} -> g0")
            return
        async with Router(ds, fallbacks=chains, max_fallback_depth=n, seed=1) as router:
            assert router.fallback_chain("g0") == tuple(f"g{i}" for i in range(n))
            assert router.fallback_chain("g998") == ("g998", "g999")
            r = await router.acompletion("g0", MESSAGES)
            assert r.deployment_id == "d0"
