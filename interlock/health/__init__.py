"""Health: classifying failures, ejecting deployments, bringing them back, probing."""

from interlock.health.budget import RetryBudget
from interlock.health.circuit import CircuitState, PoolHealth, health_state, is_available
from interlock.health.classify import TREATMENTS, FailureKind, Treatment, classify, treatment
from interlock.health.tracker import HealthTracker

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
