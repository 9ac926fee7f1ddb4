"""Power of two choices over peak-EWMA latency and load (the default strategy)."""

from __future__ import annotations

import random
from math import exp
from typing import TYPE_CHECKING

from interlock.strategies.candidates import Candidates

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState
    from interlock.types import Request

__all__ = ["PeakEwmaStrategy"]

_EPSILON = 1e-6  # keeps load in the score while no latency is known


class PeakEwmaStrategy:
    """Two random eligible deployments; the one with the lower load-adjusted latency wins.

    score(d) = peak_ewma(d) × (in_flight(d) + 1) / weight(d), lower wins, ties at
    random. The peak EWMA (as in Finagle and Linkerd) jumps straight up to a sample
    above it and decays towards lower samples with weight ``exp(−Δt/decay)``, where
    Δt is the time since the previous sample: one slow response is believed at
    once, recovery is believed over about `decay` seconds. A sample is the time to
    first chunk for streams and the attempt's latency otherwise; a failure counts
    as twice the current estimate. A deployment without samples is scored with the
    running mean of the group, so it is explored without being flooded.

    Two random choices cost O(1) and, unlike "always the best", do not herd every
    concurrent request onto one deployment; the in-flight factor reacts to
    congestion before the latency signal does. A good default for pools whose
    deployments differ in speed or degrade under load.
    """

    __slots__ = ("_at", "_est", "_mean", "_now", "_rng", "decay")
    name = "p2c-ewma"
    lazy_candidates = True

    def __init__(self, rng: random.Random | None = None, *, decay: float = 10.0) -> None:
        if not decay > 0:
            raise ValueError(f"PeakEwmaStrategy: decay must be > 0 seconds, got {decay!r}")
        self._rng = rng or random.Random()
        self.decay = float(decay)
        # state -> peak EWMA, and the time of its latest sample: two flat dicts, so a
        # pick reads one float per candidate (in a pool of 10,000 every dereference is
        # likely a cache miss).
        self._est: dict[DeploymentState, float] = {}
        self._at: dict[DeploymentState, float] = {}
        self._mean: dict[str, float] = {}  # group -> mean of recent samples
        self._now = float("-inf")

    def score(self, s: DeploymentState) -> float:
        """The load-adjusted latency `choose` compares (lower is better)."""
        lat = self._est.get(s)
        if lat is None:
            lat = self._mean.get(s.group, 0.0)
        return (lat + _EPSILON) * (s.in_flight + 1) / s.weight

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        now = candidates.now
        if now > self._now:
            self._now = now
        a, b = candidates.pair()
        if b is None:
            return a
        est = self._est
        la = est.get(a)
        if la is None:
            la = self._mean.get(a.group, 0.0)
        lb = est.get(b)
        if lb is None:
            lb = self._mean.get(b.group, 0.0)
        sa = (la + _EPSILON) * (a.in_flight + 1) / a.weight
        sb = (lb + _EPSILON) * (b.in_flight + 1) / b.weight
        if sa == sb:
            return a if self._rng.random() < 0.5 else b
        return a if sa < sb else b

    def record(self, state: DeploymentState, ok: bool, latency: float, ttft: float | None) -> None:
        """Feed one attempt's outcome (called by the router after every attempt)."""
        x = ttft if ttft is not None else latency
        now = self._now
        est = self._est
        v = est.get(state)
        group = state.group
        mean = self._mean
        if not ok:
            x = 2.0 * max(x, v if v is not None else mean.get(group, x))
        if v is None:
            est[state] = x
            self._at[state] = now
        else:
            at = self._at
            then = at[state]
            if x >= v:
                est[state] = x
            else:
                dt = now - then
                est[state] = x + (v - x) * (exp(-dt / self.decay) if dt > 0 else 1.0)
            if now > then:
                at[state] = now
        m = mean.get(group)
        mean[group] = x if m is None else m + 0.1 * (x - m)

    def __repr__(self) -> str:
        return f"PeakEwmaStrategy(decay={self.decay})"
