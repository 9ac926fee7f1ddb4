"""Ejection and recovery: when a deployment leaves rotation and how it comes back.

Synchronous and O(1) per event. Triggers: consecutive failures (per-kind allowances),
failure rate over a window (with a minimum count) and a deployment-scoped 4xx (a bad
key, an unknown model or deployment, an account that cannot pay). The n-th ejection
in a row lasts ``cooldown * n`` (``auth_cooldown * n`` for a deployment-scoped 4xx;
capped); a cooldown is never shortened by a later one. Failure ejections stop at
`max_ejected_share` of a pool. After its cooldown an ejected deployment is half-open:
trial requests, `k` successes close it, a failure re-opens it for longer. A 429 is a
rate signal, not ill health: it cools the deployment for its Retry-After without
opening its circuit, so when that is over the deployment takes its full share at once.
Each cooldown records the error that started it on the state (`DeploymentState.ejected_by`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from interlock.config import HealthPolicy
from interlock.errors import InterlockError
from interlock.failures import TREATMENTS, FailureKind, classify
from interlock.records.state import (
    CLOSED,
    OPEN,
    CircuitState,
    Ejection,
    PoolHealth,
    is_available,
)

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState

__all__ = ["HealthTracker"]

_EWMA_ALPHA = 0.2
_SLOW_START_FLOOR = 0.1
_KIND_INDEX = {k: i for i, k in enumerate(FailureKind)}


class HealthTracker:
    """Applies a `HealthPolicy` to deployment states."""

    __slots__ = ("_allow", "_rate_on", "_rate_window", "policy", "pools", "rng")

    def __init__(self, policy: HealthPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.pools: dict[str, PoolHealth] = {}
        self._rate_on = policy.failure_rate_threshold is not None
        self._rate_window = policy.failure_rate_window
        self._allow: dict[FailureKind, int] = {
            FailureKind(name): n for name, n in policy.allowed_fails_by_kind.items()
        }

    def attach(self, states: Iterable[DeploymentState]) -> None:
        """Give each state a circuit that shares its pool's counts."""
        by_group: dict[str, list[DeploymentState]] = {}
        for s in states:
            by_group.setdefault(s.group, []).append(s)
        p = self.policy
        for group, members in by_group.items():
            pool = PoolHealth(
                len(members),
                max_ejected_share=p.max_ejected_share,
                panic_threshold=p.panic_threshold,
                max_trials=p.half_open_max_trials,
            )
            self.pools[group] = pool
            for s in members:
                s.circuit = CircuitState(pool)

    is_available = staticmethod(is_available)

    # --- attempts -------------------------------------------------------------------

    @staticmethod
    def begin_attempt(s: DeploymentState, now: float) -> bool:
        """Called when an attempt is sent; True if it is a half-open trial (then call
        `end_trial` when it ends, however it ends)."""
        if s.circuit_mode == CLOSED or s.cooldown_until > now:
            return False
        s.circuit.trials += 1
        return True

    @staticmethod
    def end_trial(s: DeploymentState) -> None:
        c = s.circuit
        if c.trials > 0:
            c.trials -= 1

    def admit(self, s: DeploymentState, now: float) -> bool:
        """Slow start: whether a recovered deployment takes this pick (its share ramps
        from 10% to 100% over `slow_start` seconds after it closed)."""
        ramp = self.policy.slow_start
        if ramp <= 0:
            return True
        elapsed = now - s.circuit.closed_at
        if elapsed >= ramp:
            return True
        return self.rng.random() < max(_SLOW_START_FLOOR, elapsed / ramp)

    # --- outcomes -------------------------------------------------------------------

    def success(self, s: DeploymentState, latency: float, now: float) -> None:
        s.successes += 1
        s.consecutive_failures = 0
        c = s.circuit
        if c.kind_fails:
            c.kind_fails.clear()
        prev = s.latency_ewma
        s.latency_ewma = latency if prev is None else prev + _EWMA_ALPHA * (latency - prev)
        if self._rate_on:
            if now - c.bucket_start >= self._rate_window:
                self._roll(c, now)
            c.cur_ok += 1
        if s.circuit_mode == OPEN and s.cooldown_until <= now:
            c.trial_successes += 1
            if c.trial_successes >= self.policy.half_open_successes:
                self._close(s, now)

    def failure(self, s: DeploymentState, error: InterlockError, now: float) -> float:
        """Count `error` against `s`; returns the cooldown it started (0 if none)."""
        kind = classify(error)
        t = TREATMENTS[kind]
        if not t.counts_against_health:
            return 0.0
        s.failures += 1
        p = self.policy
        c = s.circuit
        cooling = s.cooldown_until > now
        if kind is FailureKind.RATE_LIMITED:
            ra = error.retry_after
            seconds = p.rate_limit_cooldown if ra is None else min(max(ra, 0.0), p.max_retry_after)
            return self._rate_limited(s, now, seconds, error, kind)
        if kind is FailureKind.BAD_CREDENTIALS or kind is FailureKind.UNUSABLE:
            return self._take_out(s, error, kind, now)
        if cooling:
            # A late answer to a request sent before the ejection: already handled.
            return 0.0
        trigger = s.circuit_mode == OPEN  # a failed half-open trial re-opens at once
        allowance = self._allow.get(kind)
        if allowance is None:
            s.consecutive_failures += 1
            trigger = trigger or s.consecutive_failures >= p.allowed_fails
        else:
            i = _KIND_INDEX[kind]
            n = c.kind_fails[i] = c.kind_fails.get(i, 0) + 1
            trigger = trigger or n >= allowance
        if p.failure_rate_threshold is not None:
            self._roll(c, now)
            c.cur_fail += 1
            trigger = trigger or self._rate_exceeded(c, now, p.failure_rate_threshold)
        if not trigger:
            return 0.0
        if s.circuit_mode == CLOSED and c.pool.cooling_now(now) >= c.pool.max_ejected:
            return 0.0  # the ejection cap: this deployment stays in rotation
        if s.circuit_mode == CLOSED and now - c.closed_at > p.cooldown_max:
            c.streak = 0
        c.streak += 1
        return self._eject(
            s, now, min(p.cooldown * c.streak, p.cooldown_max), error, kind, hard=False
        )

    def probe_success(self, s: DeploymentState, now: float) -> None:
        """An active probe got an answer: end a failure ejection early (never a 429's
        or bad key's cooldown) and count the probe as a trial success."""
        c = s.circuit
        if s.circuit_mode != OPEN or c.hard_until > now:
            return
        if s.cooldown_until > now:
            s.cooldown_until = now
            c.pool.cooling_ended(s)
        c.trial_successes += 1
        if c.trial_successes >= self.policy.half_open_successes:
            self._close(s, now)

    # --- transitions ----------------------------------------------------------------

    def _take_out(
        self, s: DeploymentState, error: InterlockError, kind: FailureKind, now: float
    ) -> float:
        """A deployment-scoped 4xx (bad key, unknown model or deployment, an account that
        cannot pay): out of rotation at once, even past the ejection cap and in panic
        mode, for `auth_cooldown`; the n-th ejection in a row lasts n times as long, up
        to ``max(cooldown_max, auth_cooldown)``."""
        p = self.policy
        c = s.circuit
        if c.hard_until > now:
            # Already out on the provider's word (a late answer to an earlier send).
            return 0.0
        if s.circuit_mode == CLOSED and now - c.closed_at > p.cooldown_max:
            c.streak = 0
        c.streak += 1
        seconds = min(p.auth_cooldown * c.streak, max(p.cooldown_max, p.auth_cooldown))
        return self._eject(s, now, seconds, error, kind, hard=True)

    def _eject(
        self,
        s: DeploymentState,
        now: float,
        seconds: float,
        error: InterlockError,
        kind: FailureKind,
        *,
        hard: bool,
    ) -> float:
        if seconds <= 0:
            return 0.0
        c = s.circuit
        if s.circuit_mode == CLOSED:
            s.circuit_mode = OPEN
            c.pool.changed(+1)
        s.ejections += 1
        until = now + seconds
        # A re-cooldown never shortens one that is running.
        if until > s.cooldown_until:
            s.cooldown_until = until
            c.pool.cooling_started(s)
            s.ejected_by = Ejection(type(error).__name__, error.status_code, kind, now, until)
        if hard and until > c.hard_until:
            c.hard_until = until
        c.trial_successes = 0
        s.consecutive_failures = 0
        c.kind_fails.clear()
        c.cur_ok = c.cur_fail = c.prev_ok = c.prev_fail = 0
        return seconds

    @staticmethod
    def _rate_limited(
        s: DeploymentState, now: float, seconds: float, error: InterlockError, kind: FailureKind
    ) -> float:
        """A 429: cool `s` for `seconds`, binding even in panic mode, without opening
        its circuit. A rate limit is not ill health: when the cooldown is over `s`
        takes its full share at once (no half-open trials, no slow start), and its
        failure counts and trial state are left as they were."""
        if seconds <= 0:
            return 0.0
        c = s.circuit
        s.ejections += 1
        until = now + seconds
        # A re-cooldown never shortens one that is running.
        if until > s.cooldown_until:
            s.cooldown_until = until
            c.pool.cooling_started(s)
            # Errors and statistics say why it is cooling, as for an ejection.
            s.ejected_by = Ejection(type(error).__name__, error.status_code, kind, now, until)
        if until > c.hard_until:
            c.hard_until = until
        return seconds

    @staticmethod
    def _close(s: DeploymentState, now: float) -> None:
        c = s.circuit
        s.circuit_mode = CLOSED
        c.pool.changed(-1)
        c.closed_at = now
        c.trial_successes = 0
        s.consecutive_failures = 0

    def _roll(self, c: CircuitState, now: float) -> None:
        w = self.policy.failure_rate_window
        age = now - c.bucket_start
        if age >= w:
            if age >= 2 * w:
                c.prev_ok = c.prev_fail = 0
            else:
                c.prev_ok, c.prev_fail = c.cur_ok, c.cur_fail
            c.cur_ok = c.cur_fail = 0
            c.bucket_start = now

    def _rate_exceeded(self, c: CircuitState, now: float, threshold: float) -> bool:
        w = self.policy.failure_rate_window
        keep = max(0.0, 1.0 - (now - c.bucket_start) / w)
        fails = c.cur_fail + c.prev_fail * keep
        total = fails + c.cur_ok + c.prev_ok * keep
        return total >= self.policy.failure_rate_min_requests and fails >= threshold * total

    def __repr__(self) -> str:
        return f"<HealthTracker pools={len(self.pools)}>"
