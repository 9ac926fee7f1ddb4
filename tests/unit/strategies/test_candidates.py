"""`Candidates.ok` writes `Ledger.has_headroom` out for speed: the two must agree; and
the draws written out for speed return only eligible deployments."""

from __future__ import annotations

import random

from interlock import Budget
from interlock.limits.ledger import Ledger
from interlock.limits.spend import BudgetCounter
from interlock.records.state import is_available
from interlock.strategies.candidates import Candidates, NoEligible
from tests.unit.strategy_helpers import make_pool, request

SEED = 7
CASES = 500


def test_ok_agrees_with_health_exclusion_and_has_headroom() -> None:
    """Random states over every limit `has_headroom` reads (concurrency cap, shared
    block, rpm and tpm windows near their limits, context window, budgets), with
    cooling and excluded deployments mixed in: `ok` must give the same verdict as
    ``is_available and not excluded and Ledger.has_headroom`` every time."""
    rng = random.Random(SEED)
    specs = []
    for _ in range(40):
        spec: dict[str, object] = {}
        if rng.random() < 0.5:
            spec["max_concurrency"] = rng.randint(1, 3)
        if rng.random() < 0.6:
            spec["rpm"] = rng.randint(1, 5)
        if rng.random() < 0.6:
            spec["tpm"] = rng.randint(100, 2_000)
        if rng.random() < 0.3:
            spec["context_window"] = rng.randint(100, 1_000)
        specs.append(spec)
    pool, _, clock = make_pool(specs, "weighted", seed=SEED)
    states = pool.states
    for s in rng.sample(states, 10):
        b = BudgetCounter(Budget(scope="deployment", name=s.id, limit_usd=1.0, period=60), 0.0)
        b.spent = rng.choice((0.5, 1.0))
        s.budgets = (b,)
    agreed = {True: 0, False: 0}
    for _ in range(CASES):
        clock.advance(rng.random() * 3)
        now = clock.now()
        s = rng.choice(states)
        action = rng.random()
        if action < 0.4:
            Ledger.reserve(s, rng.randint(1, 400), now)
        elif action < 0.5:
            s.in_flight = 0
        elif action < 0.6:
            s.cooldown_until = now + rng.choice((-1.0, 5.0))
        elif action < 0.7:
            s.blocked_until = now + rng.choice((-1.0, 2.0))
        tokens = rng.randint(1, 800)
        exclude = set(rng.sample(states, 3))
        req = request(est_input_tokens=tokens // 2, est_output_tokens=tokens - tokens // 2)
        tier = pool._tiers_for(req.tags)[0]
        view = Candidates(tier, req, now, exclude, pool.rng)
        for t in states:
            expected = (
                is_available(t, now)
                and t not in exclude
                and Ledger.has_headroom(t, req.est_input_tokens + req.est_output_tokens, now)
            )
            assert view.ok(t) is expected, (t, now)
            agreed[expected] += 1
    # Both verdicts are common, so the comparison exercised every branch.
    assert min(agreed.values()) > CASES


def test_weighted_and_weighted_pair_draw_in_proportion_to_weight() -> None:
    # Weights 1, 2, 3, 4 with d3 cooling: the first draw is proportional to weight
    # over the eligible three (1/6, 2/6, 3/6); the second is another eligible one.
    # Seed 7; 12,000 draws each; +-2 points (binomial sd < 0.5).
    pool, _, clock = make_pool([{"weight": float(w)} for w in (1, 2, 3, 4)], "weighted", seed=7)
    pool.states[3].cooldown_until = float("inf")
    req = request()
    tier = pool._tiers_for(req.tags)[0]
    view = Candidates(tier, req, clock.now(), (), pool.rng)
    firsts: dict[str, int] = {}
    singles: dict[str, int] = {}
    for _ in range(12_000):
        view.reset(tier, req, clock.now(), ())
        a, b = view.weighted_pair()
        assert b is not None
        assert b is not a
        assert b.id != "d3"
        firsts[a.id] = firsts.get(a.id, 0) + 1
        view.reset(tier, req, clock.now(), ())
        s = view.weighted()
        singles[s.id] = singles.get(s.id, 0) + 1
    for counts in (firsts, singles):
        assert "d3" not in counts
        for i, share in enumerate((1 / 6, 2 / 6, 3 / 6)):
            assert abs(counts[f"d{i}"] / 12_000 - share) <= 0.02, counts


def test_draws_return_only_eligible_deployments_and_none_only_when_there_is_none() -> None:
    # `probe`, `another` and `weighted` make their first draw in their own frame and
    # probe further only after a rejection: over tiers of 1 to 40 with random subsets
    # cooling or excluded (none, some, all), every answer is eligible, and "none"
    # (None or NoEligible) comes exactly when nothing (else) is eligible.
    rng = random.Random(SEED)
    for n in (1, 2, 3, 5, 40):
        weights = [{"weight": float(1 + i % 3)} for i in range(n)]
        pool, _, clock = make_pool(weights, "weighted", seed=SEED)
        req = request()
        tier = pool._tiers_for(req.tags)[0]
        view = Candidates(tier, req, clock.now(), (), pool.rng)
        states = tier.states
        for _ in range(CASES):
            out = rng.random()  # share of the tier that is out: 0, some or all
            out = 0.0 if out < 0.2 else 1.0 if out > 0.8 else out
            for s in states:
                s.cooldown_until = float("inf") if rng.random() < out else 0.0
            excluded = {s for s in states if rng.random() < 0.1}
            eligible = {s for s in states if is_available(s, clock.now()) and s not in excluded}
            view.reset(tier, req, clock.now(), excluded)
            first = view.probe()
            assert (first is None) == (not eligible)
            assert first is None or first in eligible
            mine = rng.choice(states)
            view.reset(tier, req, clock.now(), excluded)
            other = view.another(mine)
            assert (other is None) == (not (eligible - {mine}))
            assert other is None or (other in eligible and other is not mine)
            view.reset(tier, req, clock.now(), excluded)
            try:
                drawn = view.weighted()
            except NoEligible:
                assert not eligible
            else:
                assert drawn in eligible
