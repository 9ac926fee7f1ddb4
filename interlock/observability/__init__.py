"""What the router tells operators: statistics now, metrics and hooks to come."""

from interlock.observability.stats import DeploymentStatistics, HealthState, RouterStatistics

__all__ = ["DeploymentStatistics", "HealthState", "RouterStatistics"]
