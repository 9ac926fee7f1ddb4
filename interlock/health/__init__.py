"""Health: classifying failures, cooling deployments down, bringing them back."""

from interlock.health.classify import FailureKind, classify
from interlock.health.tracker import HealthTracker

__all__ = ["FailureKind", "HealthTracker", "classify"]
