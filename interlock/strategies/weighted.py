"""Weighted random choice."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interlock.router.state import DeploymentState
    from interlock.types import Request

__all__ = ["WeightedStrategy"]


class WeightedStrategy:
    """Random choice proportional to each deployment's share.

    The share is `weight` when any deployment of the group sets one (missing weights
    count as 1); otherwise `rpm`, then `tpm`, when any deployment sets those; otherwise
    every deployment counts the same. The pool computes the share once, at start-up.
    """

    __slots__ = ("_rng",)
    name = "weighted"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, candidates: Sequence[DeploymentState], request: Request) -> DeploymentState:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        first = candidates[0].weight
        if all(c.weight == first for c in candidates):
            return candidates[int(self._rng.random() * n)]
        return self._rng.choices(candidates, weights=[c.weight or 1.0 for c in candidates])[0]

    def __repr__(self) -> str:
        return "WeightedStrategy()"
