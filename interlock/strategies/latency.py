"""Lowest latency: per output token for plain calls, to first token for streams."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from interlock.strategies.candidates import Candidates

if TYPE_CHECKING:
    from interlock.router.state import DeploymentState
    from interlock.types import Request

__all__ = ["LatencyStrategy"]

_UNKNOWN = float("inf")  # no sample yet (and a probe in flight): never "near the best"


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

    Tiers of up to `exact_limit` deployments are compared in full; larger tiers
    compare two random eligible deployments plus the group's best-known one, O(1).
    Time is the clock reading of the latest pick (`Candidates.now`).
    """

    __slots__ = (
        "_leader",
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
        # state -> [estimate, time of last sample]
        self._plain: dict[DeploymentState, list[float]] = {}
        self._stream: dict[DeploymentState, list[float]] = {}
        self._leader: dict[tuple[str, bool], DeploymentState] = {}
        self._now = float("-inf")

    def estimate(self, state: DeploymentState, stream: bool = False) -> float | None:
        """The decayed estimate for `state` (None before its first sample)."""
        e = (self._stream if stream else self._plain).get(state)
        return None if e is None else self._read(e, self._now)

    def _read(self, e: list[float], now: float) -> float:
        age = now - e[1]
        return e[0] if age <= 0 else e[0] * 0.5 ** (age / self.half_life)

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
        a, b = candidates.pair()
        pool = [a] if b is None else [a, b]
        lead = self._leader.get((a.group, stream))
        if lead is not None and lead not in pool and lead in candidates:
            pool.append(lead)
        return self._pick(pool, table, now)

    def _pick(
        self,
        pool: Sequence[DeploymentState],
        table: dict[DeploymentState, list[float]],
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
        for s in pool:
            e = table.get(s)
            if e is None:
                if s.in_flight == 0:
                    n_fresh += 1
                    if rnd() * n_fresh < 1.0:
                        fresh = s
                if not exact:
                    values.append(_UNKNOWN)
                continue
            age = now - e[1]
            v = e[0] if age <= 0 else e[0] * 0.5 ** (age / half_life)
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
                if state in table:
                    self._update(table, state, latency, False, now, stream)
            if state not in self._plain:
                self._update(self._plain, state, latency, False, now, False)
            return
        tokens = state.last_output_tokens
        self._update(
            self._plain, state, latency / tokens if tokens > 0 else latency, ok, now, False
        )

    def _update(
        self,
        table: dict[DeploymentState, list[float]],
        state: DeploymentState,
        x: float,
        ok: bool,
        now: float,
        stream: bool,
    ) -> None:
        e = table.get(state)
        if e is None:
            e = table[state] = [x if ok else 2.0 * x, now]
        else:
            if not ok:
                x = 2.0 * max(x, self._read(e, now))
            age = now - e[1]
            keep = 1.0 - self.alpha
            if age > 0:
                keep *= 0.5 ** (age / self.half_life)
            e[0] = x + keep * (e[0] - x)
            if now > e[1]:
                e[1] = now
        key = (state.group, stream)
        leader = self._leader
        lead = leader.get(key)
        if lead is None or lead is state:
            leader[key] = state
        else:
            le = table.get(lead)
            if le is None or self._read(e, now) < self._read(le, now):
                leader[key] = state

    def __repr__(self) -> str:
        return f"LatencyStrategy(buffer={self.buffer})"
