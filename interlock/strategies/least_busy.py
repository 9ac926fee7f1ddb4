"""Fewest requests in flight."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from interlock.strategies.candidates import Candidates

if TYPE_CHECKING:
    from collections.abc import Sequence

    from interlock.records.state import DeploymentState
    from interlock.types import Request

__all__ = ["LeastBusyStrategy"]


class LeastBusyStrategy:
    """The eligible deployment with the fewest requests in flight; ties by weight.

    Ties are broken at random in proportion to each deployment's `weight` (the
    share `weighted` uses), so at low concurrency, where every deployment is idle
    and they all tie, traffic follows the weights instead of piling onto one.

    Tiers of up to `exact_limit` deployments are compared in full (O(n), n small).
    Larger tiers use power-of-two-choices: one eligible deployment drawn by weight
    and one drawn uniformly; the second wins only when it has fewer in flight. That
    is O(1) per pick and keeps the maximum load within O(log log n) of the mean
    (Mitzenmacher), without every router herding onto the one idlest deployment.
    """

    __slots__ = ("_rng", "exact_limit")
    name = "least-busy"
    lazy_candidates = True

    def __init__(self, rng: random.Random | None = None, *, exact_limit: int = 8) -> None:
        if exact_limit < 1:
            raise ValueError(f"LeastBusyStrategy: exact_limit must be >= 1, got {exact_limit}")
        self._rng = rng or random.Random()
        self.exact_limit = exact_limit

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        tier = candidates.tier
        if tier.n <= self.exact_limit:
            # The least busy of the whole tier, if eligible, is the least busy eligible
            # one; drawing among all ties, then among eligible ties when the draw is
            # out, keeps the tie-break proportional to weight over the eligible ties.
            s = _least_busy(tier.states, self._rng)
            if candidates.ok(s):
                return s
            return _least_busy(candidates.require(), self._rng)
        a, b = candidates.weighted_pair()
        # Ties go to the first draw, the one drawn by weight.
        return a if b is None or a.in_flight <= b.in_flight else b

    def __repr__(self) -> str:
        return "LeastBusyStrategy()"


def _least_busy(states: Sequence[DeploymentState], rng: random.Random) -> DeploymentState:
    """The deployment with the fewest in flight, ties at random in proportion to weight
    (weighted reservoir sampling, one pass). `states` is not empty."""
    rnd = rng.random
    best = states[0]
    least = best.in_flight
    total = best.weight
    for i in range(1, len(states)):
        s = states[i]
        f = s.in_flight
        if f < least:
            best, least, total = s, f, s.weight
        elif f == least:
            w = s.weight
            total += w
            if rnd() * total < w:
                best = s
    return best
