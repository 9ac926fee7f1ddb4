"""Power of two choices over peak-EWMA latency and load (the default strategy)."""

from __future__ import annotations

import random
from math import exp, log2
from typing import TYPE_CHECKING

from interlock.strategies.candidates import Candidates

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState
    from interlock.types import Request

__all__ = ["PeakEwmaStrategy"]

_EPSILON = 1e-6  # keeps load in the score while no latency is known
_MAX_KEEP = 0.75
"""A sample below the estimate moves it at least a quarter of the way down, however
little time has passed: recovery is believed within a few samples at any request rate."""
_NEG_INF = float("-inf")


class PeakEwmaStrategy:
    """Two eligible deployments, the first drawn by weight; the second wins only when it
    is clearly better.

    cost(d) = latency(d) × (1 + in_flight(d) × w̄ / weight(d)), w̄ the tier's mean
    weight (with equal weights: latency × (in_flight + 1)). The first candidate is
    drawn in proportion to weight, the second uniformly among the other eligible
    ones; the second is taken only when its cost times ``1 + tolerance`` is below the
    first's. Costs within that band count as equal, and between equals the weighted
    draw stands: equal deployments share traffic by weight at any concurrency, and a
    clearly slower or busier one loses the comparisons it is in.

    `latency(d)` is a peak EWMA (as in Finagle and Linkerd): a sample above it
    replaces it at once; a lower sample is blended in with weight
    ``max(1 − exp(−Δt/decay), 1/4)``, Δt the time since the previous sample: one
    slow response is believed at once, recovery over about `decay` seconds or a few
    samples, whichever is sooner. A sample is the time to first chunk for streams
    and the attempt's latency otherwise; a failure counts as twice the current
    estimate. A deployment without samples wins its comparison while nothing is in
    flight to it, and is scored with the running mean of the group while its first
    request is out: it is explored at once, one request at a time, not flooded.

    No starvation: while nothing is in flight to it, a deployment's estimate halves
    every `half_life` rounds without a sample, where its rounds are the picks since
    that sample times its share of the tier's weight (with equal weights, picks ÷
    deployments: the picks it would have had). So a deployment that lost its traffic
    is tried again after a few rounds, one request at a time (with a request in
    flight it is read as is): measured fast, it is back in the band; still slow, it
    drops out again.

    Two random choices cost O(1) and, unlike "always the best", do not herd every
    concurrent request onto one deployment; the in-flight factor reacts to
    congestion before the latency signal does.
    """

    __slots__ = (
        "_at",
        "_band",
        "_clock",
        "_est",
        "_key",
        "_log_band",
        "_mean",
        "_mean_weight",
        "_n",
        "_now",
        "_per_pick",
        "_rng",
        "decay",
        "half_life",
        "tolerance",
    )
    name = "p2c-ewma"
    lazy_candidates = True

    def __init__(
        self,
        rng: random.Random | None = None,
        *,
        decay: float = 10.0,
        tolerance: float = 0.5,
        half_life: float = 2.0,
    ) -> None:
        if not decay > 0:
            raise ValueError(f"PeakEwmaStrategy: decay must be > 0 seconds, got {decay!r}")
        if not tolerance >= 0:
            raise ValueError(f"PeakEwmaStrategy: tolerance must be >= 0, got {tolerance!r}")
        if not half_life > 0:
            raise ValueError(f"PeakEwmaStrategy: half_life must be > 0 rounds, got {half_life!r}")
        self._rng = rng or random.Random()
        self.decay = float(decay)
        self.tolerance = float(tolerance)
        self.half_life = float(half_life)
        self._band = 1.0 + self.tolerance
        self._log_band = log2(self._band)
        # Flat dicts of floats, so reading a candidate is one lookup (in a pool of
        # 10,000 every object dereferenced is likely a cache miss): state -> peak EWMA
        # (read while a request to it is in flight), state -> its key (read while it
        # is idle, see `_clock`), state -> the time of its latest sample.
        self._est: dict[DeploymentState, float] = {}
        self._key: dict[DeploymentState, float] = {}
        self._at: dict[DeploymentState, float] = {}
        self._mean: dict[str, float] = {}  # group -> mean of recent samples
        self._now = float("-inf")
        self._clock = 0.0
        """Halvings of a deployment of mean weight: each pick adds 1 / (n · half_life),
        n its tier's size; a deployment of weight w ages w / w̄ times as fast. Its
        estimate `e`, sampled at `c = w/w̄ · clock`, reads ``e·2^(c − w/w̄ · clock)``
        while idle: ``2^(key − w/w̄ · clock)`` with ``key = log2(e) + c``, so a read
        is one lookup and, between two idle deployments, no power is computed."""
        self._n = 1  # deployments in the tier of the latest pick (the length of a round)
        self._per_pick = 1.0 / self.half_life
        self._mean_weight = 1.0  # of the tier of the latest pick

    def forget(self, s: DeploymentState) -> None:
        """`s` was removed from the router (a runtime change): drop its estimates."""
        self._est.pop(s, None)
        self._key.pop(s, None)
        self._at.pop(s, None)

    def latency(self, s: DeploymentState) -> float:
        """The latency estimate `choose` uses for `s`: its peak EWMA, decayed by its
        rounds since its latest sample while nothing is in flight to it (the group's
        mean before any sample)."""
        if s not in self._est:
            return self._mean.get(s.group, 0.0)
        if s.in_flight:
            return self._est[s]
        return float(2.0 ** (self._key[s] - s.weight / self._mean_weight * self._clock))

    def score(self, s: DeploymentState, mean_weight: float | None = None) -> float:
        """The cost `choose` compares (lower is better); `mean_weight` is the tier's
        mean weight (default: `s`'s own, as in a tier of equal weights)."""
        load = s.in_flight * (mean_weight / s.weight if mean_weight is not None else 1.0)
        return (self.latency(s) + _EPSILON) * (1.0 + load)

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        now = candidates.now
        if now > self._now:
            self._now = now
        tier = candidates.tier
        n = tier.n
        if n != self._n:
            self._n = n
            self._per_pick = 1.0 / (n * self.half_life)
        clock = self._clock = self._clock + self._per_pick
        a, b = candidates.weighted_pair()
        if b is None:
            return a
        fa = a.in_flight
        fb = b.in_flight
        mw = self._mean_weight = tier.mean_weight
        if tier.uniform:
            ra = rb = 1.0  # weight / mean weight
        else:
            ra = a.weight / mw
            rb = b.weight / mw
        if fa == 0:
            ka = self._key.get(a)
            if ka is None:
                return a  # no sample yet, nothing in flight: explore it
            ka -= ra * clock  # log2 of its decayed estimate
            if fb == 0:
                # Both idle (every pick at concurrency 1, most in a large pool): compare
                # the logs, no power to compute.
                kb = self._key.get(b)
                if kb is None:
                    return b
                return b if kb - rb * clock + self._log_band < ka else a
            la = 2.0**ka
        else:
            la = self._est.get(a)
            if la is None:
                la = self._mean.get(a.group, 0.0)
        if fb == 0:
            kb = self._key.get(b)
            if kb is None:
                return b
            lb = 2.0 ** (kb - rb * clock)
        else:
            lb = self._est.get(b)
            if lb is None:
                lb = self._mean.get(b.group, 0.0)
        ca = (la + _EPSILON) * (1.0 + fa / ra)
        cb = (lb + _EPSILON) * (1.0 + fb / rb)
        return b if cb * self._band < ca else a

    def choose_alone(self, candidates: Candidates) -> DeploymentState | None:
        """`choose` for a tier of one deployment, without drawing a pair: the same
        bookkeeping (time, rounds) and the same draw from the router's random numbers
        as `choose`, so estimates age alike and a seeded router picks alike, before
        and after a deployment joins; None where `choose` raises `NoEligible`."""
        now = candidates.now
        if now > self._now:
            self._now = now
        if self._n != 1:
            self._n = 1
            self._per_pick = 1.0 / self.half_life
        self._clock += self._per_pick
        candidates.rng.random()  # the draw `Candidates.pair` makes in a tier of one
        s = candidates.tier.states[0]
        return s if candidates.ok(s) else None

    def record(self, state: DeploymentState, ok: bool, latency: float, ttft: float | None) -> None:
        """Feed one attempt's outcome (called by the router after every attempt)."""
        x = ttft if ttft is not None else latency
        now = self._now
        stamp = state.weight / self._mean_weight * self._clock
        group = state.group
        mean = self._mean
        m = mean.get(group)
        est = self._est
        at = self._at
        if state not in est:
            if not ok:
                x = 2.0 * max(x, m if m is not None else x)
            e = x
            at[state] = now
        else:
            # What `choose` believed of it while idle: decayed by its rounds since its
            # latest sample.
            v = 2.0 ** (self._key[state] - stamp)
            if not ok:
                x = 2.0 * max(x, v)
            if x >= v:
                e = x
            else:
                dt = now - at[state]
                keep = exp(-dt / self.decay) if dt > 0 else 1.0
                e = x + (v - x) * (keep if keep < _MAX_KEEP else _MAX_KEEP)
            if now > at[state]:
                at[state] = now
        est[state] = e
        self._key[state] = (log2(e) if e > 0 else _NEG_INF) + stamp
        mean[group] = x if m is None else m + 0.1 * (x - m)

    def __repr__(self) -> str:
        return (
            f"PeakEwmaStrategy(decay={self.decay}, tolerance={self.tolerance}, "
            f"half_life={self.half_life})"
        )
