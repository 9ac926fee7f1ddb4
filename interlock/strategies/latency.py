"""Lowest latency: per output token for plain calls, to first token for streams."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from interlock.strategies.candidates import Candidates

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState
    from interlock.types import Request

__all__ = ["LatencyStrategy"]

_UNKNOWN = float("inf")  # no sample yet (and a probe in flight): never "near the best"

_Table = tuple[dict["DeploymentState", float], dict["DeploymentState", float]]
"""Estimates of one kind (plain or stream): state -> estimate, state -> time of the
latest sample."""


class LatencyStrategy:
    """The eligible deployment with the lowest recent latency.

    Two estimates per deployment, each an EWMA: seconds per output token for plain
    requests (the attempt's latency divided by the completion tokens the provider
    reported; the plain latency for embeddings and `call`), and seconds to the first
    chunk for streams. A request is judged by the estimate of its kind.

    - Update: ``e ← e + a·(x − e)`` with ``a = 1 − (1 − alpha)·2^(−age/half_life)``,
      so a stale estimate is replaced rather than blended. A failed attempt counts as
      twice the current estimate (a fast error is not a fast deployment).
    - Decay: an estimate is read as ``e·2^(−age/half_life)`` where age is the time
      since its last sample, so a deployment that lost all traffic looks better and
      better until it gets a request again: a recovered deployment wins traffic back,
      a still-slow one is measured again and drops back.
    - Choice: best = the lowest estimate; pick at random among the deployments
      within ``(1 + buffer)·best`` (buffer=0: the best, ties at random).
    - Exploration: an eligible deployment with no sample yet and nothing in flight is
      picked first (one probe at a time), so a new deployment is never starved.

    Tiers of up to `exact_limit` deployments are compared in full. Larger tiers
    compare the group's best-known deployment (the leader) with one random eligible
    deployment, or two random ones while the leader is not eligible: O(1), and only
    the random one is a new memory location (the leader is read on every pick).
    Time is the clock reading of the latest pick (`Candidates.now`).
    """

    __slots__ = (
        "_leaders",
        "_now",
        "_plain",
        "_rng",
        "_stream",
        "alpha",
        "buffer",
        "exact_limit",
        "half_life",
    )
    name = "latency"
    lazy_candidates = True

    def __init__(
        self,
        rng: random.Random | None = None,
        *,
        buffer: float = 0.0,
        alpha: float = 0.3,
        half_life: float = 30.0,
        exact_limit: int = 8,
    ) -> None:
        if not buffer >= 0:
            raise ValueError(f"LatencyStrategy: buffer must be >= 0, got {buffer!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"LatencyStrategy: alpha must be in (0, 1], got {alpha!r}")
        if not half_life > 0:
            raise ValueError(f"LatencyStrategy: half_life must be > 0, got {half_life!r}")
        if exact_limit < 1:
            raise ValueError(f"LatencyStrategy: exact_limit must be >= 1, got {exact_limit}")
        self._rng = rng or random.Random()
        self.buffer = float(buffer)
        self.alpha = float(alpha)
        self.half_life = float(half_life)
        self.exact_limit = exact_limit
        # Per kind: state -> estimate, and state -> time of its latest sample. Flat
        # dicts of floats, so reading a candidate's estimate is one lookup and one
        # float (in a pool of 10,000 each object dereferenced is likely a cache miss).
        self._plain: _Table = ({}, {})
        self._stream: _Table = ({}, {})
        # Per kind (plain, stream): group -> the deployment with the lowest estimate.
        self._leaders: tuple[dict[str, DeploymentState], dict[str, DeploymentState]] = ({}, {})
        self._now = float("-inf")

    def estimate(self, state: DeploymentState, stream: bool = False) -> float | None:
        """The decayed estimate for `state` (None before its first sample)."""
        est, at = self._stream if stream else self._plain
        e = est.get(state)
        return None if e is None else self._read(e, at[state], self._now)

    def _read(self, e: float, then: float, now: float) -> float:
        age = now - then
        return e if age <= 0 else e * 0.5 ** (age / self.half_life)

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        now = candidates.now
        if now > self._now:
            self._now = now
        stream = request.stream
        table = self._stream if stream else self._plain
        if candidates.tier.n <= self.exact_limit:
            if self.buffer == 0.0:
                # With no buffer the pick over the whole tier, when eligible, is the
                # pick over the eligible ones (ties stay uniform, as in least-busy).
                s = self._pick(candidates.tier.states, table, now)
                if candidates.ok(s):
                    return s
            return self._pick(candidates.require(), table, now)
        tier = candidates.tier
        lead = self._leaders[stream].get(tier.states[0].group)
        if lead is not None and lead in tier.members and candidates.ok(lead):
            other = candidates.another(lead)
            return lead if other is None else self._pick((lead, other), table, now)
        a, b = candidates.pair()
        return a if b is None else self._pick((a, b), table, now)

    def _pick(
        self,
        pool: Sequence[DeploymentState],
        table: _Table,
        now: float,
    ) -> DeploymentState:
        rnd = self._rng.random
        half_life = self.half_life
        exact = self.buffer == 0.0
        best = _UNKNOWN
        pick = pool[0]
        n_best = 0  # ties at `best` seen so far (buffer 0: reservoir over them)
        fresh: DeploymentState | None = None
        n_fresh = 0
        values: list[float] = []
        est, at = table
        for s in pool:
            e = est.get(s)
            if e is None:
                if s.in_flight == 0:
                    n_fresh += 1
                    if rnd() * n_fresh < 1.0:
                        fresh = s
                if not exact:
                    values.append(_UNKNOWN)
                continue
            age = now - at[s]
            v = e if age <= 0 else e * 0.5 ** (age / half_life)
            if exact:
                if v < best:
                    best, pick, n_best = v, s, 1
                elif v == best:
                    n_best += 1
                    if rnd() * n_best < 1.0:
                        pick = s
            else:
                values.append(v)
                if v < best:
                    best = v
        if fresh is not None:
            return fresh
        if best == _UNKNOWN:
            return pool[int(rnd() * len(pool))]
        if exact:
            return pick
        limit = best * (1.0 + self.buffer)
        n_near = 0
        for s, v in zip(pool, values, strict=True):
            if v <= limit:
                n_near += 1
                if rnd() * n_near < 1.0:
                    pick = s
        return pick

    def record(self, state: DeploymentState, ok: bool, latency: float, ttft: float | None) -> None:
        """Feed one attempt's outcome (called by the router after every attempt)."""
        now = self._now
        if ttft is not None:
            self._update(self._stream, state, ttft, ok, now, True)
            return
        if not ok:
            # Unknown kind: penalize whichever estimates exist.
            for stream, table in ((False, self._plain), (True, self._stream)):
                if state in table[0]:
                    self._update(table, state, latency, False, now, stream)
            if state not in self._plain[0]:
                self._update(self._plain, state, latency, False, now, False)
            return
        tokens = state.last_output_tokens
        self._update(
            self._plain, state, latency / tokens if tokens > 0 else latency, ok, now, False
        )

    def _update(
        self,
        table: _Table,
        state: DeploymentState,
        x: float,
        ok: bool,
        now: float,
        stream: bool,
    ) -> None:
        est, at = table
        e = est.get(state)
        if e is None:
            e = est[state] = x if ok else 2.0 * x
            then = at[state] = now
        else:
            then = at[state]
            if not ok:
                x = 2.0 * max(x, self._read(e, then, now))
            age = now - then
            keep = 1.0 - self.alpha
            if age > 0:
                keep *= 0.5 ** (age / self.half_life)
            e = est[state] = x + keep * (e - x)
            if now > then:
                then = at[state] = now
        # `state` was just sampled (its age is 0 unless the sample is older than its
        # estimate): it leads if it beats the leader's decayed estimate.
        leaders = self._leaders[stream]
        group = state.group
        lead = leaders.get(group)
        if lead is None or lead is state:
            leaders[group] = state
            return
        le = est.get(lead)
        if le is None or self._read(e, then, now) < self._read(le, at[lead], now):
            leaders[group] = state

    def __repr__(self) -> str:
        return f"LatencyStrategy(buffer={self.buffer})"
