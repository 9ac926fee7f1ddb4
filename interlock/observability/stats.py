"""Point-in-time statistics: frozen snapshots, safe to keep and compare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from interlock.cache.stats import CacheStatistics
from interlock.records.state import Ejection, health_state

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState

__all__ = [
    "DeploymentStatistics",
    "HealthState",
    "RouterStatistics",
    "deployment_statistics",
    "record_ttft",
]

HealthState = Literal["healthy", "cooling", "half_open"]

_TTFT_ALPHA = 0.2


def record_ttft(s: DeploymentState, ttft: float) -> None:
    """Fold one stream's time to first chunk into the deployment's estimate."""
    prev = s.ttft_ewma
    s.ttft_ewma = ttft if prev is None else prev + _TTFT_ALPHA * (ttft - prev)


@dataclass(frozen=True, slots=True)
class DeploymentStatistics:
    """One deployment at the moment `Router.statistics()` was called."""

    id: str
    group: str
    provider: str
    model: str
    state: HealthState
    in_flight: int
    requests: int
    """Attempts sent to this deployment."""
    successes: int
    failures: int
    """Failures held against the deployment (caller errors are not)."""
    consecutive_failures: int
    ejections: int
    """Times it was cooled down."""
    cooldown_until: float | None
    """Router-clock time the current cooldown ends, None when healthy."""
    cooldown_remaining: float
    """Seconds until then (0 when healthy)."""
    rpm_used: int | None
    """Requests in the current rate window, None without an rpm limit."""
    tpm_used: int | None
    latency_ewma: float | None
    """Smoothed seconds per successful attempt, None before the first."""
    ttft_ewma: float | None = None
    """Smoothed seconds to the first chunk of successful streams, None before the first."""
    spend: float = 0.0
    """USD spent on this deployment (usage x its per-token prices)."""
    input_tokens: int = 0
    """Prompt tokens the provider reported, over every settled request."""
    output_tokens: int = 0
    """Completion tokens the provider reported."""
    last_ejection: Ejection | None = None
    """The error that last took the deployment out of rotation (its class, status,
    failure kind, and when, on the router's clock; no message), None if it never was.
    Kept after the deployment recovers."""


@dataclass(frozen=True, slots=True)
class RouterStatistics:
    """Every deployment's statistics, in configuration order."""

    at: float
    deployments: tuple[DeploymentStatistics, ...]
    cache: CacheStatistics | None = None
    """The response cache's counters (hits, misses, bytes; see docs/caching.md)."""

    def by_id(self, deployment_id: str) -> DeploymentStatistics:
        for d in self.deployments:
            if d.id == deployment_id:
                return d
        raise KeyError(f"no deployment with id {deployment_id!r}")

    @property
    def in_flight(self) -> int:
        return sum(d.in_flight for d in self.deployments)

    @property
    def requests(self) -> int:
        return sum(d.requests for d in self.deployments)

    @property
    def failures(self) -> int:
        return sum(d.failures for d in self.deployments)

    @property
    def spend(self) -> float:
        return sum(d.spend for d in self.deployments)

    @property
    def cooling(self) -> tuple[str, ...]:
        """Ids of the deployments cooling down at `at`."""
        return tuple(d.id for d in self.deployments if d.state == "cooling")

    def by_group(self, group: str) -> tuple[DeploymentStatistics, ...]:
        """The deployments of `group` (empty if there is none)."""
        return tuple(d for d in self.deployments if d.group == group)


def deployment_statistics(s: DeploymentState, now: float) -> DeploymentStatistics:
    """The snapshot of one deployment's live state at `now`."""
    cooling = s.cooldown_until > now
    d = s.deployment
    w = s.rate_window
    used = w.totals(now) if w is not None else (0, 0)
    return DeploymentStatistics(
        id=s.id,
        group=s.group,
        provider=d.provider,
        model=d.model,
        state=health_state(s, now),
        in_flight=s.in_flight,
        requests=s.requests,
        successes=s.successes,
        failures=s.failures,
        consecutive_failures=s.consecutive_failures,
        ejections=s.ejections,
        cooldown_until=s.cooldown_until if cooling else None,
        cooldown_remaining=max(0.0, s.cooldown_until - now),
        rpm_used=used[0] if s.rpm_limit is not None else None,
        tpm_used=used[1] if s.tpm_limit is not None else None,
        latency_ewma=s.latency_ewma,
        ttft_ewma=s.ttft_ewma,
        spend=s.spend,
        input_tokens=s.input_tokens,
        output_tokens=s.output_tokens,
        last_ejection=s.ejected_by,
    )
