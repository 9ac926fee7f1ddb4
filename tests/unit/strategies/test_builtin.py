"""Strategies on real pools and states: shares, ties, feedback, limits.

Statistical tests use fixed seeds; each states its tolerance.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from interlock.limits.ledger import Ledger
from interlock.router.attempt import Attempts
from interlock.router.pool import DeploymentPool
from interlock.strategies import (
    CostStrategy,
    LatencyStrategy,
    LeastBusyStrategy,
    PeakEwmaStrategy,
    UsageStrategy,
    WeightedStrategy,
)
from interlock.testing import FakeClock
from interlock.types import Usage
from tests.unit.strategy_helpers import chi2_sf, make_pool, pick, pick_settled, request, uniform_p


def test_chi2_sf_matches_known_quantiles() -> None:
    # Critical values at p = 0.01 from standard tables.
    assert chi2_sf(13.277, 4) == pytest.approx(0.01, rel=1e-3)
    assert chi2_sf(62.428, 39) == pytest.approx(0.01, rel=1e-2)
    assert chi2_sf(0.0, 3) == 1.0


# --- weighted ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 200])
def test_weighted_80_20_within_3_points(n: int) -> None:
    # Seed 11; 10,000 picks; tolerance ±3 percentage points. With n=200 half the
    # deployments weigh 4 and half 1 (alias-table path), and 10% are cooling.
    specs = [{"weight": 4.0 if i % 2 == 0 else 1.0} for i in range(n)]
    pool, _, clock = make_pool(specs, "weighted", seed=11)
    if n > 2:
        for s in random.Random(3).sample(pool.states, n // 10):
            s.cooldown_until = math.inf
    heavy_ids = {s.id for s in pool.states if s.weight == 4.0 and s.cooldown_until <= 1e9}
    light_ids = {s.id for s in pool.states if s.weight == 1.0 and s.cooldown_until <= 1e9}
    expected = 4 * len(heavy_ids) / (4 * len(heavy_ids) + len(light_ids))
    counts = pick_settled(pool, clock, 10_000)
    assert set(counts) <= heavy_ids | light_ids  # never a cooling one
    share = sum(counts[i] for i in heavy_ids) / 10_000
    assert abs(share - expected) <= 0.03
    if n == 2:
        assert abs(share - 0.8) <= 0.03


def test_weighted_falls_back_to_rpm_then_uniform() -> None:
    # Seed 5; 10,000 picks; ±3 points. No weights: shares follow rpm 300/100.
    pool, _, clock = make_pool([{"rpm": 300_000}, {"rpm": 100_000}], "weighted", seed=5)
    counts = pick_settled(pool, clock, 10_000)
    assert abs(counts["d0"] / 10_000 - 0.75) <= 0.03
    pool, _, _ = make_pool([{}, {}], "weighted")
    assert [s.weight for s in pool.states] == [1.0, 1.0]


# --- equal candidates, equal shares -----------------------------------------------

ALL = ["weighted", "least-busy", "latency", "cost", "cost-inverse-square", "usage", "p2c-ewma"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("k", [5, 40])
def test_equal_candidates_get_equal_shares(name: str, k: int) -> None:
    # Seed 2024; 200 picks per deployment; chi-square goodness of fit, p > 0.01.
    # k=5 takes the exact paths, k=40 the sampling ones.
    pool, _, clock = make_pool([{} for _ in range(k)], name, seed=2024)
    counts = pick_settled(pool, clock, 200 * k)
    assert uniform_p(counts, k) > 0.01, counts


# --- least-busy -------------------------------------------------------------------


def test_least_busy_picks_the_least_busy_never_the_first_listed() -> None:
    pool, _, clock = make_pool([{}, {}, {}], "least-busy")
    for s, n in zip(pool.states, (54, 10, 100), strict=True):
        s.in_flight = n
    assert {pick(pool, clock).id for _ in range(200)} == {"d1"}
    pool.states[1].in_flight = 54  # d0 and d1 tie
    counts = Counter(pick(pool, clock).id for _ in range(1000))
    assert set(counts) == {"d0", "d1"}
    assert abs(counts["d0"] - 500) < 100  # seed 1; binomial sd ~16


def test_least_busy_on_a_large_pool_prefers_the_idle_half() -> None:
    # Power of two choices: a busy deployment wins only when both draws are busy.
    # Seed 1; 4,000 picks; expected busy share 0.25, tolerance ±0.03.
    pool, _, clock = make_pool([{} for _ in range(100)], "least-busy")
    for s in pool.states[:50]:
        s.in_flight = 5
    counts = Counter(pick(pool, clock).id for _ in range(4000))
    busy = sum(v for k, v in counts.items() if int(k[1:]) < 50)
    assert abs(busy / 4000 - 0.25) <= 0.03


@pytest.mark.parametrize("n", [2, 40])
def test_least_busy_ties_go_by_weight(n: int) -> None:
    # Every deployment idle (concurrency 1): all tie, and the tie-break follows the
    # weights, 3 : 1. Seed 4; 8,000 picks; +-3 points (binomial sd < 0.5). n=40 takes
    # the power-of-two-choices path (a weighted draw, then a uniform challenger that
    # must be strictly less busy).
    pool, _, clock = make_pool([{"weight": 3.0 if i % 2 == 0 else 1.0} for i in range(n)],
                               "least-busy", seed=4)  # fmt: skip
    counts = pick_settled(pool, clock, 8000)
    heavy = sum(v for k, v in counts.items() if int(k[1:]) % 2 == 0)
    assert abs(heavy / 8000 - 0.75) <= 0.03, counts


# --- latency ----------------------------------------------------------------------


def _drive_latency(
    pool: DeploymentPool,
    pipeline: Attempts,
    clock: FakeClock,
    per_token: dict[str, float],
    picks: int,
    stream: bool = False,
) -> Counter[str]:
    counts: Counter[str] = Counter()
    req = request(stream=stream)
    for _ in range(picks):
        s = pick(pool, clock, req)
        now = clock.now()
        r = Ledger.reserve(s, 200, now)
        Ledger.settle(r, 200, now)
        lat = per_token[s.id] * 100
        usage = Usage(10, 100, 110)
        if stream:
            pipeline.success(s, now - lat, now, per_token[s.id], usage)
        else:
            pipeline.success(s, now - lat, now, None, usage)
        counts[s.id] += 1
        clock.advance(0.1)
    return counts


def test_latency_moves_to_the_fast_one_and_back_after_recovery() -> None:
    # Seed 7; shares measured over 1,000 picks after each phase's warm-up. The slower
    # one is not starved: its estimate halves every 2 rounds (4 picks) without a
    # sample, so one f times slower is tried again after about 2·log2(f / 1.5) + 0.5
    # rounds: every ~12 picks at f = 10 (8%), every ~8 at f = 5 (11%).
    pool, pipeline, clock = make_pool([{}, {}], LatencyStrategy(random.Random(7)))
    speeds = {"d0": 0.01, "d1": 0.10}
    _drive_latency(pool, pipeline, clock, speeds, 100)  # warm-up: both explored
    after_warmup = _drive_latency(pool, pipeline, clock, speeds, 1000)
    assert 900 <= after_warmup["d0"] <= 960, after_warmup
    speeds["d1"] = 0.002  # d1 recovers and is now the faster one
    _drive_latency(pool, pipeline, clock, speeds, 200)  # decay brings it back
    recovered = _drive_latency(pool, pipeline, clock, speeds, 1000)
    assert 850 <= recovered["d1"] <= 930, recovered


def test_latency_on_a_large_tier_follows_the_leader_and_explores() -> None:
    # Seed 3; 40 deployments (above exact_limit, so the leader-plus-one-random path);
    # d7 is ten times faster than the best of the rest. Warm-up explores every
    # deployment (a deployment without a sample is picked when drawn); afterwards
    # d7 takes at least 85% of 1,000 picks (each of the other 39, 10-50 times slower,
    # is tried again every 5-10 rounds of 40 picks: about 12% in all); while it is
    # cooling it takes none.
    rng = random.Random(3)
    per_token = {f"d{i}": 0.01 + 0.04 * rng.random() for i in range(40)}
    per_token["d7"] = 0.001
    pool, pipeline, clock = make_pool([{}] * 40, LatencyStrategy(random.Random(3)))
    warmup = _drive_latency(pool, pipeline, clock, per_token, 400)
    assert set(warmup) == set(per_token)
    after = _drive_latency(pool, pipeline, clock, per_token, 1000)
    assert after["d7"] >= 850
    fast = next(s for s in pool.states if s.id == "d7")
    fast.cooldown_until = math.inf
    cooling = _drive_latency(pool, pipeline, clock, per_token, 200)
    assert cooling["d7"] == 0
    assert sum(cooling.values()) == 200


def test_latency_on_a_large_tier_starts_from_the_best_estimate_recorded_before() -> None:
    # 40 deployments (a large tier), every estimate recorded before the first pick,
    # d7 ten times faster than the rest: the leader the first large pick finds among
    # them is d7, so with buffer 0 it takes every pick it is compared in (seed 5;
    # each pick compares a weighted draw with the leader).
    strat = LatencyStrategy(random.Random(5), buffer=0.0, half_life=1e9, stale_half_life=1e9)
    pool, _, clock = make_pool([{}] * 40, strat)
    strat._now = clock.now()
    for s in pool.states:
        s.last_output_tokens = 1
        strat.record(s, True, 0.001 if s.id == "d7" else 0.01 + 0.0001 * int(s.id[1:]), None)
    counts = Counter(pick(pool, clock).id for _ in range(200))
    assert counts == {"d7": 200}, counts


def test_latency_judges_streams_by_time_to_first_token() -> None:
    pool, _, clock = make_pool([{}, {}], "latency")
    strat = pool.strategy
    assert isinstance(strat, LatencyStrategy)
    a, b = pool.states
    strat._now = clock.now()
    # a: quick first token, slow per token; b the other way round
    a.last_output_tokens = b.last_output_tokens = 100
    strat.record(a, True, 10.0, None)  # 0.1 s/token
    strat.record(b, True, 1.0, None)  # 0.01 s/token
    strat.record(a, True, 10.0, 0.05)
    strat.record(b, True, 1.0, 0.5)
    assert {pick(pool, clock).id for _ in range(50)} == {"d1"}
    assert {pick(pool, clock, request(stream=True)).id for _ in range(50)} == {"d0"}


def test_latency_buffer_spreads_over_near_best() -> None:
    # Seed 1; 2,000 picks; within 10% of the best both share, ±5 points around 50%.
    strat = LatencyStrategy(random.Random(1), buffer=0.2, half_life=1e9)
    pool, _, clock = make_pool([{}, {}, {}], strat)
    strat._now = clock.now()
    for s, per_token in zip(pool.states, (0.010, 0.011, 0.05), strict=True):
        s.last_output_tokens = 1
        strat.record(s, True, per_token, None)
    counts = Counter(pick(pool, clock).id for _ in range(2000))
    assert counts["d2"] == 0
    assert abs(counts["d0"] / 2000 - 0.5) <= 0.05


def test_latency_band_shares_by_weight_and_leaves_out_the_slow() -> None:
    # Default buffer 0.5: 10 and 14 ms per token count as equal, 20 ms is out. Weights
    # 3 : 1 : 1. Seed 2; 4,000 picks (estimates do not decay: half_life and
    # stale_half_life 1e9); d0 takes 3/4 +- 3 points.
    strat = LatencyStrategy(random.Random(2), half_life=1e9, stale_half_life=1e9)
    pool, _, clock = make_pool([{"weight": 3.0}, {"weight": 1.0}, {"weight": 1.0}], strat)
    pick(pool, clock)
    for s, per_token in zip(pool.states, (0.010, 0.014, 0.020), strict=True):
        s.last_output_tokens = 1
        strat.record(s, True, per_token, None)
    counts = pick_settled(pool, clock, 4000)
    assert counts["d2"] == 0
    assert abs(counts["d0"] / 4000 - 0.75) <= 0.03, counts


def test_latency_decays_only_while_nothing_is_in_flight() -> None:
    # d1 (ten times slower) has not been sampled for 20 rounds: read decayed while idle,
    # as is while a request to it is out, so it is tried one request at a time.
    strat = LatencyStrategy(random.Random(1), half_life=1e9)
    pool, _, clock = make_pool([{}, {}], strat)
    a, b = pool.states
    pick(pool, clock)
    a.last_output_tokens = b.last_output_tokens = 1
    strat.record(b, True, 0.10, None)
    for _ in range(40):
        pick(pool, clock)
        strat.record(a, True, 0.01, None)
    idle = strat.estimate(b)
    assert idle is not None
    assert idle < 0.01
    b.in_flight = 1
    assert strat.estimate(b) == pytest.approx(0.10)
    assert {pick(pool, clock).id for _ in range(20)} == {"d0"}


def test_latency_explores_a_new_deployment_once_at_a_time() -> None:
    strat = LatencyStrategy(random.Random(1))
    pool, _, clock = make_pool([{}, {}], strat)
    a, b = pool.states
    strat._now = clock.now()
    strat.record(a, True, 0.01, None)
    assert pick(pool, clock) is b  # no sample yet, nothing in flight: explored
    b.in_flight = 1  # the probe is out: traffic stays on the measured one
    assert {pick(pool, clock).id for _ in range(20)} == {"d0"}


def test_latency_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="buffer"):
        LatencyStrategy(buffer=-1)
    with pytest.raises(ValueError, match="alpha"):
        LatencyStrategy(alpha=0)
    with pytest.raises(ValueError, match="half_life"):
        LatencyStrategy(half_life=0)


# --- cost -------------------------------------------------------------------------


def test_cost_moves_to_the_next_cheapest_when_the_cheapest_is_over_its_limit() -> None:
    specs: list[dict[str, object]] = [
        {"input_cost_per_token": 3e-6, "output_cost_per_token": 1e-5},
        {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "rpm": 5},
        {"input_cost_per_token": 2e-6, "output_cost_per_token": 4e-6},
    ]
    pool, _, clock = make_pool(specs, "cost")
    seen = []
    for _ in range(8):
        s = pick(pool, clock)
        Ledger.settle(Ledger.reserve(s, 200, clock.now()), 200, clock.now())
        seen.append(s.id)
    assert seen == ["d1"] * 5 + ["d2"] * 3


def test_cost_weighs_the_token_mix() -> None:
    # d0 cheap input, dear output; d1 the reverse.
    specs: list[dict[str, object]] = [
        {"input_cost_per_token": 1e-7, "output_cost_per_token": 1e-5},
        {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6},
    ]
    pool, _, clock = make_pool(specs, "cost")
    long_prompt = request(est_input_tokens=100_000, est_output_tokens=10)
    long_answer = request(est_input_tokens=10, est_output_tokens=4_000)
    assert pick(pool, clock, long_prompt).id == "d0"
    assert pick(pool, clock, long_answer).id == "d1"


def test_cost_inverse_square_shares() -> None:
    # Costs 1 : 2 -> weights 1 : 1/4 -> 80% / 20%; seed 3; 10,000 picks; ±3 points.
    specs: list[dict[str, object]] = [
        {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6},
        {"input_cost_per_token": 2e-6, "output_cost_per_token": 2e-6},
    ]
    pool, _, clock = make_pool(specs, CostStrategy(random.Random(3), inverse_square=True))
    counts = pick_settled(pool, clock, 10_000)
    assert abs(counts["d0"] / 10_000 - 0.8) <= 0.03


# --- usage ------------------------------------------------------------------------


def test_usage_prefers_the_most_headroom_as_a_share_of_the_limit() -> None:
    pool, _, clock = make_pool([{"rpm": 100}, {"rpm": 1000}], "usage")
    a, b = pool.states
    now = clock.now()
    for _ in range(40):
        Ledger.reserve(a, 1, now)  # 60% left
    for _ in range(500):
        Ledger.reserve(b, 1, now)  # 50% left, though far more in absolute terms
    assert isinstance(pool.strategy, UsageStrategy)
    assert {pick(pool, clock).id for _ in range(20)} == {"d0"}


# --- p2c-ewma ---------------------------------------------------------------------


def test_p2c_ewma_prefers_fast_and_weighs_load() -> None:
    # half_life=1e9 rounds: no staleness decay, so the comparison rules alone decide.
    strat = PeakEwmaStrategy(random.Random(1), half_life=1e9)
    pool, pipeline, clock = make_pool([{}, {}], strat)
    a, b = pool.states
    pick(pool, clock)  # sets the strategy's clock reading
    pipeline.success(a, clock.now() - 0.01, clock.now())
    pipeline.success(b, clock.now() - 0.10, clock.now())
    assert {pick(pool, clock).id for _ in range(50)} == {"d0"}
    a.in_flight = 20  # 0.01 x 21 > 1.5 x 0.10 x 1: d1 is clearly better now
    assert {pick(pool, clock).id for _ in range(50)} == {"d1"}
    a.in_flight = 0
    # Peak: one slow answer is believed at once...
    pipeline.success(a, clock.now() - 1.0, clock.now())
    assert {pick(pool, clock).id for _ in range(20)} == {"d1"}
    # ...recovery over the decay time.
    for _ in range(10):
        clock.advance(10.0)
        pick(pool, clock)
        pipeline.success(a, clock.now() - 0.01, clock.now())
    assert {pick(pool, clock).id for _ in range(20)} == {"d0"}


def test_p2c_ewma_lower_samples_count_at_any_rate() -> None:
    # With no time between samples exp(-dt/decay) would keep the estimate where it
    # is; a lower sample still moves it a quarter of the way: 1.0 -> 0.5 in
    # 0.25 + 0.75^k·0.75 -> after 3 samples 0.25 + 0.75·0.75³ = 0.566.
    strat = PeakEwmaStrategy(random.Random(1), half_life=1e9)
    pool, _, clock = make_pool([{}, {}], strat)
    a, _ = pool.states
    pick(pool, clock)
    strat.record(a, True, 1.0, None)
    for _ in range(3):
        strat.record(a, True, 0.25, None)
    assert strat.latency(a) == pytest.approx(0.25 + 0.75 * 0.75**3)


@pytest.mark.parametrize(("weights", "share"), [((1.0, 1.0), 0.5), ((3.0, 1.0), 0.75)])
def test_p2c_ewma_shares_near_equal_deployments_by_weight(
    weights: tuple[float, float], share: float
) -> None:
    # Estimates 10 ms and 13 ms: within the band (x 1.5), so they count as equal and
    # the weighted draw decides. Seed 5; 4,000 picks; +-3 points (binomial sd < 0.8).
    strat = PeakEwmaStrategy(random.Random(5), half_life=1e9)
    pool, _, clock = make_pool([{"weight": w} for w in weights], strat)
    a, b = pool.states
    pick(pool, clock)
    strat.record(a, True, 0.010, None)
    strat.record(b, True, 0.013, None)
    counts = pick_settled(pool, clock, 4000)
    assert abs(counts["d0"] / 4000 - share) <= 0.03, counts
    # Outside the band the faster one takes every pick, whatever the weights.
    strat.record(b, True, 0.020, None)
    assert set(pick_settled(pool, clock, 200)) == {"d0"}


def test_p2c_ewma_tries_a_stale_slow_deployment_again() -> None:
    # Seed 3; two deployments, d1 ten times slower. Each pick is answered at once
    # (clock +1 ms). d1's estimate decays towards the group mean with a half-life of
    # 2 rounds (4 picks) and is back in the band after 2·log2(2·(10 - 1)) = 8.3
    # rounds: d1 gets about one pick in 17 (6%). Once it is as fast as d0 it is back
    # at once: at least 35% of the next 200 picks (fair share 50%).
    pool, pipeline, clock = make_pool([{}, {}], PeakEwmaStrategy(random.Random(3)))
    speeds = {"d0": 0.001, "d1": 0.010}

    def drive(picks: int) -> Counter[str]:
        counts: Counter[str] = Counter()
        for _ in range(picks):
            s = pick(pool, clock)
            r = Ledger.reserve(s, 200, clock.now())
            Ledger.settle(r, 200, clock.now())
            pipeline.success(s, clock.now() - speeds[s.id], clock.now())
            clock.advance(0.001)
            counts[s.id] += 1
        return counts

    drive(50)
    slow = drive(1000)
    assert 20 <= slow["d1"] <= 120, slow
    speeds["d1"] = 0.001
    recovered = drive(200)
    assert recovered["d1"] >= 70, recovered


def test_p2c_ewma_explores_a_new_deployment_one_request_at_a_time() -> None:
    strat = PeakEwmaStrategy(random.Random(1))
    pool, _, clock = make_pool([{}, {}], strat)
    a, b = pool.states
    pick(pool, clock)
    strat.record(a, True, 0.01, None)
    assert {pick(pool, clock).id for _ in range(10)} == {"d1"}  # no sample, idle: explored
    b.in_flight = 1  # its first request is out: scored with the group's mean (10 ms)
    assert strat.latency(b) == pytest.approx(0.01)
    assert {pick(pool, clock).id for _ in range(20)} == {"d0"}  # 0.01 x 1 vs 0.01 x 2


def test_p2c_ewma_decays_only_while_nothing_is_in_flight() -> None:
    strat = PeakEwmaStrategy(random.Random(1))
    pool, _, clock = make_pool([{}, {}], strat)
    a, b = pool.states
    pick(pool, clock)
    strat.record(b, True, 0.5, None)
    for _ in range(16):  # 8 rounds of 2 picks: b halves every 2 rounds, to 1/16
        pick(pool, clock)
        strat.record(a, True, 0.01, None)
    assert strat.latency(b) == pytest.approx(0.5 / 16)
    b.in_flight = 1
    assert strat.latency(b) == 0.5


def test_p2c_ewma_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="decay"):
        PeakEwmaStrategy(decay=0)
    with pytest.raises(ValueError, match="tolerance"):
        PeakEwmaStrategy(tolerance=-0.1)
    with pytest.raises(ValueError, match="half_life"):
        PeakEwmaStrategy(half_life=0)


def test_failures_count_against_latency_estimates() -> None:
    strat = PeakEwmaStrategy(random.Random(1))
    pool, _, clock = make_pool([{}, {}], strat)
    a, b = pool.states
    pick(pool, clock)
    strat.record(a, True, 0.05, None)
    strat.record(b, True, 0.05, None)
    strat.record(a, False, 0.001, None)  # a fast error is not a fast deployment
    assert strat.score(a) > strat.score(b)


def test_least_busy_rejects_bad_exact_limit() -> None:
    with pytest.raises(ValueError, match="exact_limit"):
        LeastBusyStrategy(exact_limit=0)
    assert repr(WeightedStrategy()) == "WeightedStrategy()"


def test_p2c_ewma_shortcut_for_a_tier_of_one_matches_choose() -> None:
    # The pool's shortcut for a tier of one (`choose_alone`) against the full `choose`:
    # the same picks, refusals, estimates, rounds and random draws, so a deployment
    # added later meets the same strategy either way.
    runs = []
    for shortcut in (True, False):
        strat = PeakEwmaStrategy(random.Random(7))
        pool, attempts, clock = make_pool([{"max_concurrency": 1}], strat)
        if not shortcut:
            pool._alone = None
        (s,) = pool.states
        seen = []
        for i in range(40):
            if i % 5 == 4:
                s.in_flight = 1  # at its cap: not eligible
            picked = pool.select(request(), clock.now())
            seen.append(None if picked is None else picked.id)
            s.in_flight = 0
            attempts.success(s, clock.now() - 0.001 * (1 + i % 3), clock.now())
            clock.advance(0.25)
        estimates = (strat._est[s], strat._key[s], strat._at[s])
        runs.append((seen, strat._clock, strat._now, estimates, pool.rng.getstate()))
    assert runs[0] == runs[1]
    assert runs[0][0].count(None) == 8
