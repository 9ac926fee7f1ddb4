"""Lowest latency: per output token for plain calls, to first token for streams."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from math import log2
from typing import TYPE_CHECKING

from interlock.strategies.candidates import Candidates

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState
    from interlock.types import Request

__all__ = ["LatencyStrategy"]

_INF = float("inf")

_Table = tuple[
    dict["DeploymentState", float],
    dict["DeploymentState", float],
    dict[str, "DeploymentState | None"],
]
"""Estimates of one kind (plain or stream): state -> ``log2(e)`` of its estimate `e`;
state -> its key ``log2(e) + c``, `c` the deployment's halvings clock at its latest
sample; group -> its leader, the deployment with the lowest estimate (None before any
sample), kept only for the groups a large tier has been picked from (only large
tiers read it; a small pool pays nothing for it).

A deployment's halvings clock is ``now/half_life + w/w̄ · rounds``, w its weight and
w̄ the tier's mean (a deployment ages with the picks it would have had). An
estimate's decayed value is ``e·2^(c − clock)``, so its log is ``key − clock``: a
read is one lookup and a subtraction, and a pick computes no power."""


class LatencyStrategy:
    """The eligible deployment with the lowest recent latency, or one near it.

    Two estimates per deployment, each an EWMA: seconds per output token for plain
    requests (the attempt's latency divided by the completion tokens the provider
    reported; the plain latency for embeddings and `call`), and seconds to the first
    chunk for streams. A request is judged by the estimate of its kind.

    - Age: the seconds since the estimate's latest sample over `half_life`, plus its
      rounds since then over `stale_half_life`: ``k = Δt/half_life +
      rounds/stale_half_life``. A deployment's rounds are the picks since that sample
      times its share of the tier's weight (with equal weights, picks ÷ deployments:
      the picks it would have had).
    - Update: ``e ← e + a·(x − e)`` with ``a = 1 − (1 − alpha)·2^(−k)``, so a stale
      estimate is replaced rather than blended. A failed attempt counts as twice the
      current estimate (a fast error is not a fast deployment).
    - Decay: while nothing is in flight to it, a deployment's estimate is read as
      ``e·2^(−k)``, so a deployment that lost its traffic looks better and better
      until it gets a request again (then it is read as is until the answer comes,
      so it is tried one request at a time): a recovered deployment wins traffic
      back, a still-slow one is measured again and drops back.
    - Choice: best = the lowest estimate; every deployment within
      ``(1 + buffer)·best`` counts as equal, and the pick among those is random in
      proportion to `weight` (buffer 0: the best, ties by weight).
    - Exploration: an eligible deployment with no sample yet and nothing in flight is
      picked first (one probe at a time), so a new deployment is never starved.

    Tiers of up to `exact_limit` deployments are compared in full. Larger tiers
    draw one eligible deployment by weight and compare it with the group's
    best-known deployment (the leader), or with one random eligible deployment while
    the leader is not eligible; the other wins only when it is outside the band:
    O(1), and only the drawn one is a new memory location (the leader is read on
    every pick). Time is the clock reading of the latest pick (`Candidates.now`).
    """

    __slots__ = (
        "_log_band",
        "_mean_weight",
        "_n",
        "_now",
        "_per_pick",
        "_plain",
        "_rng",
        "_rounds",
        "_stream",
        "alpha",
        "buffer",
        "exact_limit",
        "half_life",
        "stale_half_life",
    )
    name = "latency"
    lazy_candidates = True

    def __init__(
        self,
        rng: random.Random | None = None,
        *,
        buffer: float = 0.5,
        alpha: float = 0.3,
        half_life: float = 30.0,
        stale_half_life: float = 2.0,
        exact_limit: int = 8,
    ) -> None:
        if not buffer >= 0:
            raise ValueError(f"LatencyStrategy: buffer must be >= 0, got {buffer!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"LatencyStrategy: alpha must be in (0, 1], got {alpha!r}")
        if not half_life > 0:
            raise ValueError(f"LatencyStrategy: half_life must be > 0, got {half_life!r}")
        if not stale_half_life > 0:
            raise ValueError(
                f"LatencyStrategy: stale_half_life must be > 0 rounds, got {stale_half_life!r}"
            )
        if exact_limit < 1:
            raise ValueError(f"LatencyStrategy: exact_limit must be >= 1, got {exact_limit}")
        self._rng = rng or random.Random()
        self.buffer = float(buffer)
        self.alpha = float(alpha)
        self.half_life = float(half_life)
        self.stale_half_life = float(stale_half_life)
        self.exact_limit = exact_limit
        self._log_band = log2(1.0 + self.buffer)
        # Per kind: flat dicts of floats (see `_Table`), so reading a candidate is one
        # lookup (in a pool of 10,000 each object dereferenced is likely a cache miss).
        self._plain: _Table = ({}, {}, {})
        self._stream: _Table = ({}, {}, {})
        self._now = 0.0
        self._rounds = 0.0  # each pick adds 1 / (n · stale_half_life)
        self._n = 1  # deployments in the tier of the latest pick (the length of a round)
        self._per_pick = 1.0 / self.stale_half_life
        self._mean_weight = 1.0  # of the tier of the latest pick

    def _log(self, table: _Table, s: DeploymentState) -> float | None:
        """log2 of the estimate `choose` reads for `s` (None before its first sample):
        decayed while nothing is in flight to it."""
        if s.in_flight:
            return table[0].get(s)
        key = table[1].get(s)
        if key is None:
            return None
        # Minus `s`'s halvings clock (see `_Table`), written out: a large tier reads two.
        return key - (self._now / self.half_life + s.weight / self._mean_weight * self._rounds)

    def estimate(self, state: DeploymentState, stream: bool = False) -> float | None:
        """The estimate `choose` reads for `state` now (None before its first sample):
        decayed while nothing is in flight to it."""
        lg = self._log(self._stream if stream else self._plain, state)
        return None if lg is None else float(2.0**lg)

    def forget(self, s: DeploymentState) -> None:
        """`s` was removed from the router (a runtime change): drop its estimates."""
        for lgs, keys, leaders in (self._plain, self._stream):
            lgs.pop(s, None)
            keys.pop(s, None)
            for g in [g for g, lead in leaders.items() if lead is s]:
                del leaders[g]  # its next large pick finds the new leader

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        now = candidates.now
        if now > self._now:
            self._now = now
        tier = candidates.tier
        n = tier.n
        if n != self._n:
            self._n = n
            self._per_pick = 1.0 / (n * self.stale_half_life)
        rounds = self._rounds = self._rounds + self._per_pick
        mean_weight = self._mean_weight = tier.mean_weight
        table = self._stream if request.stream else self._plain
        if n > self.exact_limit:
            return self._sampled(candidates, table)
        # A small tier, in this frame (a call less per pick). One eligible deployment is
        # drawn by weight and kept when it is within the band, which is set by the
        # tier's best (eligible or not); otherwise the pick is drawn by weight among the
        # eligible deployments in the band (`_band`; the two steps together are
        # proportional to weight within the band).
        lgs, keys, _ = table
        a = candidates.weighted()
        t = self._now / self.half_life
        uniform = tier.uniform
        shift = t + rounds
        per_weight = rounds / mean_weight
        inf = best = ga = _INF
        fresh: DeploymentState | None = None
        w_fresh = 0.0
        # Subscripts, not `get`: a method call per read costs more than the rare miss.
        for s in tier.states:
            if s.in_flight:
                try:
                    g = lgs[s]
                except KeyError:
                    g = inf  # no sample yet: not in the band
            else:
                try:
                    g = keys[s] - (shift if uniform else t + s.weight * per_weight)
                except KeyError:
                    # No sample, nothing in flight: explore it (by weight among such).
                    w_fresh += s.weight
                    if self._rng.random() * w_fresh < s.weight:
                        fresh = s
                    continue
            if g < best:
                best = g
            if s is a:
                ga = g
        if fresh is not None:
            if candidates.ok(fresh):
                return fresh
            return self._over_eligible(candidates.require(), table)
        limit = best + self._log_band
        if ga <= limit:
            return a
        return self._band(candidates, table, limit)

    def _sampled(self, candidates: Candidates, table: _Table) -> DeploymentState:
        """The pick over a large tier: a weighted draw against the leader (or a random
        challenger); the other wins only when it is clearly better."""
        a = candidates.weighted()
        ga = self._log(table, a)
        if ga is None:
            if a.in_flight == 0:
                return a  # explore: one probe at a time
            ga = _INF
        tier = candidates.tier
        leaders = table[2]
        group = tier.states[0].group
        try:
            lead = leaders[group]
        except KeyError:  # the group's first large pick: find its leader once, O(n)
            lead = leaders[group] = self._best_known(table, group)
        if lead is None or lead is a or lead not in tier.members or not candidates.ok(lead):
            lead = candidates.another(a)
            if lead is None:
                return a
        gl = self._log(table, lead)
        if gl is None:
            return lead if lead.in_flight == 0 else a
        return lead if gl + self._log_band < ga else a

    def _best_known(self, table: _Table, group: str) -> DeploymentState | None:
        """The deployment of `group` with the lowest estimate now (None: none has one);
        from then on `_update` keeps it current."""
        best: DeploymentState | None = None
        low = _INF
        for s in table[0]:
            if s.group == group:
                g = self._log(table, s)
                if g is not None and (best is None or g < low):
                    best, low = s, g
        return best

    def _band(self, candidates: Candidates, table: _Table, limit: float) -> DeploymentState:
        """A draw by weight among the eligible deployments of a small tier whose log
        estimate is at most `limit`, or, when none is eligible, within the band of
        the best eligible one."""
        tier = candidates.tier
        lgs, keys, _ = table
        t = self._now / self.half_life
        mw = self._mean_weight
        rounds = self._rounds
        near = []
        for s in tier.states:
            # `_log(table, s)` written out (it would be a call per deployment).
            if s.in_flight:
                g = lgs.get(s)
            else:
                g = keys.get(s)
                if g is not None:
                    g -= t + s.weight / mw * rounds
            if g is not None and g <= limit:
                near.append(s)
        uniform = tier.uniform
        rnd = self._rng.random
        while near:
            s = _draw(near, uniform, rnd)
            if candidates.ok(s):
                return s
            near.remove(s)
        return self._over_eligible(candidates.require(), table)

    def _over_eligible(self, eligible: Sequence[DeploymentState], table: _Table) -> DeploymentState:
        """The small-tier rule over the eligible list (the tier's best or its new
        deployment is not eligible)."""
        rnd = self._rng.random
        values: list[float] = []
        fresh: list[DeploymentState] = []
        for s in eligible:
            g = self._log(table, s)
            if g is None and s.in_flight == 0:
                fresh.append(s)
            values.append(_INF if g is None else g)
        if fresh:
            return _draw(fresh, False, rnd)
        best = min(values)
        if best == _INF:
            return _draw(eligible, False, rnd)
        limit = best + self._log_band
        return _draw([s for s, g in zip(eligible, values, strict=True) if g <= limit], False, rnd)

    def record(self, state: DeploymentState, ok: bool, latency: float, ttft: float | None) -> None:
        """Feed one attempt's outcome (called by the router after every attempt)."""
        if ttft is not None:
            self._update(self._stream, state, ttft, ok)
        elif ok:
            tokens = state.last_output_tokens
            self._update(self._plain, state, latency / tokens if tokens > 0 else latency, True)
        else:
            # Unknown kind: penalize whichever estimates exist.
            for table in (self._plain, self._stream):
                if state in table[0]:
                    self._update(table, state, latency, False)
            if state not in self._plain[0]:
                self._update(self._plain, state, latency, False)

    def _update(self, table: _Table, state: DeploymentState, x: float, ok: bool) -> None:
        lgs, keys, leaders = table
        rounds = self._rounds
        t = self._now / self.half_life
        mw = self._mean_weight
        stamp = t + (rounds if state.weight == mw else state.weight / mw * rounds)
        lg = lgs.get(state)
        if lg is None:
            e = x if ok else 2.0 * x
        else:
            e = 2.0**lg
            age = stamp - (keys[state] - lg)
            fade = 0.5**age if age > 0 else 1.0
            if not ok:
                x = 2.0 * max(x, e * fade)
            e = x + (1.0 - self.alpha) * fade * (e - x)
            if age < 0:
                stamp -= age  # a sample older than the estimate: keep the estimate's age
        lg = lgs[state] = log2(e) if e > 0 else -_INF
        keys[state] = lg + stamp
        # `state` was just sampled: it leads if it beats the leader's decayed estimate
        # (for a group whose leader is kept, see `_Table`).
        group = state.group
        if group not in leaders:
            return
        lead = leaders[group]
        if lead is state:
            return
        if lead is None:
            leaders[group] = state
            return
        if lead.in_flight:
            gl = lgs.get(lead)
        else:
            gl = keys.get(lead)
            if gl is not None:
                gl -= t + (rounds if lead.weight == mw else lead.weight / mw * rounds)
        if gl is None or lg < gl:
            leaders[group] = state

    def __repr__(self) -> str:
        return f"LatencyStrategy(buffer={self.buffer}, stale_half_life={self.stale_half_life})"


def _draw(
    near: Sequence[DeploymentState], uniform: bool, rnd: Callable[[], float]
) -> DeploymentState:
    """One of `near` (not empty) at random in proportion to weight (`uniform`: the
    weights are known to be equal)."""
    n = len(near)
    if n == 1:
        return near[0]
    if uniform:
        return near[int(rnd() * n)]
    total = 0.0
    for s in near:
        total += s.weight
    u = rnd() * total
    for s in near:
        u -= s.weight
        if u < 0:
            return s
    return near[-1]
