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
    """The eligible deployment with the fewest requests in flight; ties at random.

    Tiers of up to `exact_limit` deployments are compared in full (O(n), n small).
    Larger tiers use power-of-two-choices: two distinct eligible deployments drawn
    uniformly, the less busy one wins (ties at random). That is O(1) per pick and
    keeps the maximum load within O(log log n) of the mean (Mitzenmacher), without
    every router herding onto the one idlest deployment.
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
        if candidates.tier.n <= self.exact_limit:
            # The least busy of the whole tier, if eligible, is the least busy eligible
            # one; drawing among all ties, then among eligible ties when the draw is
            # out, keeps the tie-break uniform over the eligible ties.
            s = _least_busy(candidates.tier.states, self._rng)
            if candidates.ok(s):
                return s
            return _least_busy(candidates.require(), self._rng)
        a, b = candidates.pair()
        if b is None:
            return a
        fa = a.in_flight
        fb = b.in_flight
        if fa == fb:
            return a if self._rng.random() < 0.5 else b
        return a if fa < fb else b

    def __repr__(self) -> str:
        return "LeastBusyStrategy()"


def _least_busy(states: Sequence[DeploymentState], rng: random.Random) -> DeploymentState:
    """The deployment with the fewest in flight, ties uniformly at random (reservoir
    sampling, one pass). `states` is not empty."""
    rnd = rng.random
    best = states[0]
    least = best.in_flight
    ties = 1
    for i in range(1, len(states)):
        s = states[i]
        f = s.in_flight
        if f < least:
            best, least, ties = s, f, 1
        elif f == least:
            ties += 1
            if rnd() * ties < 1.0:
                best = s
    return best
