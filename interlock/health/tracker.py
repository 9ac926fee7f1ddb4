"""Cooldowns: when a deployment leaves rotation and when it comes back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interlock.config import HealthPolicy
from interlock.errors import InterlockError
from interlock.health.classify import FailureKind, classify

if TYPE_CHECKING:
    from interlock.router.state import DeploymentState

__all__ = ["HealthTracker"]

_EWMA_ALPHA = 0.2


class HealthTracker:
    """Applies a `HealthPolicy` to deployment states. Synchronous, O(1) per event."""

    __slots__ = ("policy",)

    def __init__(self, policy: HealthPolicy) -> None:
        self.policy = policy

    @staticmethod
    def is_available(s: DeploymentState, now: float) -> bool:
        return s.cooldown_until <= now

    @staticmethod
    def record_success(s: DeploymentState, latency: float) -> None:
        s.successes += 1
        s.consecutive_failures = 0
        prev = s.latency_ewma
        s.latency_ewma = latency if prev is None else prev + _EWMA_ALPHA * (latency - prev)

    def record_failure(self, s: DeploymentState, error: InterlockError, now: float) -> float:
        """Count `error` against `s`; returns the cooldown it started (0 if none)."""
        kind = classify(error)
        if kind is FailureKind.CALLER:
            return 0.0
        s.failures += 1
        p = self.policy
        if kind is FailureKind.RATE_LIMITED:
            ra = error.retry_after
            seconds = p.rate_limit_cooldown if ra is None else min(max(ra, 0.0), p.max_retry_after)
        elif kind is FailureKind.BAD_CREDENTIALS:
            seconds = p.auth_cooldown
        else:
            s.consecutive_failures += 1
            if s.consecutive_failures < p.allowed_fails:
                return 0.0
            s.consecutive_failures = 0
            seconds = p.cooldown
        if seconds <= 0:
            return 0.0
        s.ejections += 1
        # A re-cooldown never shortens one that is running.
        s.cooldown_until = max(s.cooldown_until, now + seconds)
        return seconds
