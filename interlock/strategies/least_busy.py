"""Fewest requests in flight."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from interlock.strategies.candidates import Candidates, pick_min

if TYPE_CHECKING:
    from interlock.router.state import DeploymentState
    from interlock.types import Request

__all__ = ["LeastBusyStrategy"]


def _in_flight(s: DeploymentState) -> float:
    return s.in_flight


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

    def __init__(self, rng: random.Random | None = None, *, exact_limit: int = 16) -> None:
        if exact_limit < 1:
            raise ValueError(f"LeastBusyStrategy: exact_limit must be >= 1, got {exact_limit}")
        self._rng = rng or random.Random()
        self.exact_limit = exact_limit

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        if candidates.tier.n <= self.exact_limit:
            return pick_min(candidates.eligible(), _in_flight, self._rng)
        a = candidates.first
        assert a is not None
        b = candidates.another(a)
        if b is None:
            return a
        fa = a.in_flight
        fb = b.in_flight
        if fa == fb:
            return a if self._rng.random() < 0.5 else b
        return a if fa < fb else b

    def __repr__(self) -> str:
        return "LeastBusyStrategy()"
