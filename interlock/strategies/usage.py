"""Most rate-limit headroom left."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from interlock.strategies.candidates import Candidates

if TYPE_CHECKING:
    from collections.abc import Sequence

    from interlock.records.state import DeploymentState
    from interlock.types import Request

__all__ = ["UsageStrategy", "headroom_share"]

_INF = float("inf")


def headroom_share(s: DeploymentState, now: float) -> float:
    """The smaller of ``(rpm - used) / rpm`` and ``(tpm - used) / tpm`` over the last
    minute; 1.0 for a deployment without rate limits. The limits are the effective
    ones (scaled down while a shared ledger is unreachable)."""
    w = s.rate_window
    if w is None:
        return 1.0
    requests, tokens = w.totals(now)
    share = 1.0
    lim = s.rpm_limit
    if lim:
        share = (lim - requests) / lim
    lim = s.tpm_limit
    if lim:
        t = (lim - tokens) / lim
        if t < share:
            share = t
    return share


class UsageStrategy:
    """The eligible deployment with the largest share of its RPM/TPM limits unused.

    score(d) = min((rpm − rpm_used) / rpm, (tpm − tpm_used) / tpm), higher wins,
    ties at random; limits a deployment does not set count as fully free. It
    spreads load in proportion to capacity and steers away from a deployment before
    it hits its provider's 429s. Tiers above `exact_limit` compare two random
    eligible deployments (power of two choices), O(1).
    """

    __slots__ = ("_rng", "exact_limit")
    name = "usage"
    lazy_candidates = True

    def __init__(self, rng: random.Random | None = None, *, exact_limit: int = 8) -> None:
        if exact_limit < 1:
            raise ValueError(f"UsageStrategy: exact_limit must be >= 1, got {exact_limit}")
        self._rng = rng or random.Random()
        self.exact_limit = exact_limit

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        now = candidates.now
        states = candidates.tier.states
        if len(states) <= self.exact_limit:
            # The roomiest of the whole tier, if eligible, is the roomiest eligible one
            # (ties stay uniform: see LeastBusyStrategy).
            s = _roomiest(states, now, self._rng)
            if candidates.ok(s):
                return s
            return _roomiest(candidates.require(), now, self._rng)
        a, b = candidates.pair()
        if b is None:
            return a
        ha = headroom_share(a, now)
        hb = headroom_share(b, now)
        if ha == hb:
            return a if self._rng.random() < 0.5 else b
        return a if ha > hb else b

    def __repr__(self) -> str:
        return "UsageStrategy()"


def _roomiest(states: Sequence[DeploymentState], now: float, rng: random.Random) -> DeploymentState:
    """The deployment with the largest `headroom_share`, ties uniformly at random
    (reservoir sampling, one pass; the share is computed inline, without two calls
    per deployment). `states` is not empty."""
    rnd = rng.random
    best = states[0]
    best_h = -_INF  # below any share (finite): the first state takes the lead
    ties = 0
    for s in states:
        h = 1.0
        w = s.rate_window
        if w is not None:
            if now >= w.edge:
                w.advance(now)
            lim = s.rpm_limit
            if lim:
                h = (lim - w.requests) / lim
            lim = s.tpm_limit
            if lim:
                t = (lim - w.tokens) / lim
                if t < h:
                    h = t
        if h > best_h:
            best, best_h, ties = s, h, 1
        elif h == best_h:
            ties += 1
            if rnd() * ties < 1.0:
                best = s
    return best
