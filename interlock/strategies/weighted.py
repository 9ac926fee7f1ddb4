"""Weighted random choice."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from interlock.strategies.candidates import Candidates

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState
    from interlock.types import Request

__all__ = ["WeightedStrategy"]


class WeightedStrategy:
    """Random choice proportional to each deployment's share.

    P(d) = share(d) / Σ share over the eligible deployments of the tier. The share
    is `weight` when any deployment of the group sets one (missing weights count as
    1); otherwise `rpm`, then `tpm`, when any deployment sets those; otherwise every
    deployment counts the same. The pool computes shares once, at start-up.

    Cost: O(1) (`Candidates.weighted`). Equal shares reuse the pool's uniform
    eligible probe; unequal ones draw from an alias table built once per tier and
    reject ineligible draws, which leaves the distribution over the eligible ones
    exact. After `PROBES` rejections it draws from the eligible list (O(n), only when
    most of the tier is out).
    """

    __slots__ = ("_rng",)
    name = "weighted"
    lazy_candidates = True

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        return candidates.weighted()

    def __repr__(self) -> str:
        return "WeightedStrategy()"
