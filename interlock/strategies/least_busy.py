"""Fewest requests in flight."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interlock.router.state import DeploymentState
    from interlock.types import Request

__all__ = ["LeastBusyStrategy"]


class LeastBusyStrategy:
    """The candidate with the fewest requests in flight; ties broken at random."""

    __slots__ = ("_rng",)
    name = "least-busy"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, candidates: Sequence[DeploymentState], request: Request) -> DeploymentState:
        best = min(c.in_flight for c in candidates)
        ties = [c for c in candidates if c.in_flight == best]
        return ties[0] if len(ties) == 1 else ties[int(self._rng.random() * len(ties))]

    def __repr__(self) -> str:
        return "LeastBusyStrategy()"
