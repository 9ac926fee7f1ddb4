"""Point-in-time statistics: frozen snapshots, safe to keep and compare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DeploymentStatistics", "HealthState", "RouterStatistics"]

HealthState = Literal["healthy", "cooling"]


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
    spend: float = 0.0
    """USD spent on this deployment (usage x its per-token prices)."""
    input_tokens: int = 0
    """Prompt tokens the provider reported, over every settled request."""
    output_tokens: int = 0
    """Completion tokens the provider reported."""


@dataclass(frozen=True, slots=True)
class RouterStatistics:
    """Every deployment's statistics, in configuration order."""

    at: float
    deployments: tuple[DeploymentStatistics, ...]

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
