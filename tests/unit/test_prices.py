"""Built-in prices and context windows (interlock/prices.py) and the cost math on
`DeploymentState`: lookup by provider and model, explicit values winning, cache reads
and writes, price tiers, and the one warning for a model without a price.

The expected prices are the providers' list prices as published on their pricing pages
(cited at each test) and as genai-prices carries them."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from interlock import Deployment
from interlock.limits.ledger import Ledger
from interlock.prices import PROVIDER_IDS, builtin_model, resolve_prices
from interlock.records.state import DeploymentState
from interlock.result_parts import PromptTokensDetails
from interlock.testing import InstantTransport
from interlock.types import Usage

KEY = "sk-prices-test-secret-0000"
M = 1e-6  # USD per token for a list price of $1 per million tokens


def dep(**kw: Any) -> Deployment:
    fields: dict[str, Any] = {"group": "g", "id": "g-0", "api_base": "http://127.0.0.1:9/v1"}
    fields.update(kw)
    return Deployment(**fields)


def state(**kw: Any) -> DeploymentState:
    return DeploymentState(dep(**kw), InstantTransport())


def usage(prompt: int, completion: int, cached: int = 0, written: int = 0) -> Usage:
    u = Usage(prompt, completion, prompt + completion)
    if cached or written:
        u.prompt_tokens_details = PromptTokensDetails(cached, written)
    return u


# --- lookup ------------------------------------------------------------------------


def test_gpt_4o_list_price_and_window() -> None:
    # https://platform.openai.com/docs/pricing: gpt-4o $2.50 input, $1.25 cached input,
    # $10.00 output per 1M tokens; https://platform.openai.com/docs/models/gpt-4o: 128,000
    # context window.
    m = builtin_model("openai", "gpt-4o")
    assert m is not None
    assert (m.input, m.cache_read, m.output) == pytest.approx((2.5 * M, 1.25 * M, 10 * M))
    assert m.context_window == 128_000
    # A dated snapshot name finds the same entry.
    assert builtin_model("openai", "gpt-4o-2024-08-06") == m


def test_gpt_4o_mini_list_price() -> None:
    # https://platform.openai.com/docs/pricing: gpt-4o-mini $0.15 / $0.075 cached / $0.60.
    m = builtin_model("openai", "gpt-4o-mini")
    assert m is not None
    assert (m.input, m.cache_read, m.output) == pytest.approx((0.15 * M, 0.075 * M, 0.6 * M))


def test_claude_sonnet_4_5_prices_cache_and_long_context_tier() -> None:
    # https://docs.claude.com/en/docs/about-claude/pricing: Claude Sonnet 4.5 $3 input,
    # $3.75 5-minute cache writes, $0.30 cache hits, $15 output per MTok; prompts over
    # 200K tokens (long context) $6 input, $22.50 output, cache at the same multipliers.
    m = builtin_model("anthropic", "claude-sonnet-4-5-20250929")
    assert m is not None
    assert (m.input, m.output) == pytest.approx((3 * M, 15 * M))
    assert (m.cache_read, m.cache_write) == pytest.approx((0.3 * M, 3.75 * M))
    assert m.context_window == 200_000
    [tier] = m.tiers
    assert tier.above == 200_000
    assert (tier.input, tier.output) == pytest.approx((6 * M, 22.5 * M))
    assert (tier.cache_read, tier.cache_write) == pytest.approx((0.6 * M, 7.5 * M))


@pytest.mark.parametrize("provider", ["gemini", "vertex"])
def test_gemini_2_5_flash_on_both_google_apis(provider: str) -> None:
    # https://ai.google.dev/gemini-api/docs/pricing (and the Vertex AI page,
    # https://cloud.google.com/vertex-ai/generative-ai/pricing): Gemini 2.5 Flash $0.30
    # text input, $0.03 context caching, $2.50 output per 1M tokens; 1,048,576 input
    # tokens (https://ai.google.dev/gemini-api/docs/models#gemini-2.5-flash).
    m = builtin_model(provider, "gemini-2.5-flash")
    assert m is not None
    assert m.provider_id == "google"
    assert (m.input, m.cache_read, m.output) == pytest.approx((0.3 * M, 0.03 * M, 2.5 * M))
    assert m.context_window == 1_048_576


def test_bedrock_model_ids_and_claude_on_vertex() -> None:
    # https://aws.amazon.com/bedrock/pricing/: Claude 3.5 Haiku $0.0008 / $0.004 per 1K.
    m = builtin_model("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0")
    assert m is not None
    assert m.provider_id == "aws"
    assert (m.input, m.output) == pytest.approx((0.8 * M, 4 * M))
    # Vertex names Claude with an @version suffix; Google's entry falls back to Anthropic's.
    v = builtin_model("vertex", "claude-sonnet-4@20250514")
    assert v is not None
    assert (v.input, v.output) == pytest.approx((3 * M, 15 * M))


def test_unknown_models_and_self_hosted_servers_have_no_entry() -> None:
    assert builtin_model("openai", "no-such-model-xyz") is None
    assert builtin_model("no-such-provider-xyz", "gpt-4o") is None
    assert PROVIDER_IDS["ollama"] is None
    assert builtin_model("ollama", "llama3") is None


def test_lookup_is_cached_per_provider_and_model() -> None:
    assert builtin_model("openai", "gpt-4o") is builtin_model("openai", "gpt-4o")


# --- resolution: explicit values win ------------------------------------------------


def test_no_prices_given_means_built_in_prices_and_window() -> None:
    p = resolve_prices(dep(model="gpt-4o"))
    assert p.known
    assert p.source == "genai-prices"
    assert (p.input, p.output, p.cache_read) == pytest.approx((2.5 * M, 10 * M, 1.25 * M))
    # OpenAI bills no separate cache write: the input price.
    assert p.cache_write == pytest.approx(2.5 * M)
    assert p.context_window == 128_000


def test_explicit_prices_win_all_four_as_before() -> None:
    # Setting either main price makes the deployment's prices its own (unchanged
    # behaviour of existing configs): output 0 when unset, cache prices = input.
    p = resolve_prices(dep(model="gpt-4o", input_cost_per_token=1e-6))
    assert p.source == "config"
    assert (p.input, p.output, p.cache_read, p.cache_write) == (1e-6, 0.0, 1e-6, 1e-6)
    assert p.tiers == ()
    # The context window still comes from the data when not configured.
    assert p.context_window == 128_000


def test_explicit_context_window_wins() -> None:
    assert resolve_prices(dep(model="gpt-4o", context_window=1000)).context_window == 1000


def test_explicit_cache_prices_override_the_built_in_ones_only() -> None:
    p = resolve_prices(dep(model="gpt-4o", cache_read_cost_per_token=0.1e-6))
    assert p.source == "genai-prices"
    assert (p.input, p.cache_read) == pytest.approx((2.5 * M, 0.1e-6))
    s = resolve_prices(dep(provider="anthropic", model="claude-sonnet-4-5",
                           cache_write_cost_per_token=1e-6))  # fmt: skip
    assert s.cache_write == 1e-6
    assert all(t.cache_write == 1e-6 for t in s.tiers)


def test_zero_means_free_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="interlock")
    s = state(model="my-local-model", input_cost_per_token=0.0, output_cost_per_token=0.0)
    assert s.priced
    assert s.cost_of(usage(1000, 1000)) == 0.0
    assert caplog.records == []


def test_base_model_prices_an_azure_deployment_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="interlock")
    named: dict[str, Any] = {
        "provider": "azure",
        "model": "prod-chat-eu",
        "api_base": "https://x.openai.azure.com",
    }
    assert resolve_prices(dep(**named, base_model="gpt-4o-mini")).input == pytest.approx(0.15 * M)
    assert caplog.records == []
    assert not resolve_prices(dep(**named)).known  # the deployment name alone: unknown
    # A deployment named after its model needs nothing more.
    azure = dep(provider="azure", model="gpt-4o", api_base="https://x.openai.azure.com")
    assert resolve_prices(azure).input == pytest.approx(2.5 * M)


# --- unknown models -----------------------------------------------------------------


def test_unknown_model_warns_once_per_deployment_and_costs_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="interlock")
    s = state(model="house-model-7", api_key=KEY, id="house-a")
    state(model="house-model-7", api_key=KEY, id="house-b")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per deployment, at construction
    text = warnings[0].getMessage()
    assert "house-a" in text
    assert "'openai'" in text
    assert "house-model-7" in text
    assert KEY not in text
    assert warnings[0].name.startswith("interlock")
    assert not s.priced
    caplog.clear()
    # Pricing requests never warns again and never counts: cost None, spend 0.
    r = Ledger.reserve(s, 100, 0.0)
    assert Ledger.settle(r, 150, 1.0, usage(100, 50)) is None
    assert s.spend == 0.0
    assert caplog.records == []


def test_self_hosted_provider_warns_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="interlock")
    s = state(provider="ollama", model="llama3")
    assert not s.priced
    [record] = caplog.records
    assert "self-hosted" in record.getMessage()


# --- cost math ----------------------------------------------------------------------


def test_cost_of_plain_usage_at_built_in_prices() -> None:
    s = state(model="gpt-4o")
    assert s.cost_of(usage(1_000_000, 1_000_000)) == pytest.approx(12.5)
    r = Ledger.reserve(s, 10, 0.0)
    assert Ledger.settle(r, 30, 1.0, usage(20, 10)) == pytest.approx(20 * 2.5 * M + 10 * 10 * M)
    assert s.spend == pytest.approx(20 * 2.5 * M + 10 * 10 * M)


def test_cost_of_cached_reads_and_cache_writes() -> None:
    # Claude Sonnet 4.5: 1,000 prompt tokens of which 600 read from the cache and 300
    # written to it, 100 output tokens.
    s = state(provider="anthropic", model="claude-sonnet-4-5")
    expected = 100 * 3 * M + 600 * 0.3 * M + 300 * 3.75 * M + 100 * 15 * M
    assert s.cost_of(usage(1000, 100, cached=600, written=300)) == pytest.approx(expected)


def test_a_prompt_past_the_tier_pays_the_tier_for_every_token() -> None:
    s = state(provider="anthropic", model="claude-sonnet-4-5")
    at = s.cost_of(usage(200_000, 1000))
    past = s.cost_of(usage(200_001, 1000, cached=1))
    assert at == pytest.approx(200_000 * 3 * M + 1000 * 15 * M)
    assert past == pytest.approx(200_000 * 6 * M + 1 * 0.6 * M + 1000 * 22.5 * M)


def test_explicit_prices_cost_as_before() -> None:
    s = state(model="gpt-4o", input_cost_per_token=1e-6, output_cost_per_token=2e-6,
              cache_read_cost_per_token=0.5e-6)  # fmt: skip
    assert s.cost_of(usage(100, 10, cached=40)) == pytest.approx(60e-6 + 20e-6 + 20e-6)


def test_pricing_a_response_never_calls_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    s = state(model="gpt-4o")
    from genai_prices import data_snapshot

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("genai-prices called while pricing a response")

    monkeypatch.setattr(data_snapshot, "get_snapshot", refuse)
    monkeypatch.setattr("genai_prices.calc_price", refuse)
    r = Ledger.reserve(s, 10, 0.0)
    assert Ledger.settle(r, 30, 1.0, usage(20, 10, cached=5)) is not None


def test_data_fetched_at_run_time_applies_to_deployments_built_after() -> None:
    # genai-prices' UpdatePrices installs fresh data as a new snapshot; lookups made
    # after that see it (a state built before keeps the prices it resolved).
    from decimal import Decimal

    from genai_prices import data_snapshot
    from genai_prices import types as gp

    before = state(model="gpt-4o")
    fresh = gp.Provider(
        id="openai", name="OpenAI", api_pattern="https://api\\.openai\\.com",
        models=[gp.ModelInfo(id="gpt-4o", match=gp.ClauseEquals(equals="gpt-4o"),
                             context_window=1000,
                             prices=gp.ModelPrice(input_mtok=Decimal(5), output_mtok=Decimal(20)))],
    )  # fmt: skip
    data_snapshot.set_custom_snapshot(
        data_snapshot.DataSnapshot(providers=[fresh], from_auto_update=True)
    )
    try:
        after = state(model="gpt-4o")
    finally:
        data_snapshot.set_custom_snapshot(None)
    assert (after.input_cost, after.output_cost) == pytest.approx((5 * M, 20 * M))
    assert after.context_window == 1000
    assert before.input_cost == pytest.approx(2.5 * M)
    assert state(model="gpt-4o").input_cost == pytest.approx(2.5 * M)  # bundled data again
