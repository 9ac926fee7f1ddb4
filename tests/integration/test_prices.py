"""Built-in prices through a Router against real fakes on 127.0.0.1: the cost on every
result, spend and budgets, the `cost` strategy, the context-window pre-check, and
models without a price.

The fakes answer in OpenAI's chat format
(https://platform.openai.com/docs/api-reference/chat/object, usage in
https://platform.openai.com/docs/api-reference/chat/object#chat/object-usage) and
Anthropic's Messages format with prompt-caching usage
(https://docs.claude.com/en/api/messages, ``cache_creation_input_tokens`` /
``cache_read_input_tokens``: https://docs.claude.com/en/docs/build-with-claude/prompt-caching).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from interlock import (
    Budget,
    BudgetExceededError,
    ContextWindowExceededError,
    Deployment,
    Router,
)
from interlock.testing import FakeAnthropic, FakeUpstream
from tests import sdk_contract as sdk

MSG = [{"role": "user", "content": "Say hello."}]
ONE_TRY = {"max_attempts": 1}
M = 1e-6
# Built-in list prices (USD per token) of the models used below, as published:
# https://platform.openai.com/docs/pricing and https://docs.claude.com/en/docs/about-claude/pricing
GPT_4O = (2.5 * M, 10 * M)
GPT_4O_MINI = (0.15 * M, 0.6 * M)
EMBED_3_SMALL = 0.02 * M


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(name="a") as u:
        yield u


@pytest.fixture
async def up2() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(name="b") as u:
        yield u


def dep(up: FakeUpstream, model: str, **kw: Any) -> Deployment:
    return Deployment(group=kw.pop("group", "g"), model=model, api_base=up.url, **kw)


async def test_chat_embedding_and_stream_results_carry_their_cost(up: FakeUpstream) -> None:
    deployments = [dep(up, "gpt-4o"), dep(up, "text-embedding-3-small", group="embed")]
    async with Router(deployments, retry=ONE_TRY) as router:
        r = await router.acompletion(model="g", messages=MSG)
        e = await router.aembedding(model="embed", input=["one", "two"])
        stream = await router.acompletion(model="g", messages=MSG, stream=True)
        assert stream.cost is None  # not ended yet
        async for _ in stream:
            pass
        spend = router.spend()
    assert r.usage is not None
    assert r.cost == pytest.approx(
        r.usage.prompt_tokens * GPT_4O[0] + r.usage.completion_tokens * GPT_4O[1]
    )
    assert e.usage is not None
    assert e.cost == pytest.approx(e.usage.prompt_tokens * EMBED_3_SMALL)
    assert stream.usage is not None
    assert r.cost is not None
    assert e.cost is not None
    assert stream.cost is not None
    assert stream.cost == pytest.approx(
        stream.usage.prompt_tokens * GPT_4O[0] + stream.usage.completion_tokens * GPT_4O[1]
    )
    assert r.cost > 0
    assert spend.total_usd == pytest.approx(r.cost + e.cost + stream.cost)
    assert spend.by_group["g"] == pytest.approx(r.cost + stream.cost)
    # `cost` is a routing field: the OpenAI shapes still validate and do not carry it.
    assert "cost" not in r.to_dict()
    sdk.openai_chat(r.to_dict())
    sdk.openai_embedding(e.to_dict())


async def test_a_cache_hit_costs_nothing(up: FakeUpstream) -> None:
    other = [{"role": "user", "content": "Say goodbye."}]
    async with Router([dep(up, "gpt-4o")], cache={"enabled": True}) as router:
        first = await router.acompletion(model="g", messages=MSG)
        again = await router.acompletion(model="g", messages=MSG)
        recorded = await router.acompletion(model="g", messages=other, stream=True)
        async for _ in recorded:
            pass
        replayed = await router.acompletion(model="g", messages=other, stream=True)
        async for _ in replayed:
            pass
        spend = router.spend().total_usd
    assert first.cost is not None
    assert first.cost > 0
    assert again.cached
    assert again.cost == 0.0
    assert not recorded.cached
    assert recorded.cost is not None
    assert recorded.cost > 0
    assert replayed.cached
    assert replayed.cost == 0.0
    assert spend == pytest.approx(first.cost + recorded.cost)


async def test_anthropic_cache_writes_and_reads_at_built_in_prices() -> None:
    # https://docs.claude.com/en/docs/about-claude/pricing: Claude Sonnet 4.5 $3 input,
    # $3.75 5-minute cache writes, $0.30 cache hits, $15 output per MTok.
    manual = "A long manual. " * 400
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [
            {"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}}]},
        *MSG,
    ]  # fmt: skip
    async with FakeAnthropic(api_key="sk-ant-test") as fake:
        d = Deployment(group="g", provider="anthropic", model="claude-sonnet-4-5",
                       api_base=fake.url, api_key="sk-ant-test")  # fmt: skip
        async with Router([d], retry=ONE_TRY) as router:
            write = await router.acompletion(model="g", messages=messages)
            read = await router.acompletion(model="g", messages=messages)
            spend = router.spend().total_usd
    assert write.usage is not None
    assert read.usage is not None
    w, r = write.usage, read.usage
    assert w.cache_creation_tokens > 0
    assert r.cached_tokens == w.cache_creation_tokens
    assert write.cost == pytest.approx(
        (w.prompt_tokens - w.cache_creation_tokens) * 3 * M
        + w.cache_creation_tokens * 3.75 * M
        + w.completion_tokens * 15 * M
    )
    assert read.cost == pytest.approx(
        (r.prompt_tokens - r.cached_tokens) * 3 * M
        + r.cached_tokens * 0.3 * M
        + r.completion_tokens * 15 * M
    )
    assert read.cost is not None
    assert write.cost is not None
    assert read.cost < write.cost / 5
    assert spend == pytest.approx(write.cost + read.cost)


async def test_a_budget_trips_on_built_in_prices(up: FakeUpstream) -> None:
    # One response of gpt-4o costs a few hundredths of a cent: a budget of 1e-5 USD is
    # used up by the first.
    budget = Budget(scope="group", name="g", limit_usd=1e-5, period="1d")
    async with Router([dep(up, "gpt-4o")], budgets=[budget], retry=ONE_TRY) as router:
        first = await router.acompletion(model="g", messages=MSG)
        with pytest.raises(BudgetExceededError):
            await router.acompletion(model="g", messages=MSG)
        [status] = router.spend().budgets
    assert first.cost is not None
    assert first.cost > 1e-5
    assert status.exhausted
    assert status.spent_usd == pytest.approx(first.cost)
    assert up.request_count == 1


async def test_cost_strategy_prefers_the_cheaper_built_in_model(
    up: FakeUpstream, up2: FakeUpstream
) -> None:
    deployments = [dep(up, "gpt-4o", id="dear"), dep(up2, "gpt-4o-mini", id="cheap")]
    async with Router(deployments, strategy="cost") as router:
        served = [(await router.acompletion(model="g", messages=MSG)) for _ in range(20)]
    assert {r.deployment_id for r in served} == {"cheap"}
    assert up.request_count == 0
    cheap = served[0]
    assert cheap.usage is not None
    assert cheap.cost == pytest.approx(
        cheap.usage.prompt_tokens * GPT_4O_MINI[0] + cheap.usage.completion_tokens * GPT_4O_MINI[1]
    )


async def test_cost_strategy_ranks_an_unpriced_model_last(
    up: FakeUpstream, up2: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    # Before built-in prices an unknown price was 0, and the `cost` strategy sent
    # everything to it as if free.
    deployments = [dep(up, "house-model", id="unknown"), dep(up2, "gpt-4o", id="known")]
    async with Router(deployments, strategy="cost") as router:
        served = [(await router.acompletion(model="g", messages=MSG)) for _ in range(10)]
    assert {r.deployment_id for r in served} == {"known"}


async def test_the_built_in_window_prechecks_the_prompt(
    up: FakeUpstream, up2: FakeUpstream
) -> None:
    # ~150,000 tokens by the router's estimate: over gpt-4o's 128,000-token window
    # (https://platform.openai.com/docs/models/gpt-4o), within gpt-4.1's 1,047,576
    # (https://platform.openai.com/docs/models/gpt-4.1).
    big = [{"role": "user", "content": "word " * 120_000}]
    small_window = [dep(up, "gpt-4o", id="4o")]
    async with Router(small_window, retry=ONE_TRY) as router:
        assert router.parts.states[0].context_window == 128_000
        with pytest.raises(ContextWindowExceededError):
            await router.acompletion(model="g", messages=big)
    assert up.request_count == 0  # refused before sending
    both = [dep(up, "gpt-4o", id="4o"), dep(up2, "gpt-4.1", id="4.1")]
    async with Router(both, retry=ONE_TRY) as router:
        r = await router.acompletion(model="g", messages=big)
    assert r.deployment_id == "4.1"
    assert up.request_count == 0


async def test_a_configured_window_and_prices_still_win(up: FakeUpstream) -> None:
    d = dep(up, "gpt-4o", context_window=1_000_000, input_cost_per_token=1e-6,
            output_cost_per_token=2e-6)  # fmt: skip
    big = [{"role": "user", "content": "word " * 120_000}]
    async with Router([d], retry=ONE_TRY) as router:
        r = await router.acompletion(model="g", messages=big)
    assert r.usage is not None
    assert r.cost == pytest.approx(r.usage.prompt_tokens * 1e-6 + r.usage.completion_tokens * 2e-6)


async def test_an_unknown_model_warns_once_and_costs_none(
    up: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="interlock")
    d = dep(up, "house-model", id="house", api_key="sk-house-secret-123456")
    async with Router([d], retry=ONE_TRY) as router:
        results = [await router.acompletion(model="g", messages=MSG) for _ in range(3)]
        stream = await router.acompletion(model="g", messages=MSG, stream=True)
        async for _ in stream:
            pass
        spend = router.spend()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert warnings[0].name == "interlock"
    assert getattr(warnings[0], "event", None) == "unpriced"
    assert "house" in warnings[0].getMessage()
    assert "house-model" in warnings[0].getMessage()
    assert "sk-house-secret" not in caplog.text
    assert [r.cost for r in results] == [None, None, None]
    assert stream.cost is None
    assert spend.total_usd == 0.0
