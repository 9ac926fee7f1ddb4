"""Health: classifying failures, ejecting deployments, bringing them back, probing."""

from interlock.failures import TREATMENTS, FailureKind, Treatment, classify, treatment
from interlock.health.retry_budget import RetryBudget
from interlock.health.tracker import HealthTracker
from interlock.records.state import CircuitState, PoolHealth, health_state, is_available

__all__ = [
    "TREATMENTS",
    "CircuitState",
    "FailureKind",
    "HealthTracker",
    "PoolHealth",
    "RetryBudget",
    "Treatment",
    "classify",
    "health_state",
    "is_available",
    "treatment",
]
