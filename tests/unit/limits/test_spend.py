"""`interlock/limits/spend.py`: budgets attached to deployments by scope, and their checks."""

from __future__ import annotations

import pytest

from interlock import Budget, ConfigError, Deployment, Router, Usage
from interlock.limits import Ledger, attach_budgets
from interlock.types import PromptTokensDetails
from tests.unit.limits.helpers import state

# --- budgets ------------------------------------------------------------------------------


def test_budgets_attach_by_scope_and_block_eligibility() -> None:
    a = state(id="a", tags=frozenset({"team-x"}), input_cost_per_token=1.0)
    b = state(id="b")
    counters, problems = attach_budgets(
        [
            Budget(scope="tag", name="team-x", limit_usd=5, period="1h"),
            Budget(scope="deployment", name="zzz", limit_usd=5, period="1h"),
        ],
        [a, b],
        0.0,
    )
    assert problems == [("budgets[1].name", "covers no deployment (deployment 'zzz')")]
    assert len(a.budgets) == 1
    assert b.budgets == ()
    r = Ledger.reserve(a, 0, 0.0)
    Ledger.settle(r, 5, 1.0, Usage(5, 0, 5))
    assert counters[0].spent == 5.0
    assert not Ledger.has_headroom(a, 0, 2.0)
    blocked = Ledger.block(a, 0, 2.0)
    assert blocked.kind == "budget"
    assert "team-x" in blocked.why
    assert Ledger.has_headroom(a, 0, 3600.0)


def test_router_rejects_budgets_that_name_nothing() -> None:
    d = Deployment(group="g", model="m", api_base="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match=r"budgets\[0\]\.name: names unknown group 'nope'"):
        Router([d], budgets=[Budget(scope="group", name="nope", limit_usd=1, period="1d")])
    with pytest.raises(ConfigError, match=r"budgets\[0\]\.name: covers no deployment"):
        Router([d], budgets=[Budget(scope="deployment", name="x", limit_usd=1, period="1d")])


# --- prompt-cache prices ------------------------------------------------------------------


def test_cached_reads_and_cache_writes_are_priced_at_their_own_rates() -> None:
    # A cache-heavy Claude call: 200 fresh input tokens, 9,000 read from the cache, 800
    # written to it (Anthropic's prices: reads 0.1x input, 5-minute writes 1.25x;
    # https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#pricing).
    usage = Usage(10_000, 100, 10_100, prompt_tokens_details=PromptTokensDetails(9_000, 800))
    priced = state(
        id="a",
        input_cost_per_token=3e-6,
        output_cost_per_token=15e-6,
        cache_read_cost_per_token=0.3e-6,
        cache_write_cost_per_token=3.75e-6,
    )
    cost = Ledger.settle(Ledger.reserve(priced, 0, 0.0), None, 1.0, usage)
    expected = 200 * 3e-6 + 9_000 * 0.3e-6 + 800 * 3.75e-6 + 100 * 15e-6
    assert cost == pytest.approx(expected)
    assert priced.spend == pytest.approx(expected)
    # Without cache prices every prompt token pays the input price, as before.
    plain = state(id="b", input_cost_per_token=3e-6, output_cost_per_token=15e-6)
    cost = Ledger.settle(Ledger.reserve(plain, 0, 0.0), None, 1.0, usage)
    assert cost == pytest.approx(10_000 * 3e-6 + 100 * 15e-6)
