"""Pure tests of the ledger pieces: windows, headroom, budgets, the queue, tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest

from interlock import Budget, ConfigError, Deployment, QueuePolicy, Router, SharedState, Usage
from interlock.limits import (
    BudgetCounter,
    Ledger,
    RateWindow,
    TokenCounter,
    WaitQueue,
    attach_budgets,
    diagnose,
)
from interlock.limits.tokens import estimate_input_tokens
from interlock.records.state import DeploymentState
from interlock.testing import FakeClock


def state(**kw: object) -> DeploymentState:
    d = Deployment(group="g", model="m", id=str(kw.pop("id", "g-0")), **kw)
    return DeploymentState(d, transport=None)  # type: ignore[arg-type]


# --- RateWindow ------------------------------------------------------------------------


def test_window_holds_a_request_between_span_and_span_plus_one_bucket() -> None:
    w = RateWindow(60.0, 60)
    w.add(100.5, 3)  # bucket [100, 101)
    assert w.totals(160.4) == (1, 3)  # 59.9 s later: still inside
    assert w.totals(160.99) == (1, 3)  # the bucket is held until 101 + 60
    assert w.next_expiry(160.5, "requests") == pytest.approx(0.5)
    assert w.next_expiry(160.5, "tokens") == pytest.approx(0.5)
    assert w.totals(161.0) == (0, 0)


def test_window_counts_read_inline_are_current_before_the_edge() -> None:
    """What the hot paths do: advance only at `edge`, then read the counts."""
    w = RateWindow(60.0, 60)
    w.add(10.2, 7)
    w.add(69.5, 1)
    # The first request's bucket [10, 11) is held until 71; the second's until 130.
    expected = {69.9: (2, 8), 70.0: (2, 8), 70.99: (2, 8), 71.0: (1, 1), 131.0: (0, 0)}
    for now, counts in expected.items():
        if now >= w.edge:
            w.advance(now)
        assert (w.requests, w.tokens) == counts, now


def test_window_adjust_reconciles_and_never_goes_negative() -> None:
    w = RateWindow()
    tick = w.add(10.0, 100)
    w.add(11.0, 5)
    w.adjust(12.0, tick, 0, -30)
    assert w.totals(12.0) == (2, 75)
    w.adjust(12.0, tick, -5, -500)
    assert w.totals(12.0) == (1, 5)
    w.adjust(200.0, tick, 1, 1000)  # expired: dropped
    assert w.totals(200.0) == (0, 0)


def test_window_long_idle_clears_everything() -> None:
    w = RateWindow()
    for t in range(50):
        w.add(float(t), 2)
    assert w.totals(49.0) == (50, 100)
    assert w.totals(10_000.0) == (0, 0)
    assert w.next_expiry(10_000.0, "requests") == 0.0


# --- Ledger -------------------------------------------------------------------------------


def test_rpm_headroom_and_reason() -> None:
    s = state(rpm=2)
    for _ in range(2):
        assert Ledger.has_headroom(s, 10, 0.0)
        Ledger.reserve(s, 10, 0.0)
    assert not Ledger.has_headroom(s, 10, 0.0)
    blocked = Ledger.block(s, 10, 0.0)
    why, wait = blocked.why, blocked.wait
    assert "rpm" in why
    assert wait == pytest.approx(61.0)


def test_request_larger_than_the_whole_tpm_is_never_admitted() -> None:
    s = state(tpm=1000)
    assert not Ledger.has_headroom(s, 1001, 0.0)  # even when idle
    assert Ledger.block(s, 1001, 0.0).kind == "oversize"
    assert Ledger.has_headroom(s, 1000, 0.0)


def test_context_window_is_checked() -> None:
    s = state(context_window=100)
    assert not Ledger.has_headroom(s, 101, 0.0)
    assert Ledger.block(s, 101, 0.0).kind == "context"
    ex = diagnose([s], 101, 0.0)
    assert ex.kind == "context"


def test_settle_reconciles_tokens_and_prices_usage() -> None:
    s = state(tpm=10_000, input_cost_per_token=0.001, output_cost_per_token=0.002)
    r = Ledger.reserve(s, 300, 0.0)
    assert s.rate_window is not None
    assert s.rate_window.totals(0.0) == (1, 300)
    cost = Ledger.settle(r, 120, 1.0, Usage(100, 20, 120))
    assert s.rate_window.totals(1.0) == (1, 120)
    assert s.spend == cost == pytest.approx(100 * 0.001 + 20 * 0.002)
    assert (s.input_tokens, s.output_tokens, s.in_flight) == (100, 20, 0)
    assert Ledger.settle(r, 999, 2.0, Usage(1, 1, 2)) is None  # settled once only
    assert s.rate_window.totals(2.0) == (1, 120)
    assert Ledger.settle(Ledger.reserve(s, 10, 3.0), None, 3.0) is None  # no usage, no cost


def test_release_keeps_the_request_and_cancel_undoes_it() -> None:
    s = state(rpm=10, tpm=1000)
    w = s.rate_window
    assert w is not None
    r = Ledger.reserve(s, 50, 0.0)
    Ledger.release(r, 0.5)
    assert (*w.totals(0.5), s.in_flight) == (1, 0, 0)
    r = Ledger.reserve(s, 50, 1.0)
    Ledger.cancel(r, 1.0)
    assert (*w.totals(1.0), s.requests) == (1, 0, 1)


def test_concurrency_cap() -> None:
    s = state(max_concurrency=1)
    r = Ledger.reserve(s, 0, 0.0)
    assert not Ledger.has_headroom(s, 0, 0.0)
    assert Ledger.block(s, 0, 0.0).kind == "concurrency"
    Ledger.settle(r, None, 0.0)
    assert Ledger.has_headroom(s, 0, 0.0)


# --- budgets ------------------------------------------------------------------------------


def test_budget_period_parsing_and_errors() -> None:
    assert Budget(scope="group", name="g", limit_usd=1, period="1d").period == 86400
    assert Budget(scope="group", name="g", limit_usd=1, period="90s").period == 90
    assert Budget(scope="group", name="g", limit_usd=1, period=30).period == 30
    with pytest.raises(ConfigError, match=r"period: must be seconds or a number with a unit"):
        Budget(scope="group", name="g", limit_usd=1, period="1 fortnight")
    with pytest.raises(ConfigError, match=r"limit_usd: must be > 0"):
        Budget(scope="group", name="g", limit_usd=0, period="1h")


def test_budget_counter_rolls_over_fixed_periods() -> None:
    c = BudgetCounter(Budget(scope="group", name="g", limit_usd=1.0, period=10), 100.0)
    c.add(1.0, 101.0)
    assert c.exhausted(109.9)
    assert c.reset_in(105.0) == pytest.approx(5.0)
    assert not c.exhausted(110.0)  # new period
    c.add(0.5, 125.0)  # two periods later: [120, 130)
    assert c.spent == 0.5
    assert c.resets_at == 130.0


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


def test_shared_state_config_never_echoes_the_url() -> None:
    with pytest.raises(ConfigError) as info:
        SharedState(url="http://user:secret@host")
    assert "secret" not in str(info.value)
    assert "secret" not in repr(SharedState(url="redis://:secret@127.0.0.1:1/0"))
    with pytest.raises(ConfigError, match="max_wait: must be >= 0"):
        QueuePolicy(max_wait=-1)


async def turns(cond: Callable[[], bool]) -> None:
    """Yield to the event loop until `cond()` holds (at most 1000 turns)."""
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# --- WaitQueue ----------------------------------------------------------------------------


async def test_queue_is_fifo_and_a_timed_out_waiter_leaves_cleanly() -> None:
    clock = FakeClock()
    q = WaitQueue(clock, max_size=10)
    order: list[str] = []

    async def waiter(name: str, timeout: float) -> None:
        if await q.wait(timeout, capacity_in=None, front=False):
            order.append(name)
        else:
            order.append(name + ":timeout")

    tasks = [asyncio.create_task(waiter(n, t)) for n, t in (("a", 50), ("b", 5), ("c", 50))]
    await turns(lambda: clock.sleepers >= 3)  # every waiter's timeout is running
    clock.advance(5)  # b times out
    await turns(lambda: q.waiting <= 2)
    q.wake()
    q.wake()
    await asyncio.gather(*tasks)
    assert order == ["b:timeout", "a", "c"]
    assert q.waiting == 0


async def test_queue_timer_wakes_the_head_when_capacity_returns() -> None:
    clock = FakeClock()
    q = WaitQueue(clock, max_size=10)
    task = asyncio.create_task(q.wait(100, capacity_in=3.0, front=False))
    await turns(lambda: clock.sleepers >= 2)  # the waiter's timeout and the line's timer
    clock.advance(3.0)
    assert await task is True
    q.close()


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    clock = FakeClock()
    q = WaitQueue(clock, max_size=10)
    first = asyncio.create_task(q.wait(100, capacity_in=None, front=False))
    second = asyncio.create_task(q.wait(100, capacity_in=None, front=False))
    await turns(lambda: q.waiting >= 2)
    q.wake()  # resolves first's future...
    first.cancel()  # ...but first is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second is True  # the wake-up was not lost
    assert q.waiting == 0


# --- tokens -------------------------------------------------------------------------------


def test_token_counter_heuristic_and_exact_function() -> None:
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "abcdefgh"},
        {"role": "user", "content": [{"text": "xy"}]},
    ]
    assert TokenCounter().messages(msgs) == 2 + 1 + 8
    words = TokenCounter(lambda text: len(text.split()), per_message=0)
    assert words.messages([{"role": "user", "content": "one two three"}]) == 3
    assert words.embedding_input(["a b", [1, 2, 3], 7]) == 2 + 3 + 1
    with pytest.raises(TypeError, match=r"messages\[0\] must be a mapping"):
        words.messages(cast(Any, ["hi"]))


def test_tiktoken_counter_when_installed() -> None:
    pytest.importorskip("tiktoken")
    try:
        counter = TokenCounter.tiktoken("cl100k_base")
    except Exception as exc:  # the BPE file cannot be fetched offline
        pytest.skip(f"tiktoken data unavailable: {type(exc).__name__}")
    assert counter.messages([{"role": "user", "content": "hello world"}]) == 2 + 4


def test_heuristic_counter_honours_per_message_and_matches_the_estimate() -> None:
    msgs = [{"role": "system", "content": "abcd"}, {"role": "user", "content": "abcdefgh"}]
    # 12 characters -> 3 tokens, plus framing per message.
    assert estimate_input_tokens(msgs) == 3 + 4 * 2
    assert TokenCounter().messages(msgs) == estimate_input_tokens(msgs)
    assert TokenCounter(per_message=1).messages(msgs) == 3 + 1 * 2
    assert TokenCounter(len).messages(msgs) == 12 + 4 * 2
