"""What the router tells operators: hooks, Prometheus metrics, statistics and logs.

See docs/observability.md.
"""

from interlock.observability.events import (
    CooldownEvent,
    Event,
    FailureEvent,
    FailureKindName,
    FallbackEvent,
    HedgeEvent,
    RateLimitWaitEvent,
    RecoveryEvent,
    RequestStartEvent,
    RetryEvent,
    SuccessEvent,
)
from interlock.observability.hooks import Hook
from interlock.observability.metrics import METRIC_NAMES, PrometheusMetrics
from interlock.observability.observer import Observer
from interlock.observability.serve import (
    MetricsServer,
    add_metrics_route,
    metrics_handler,
    serve_metrics,
)
from interlock.observability.stats import DeploymentStatistics, HealthState, RouterStatistics
from interlock.observability.tracing import Tracing

__all__ = [
    "METRIC_NAMES",
    "CooldownEvent",
    "DeploymentStatistics",
    "Event",
    "FailureEvent",
    "FailureKindName",
    "FallbackEvent",
    "HealthState",
    "HedgeEvent",
    "Hook",
    "MetricsServer",
    "Observer",
    "PrometheusMetrics",
    "RateLimitWaitEvent",
    "RecoveryEvent",
    "RequestStartEvent",
    "RetryEvent",
    "RouterStatistics",
    "SuccessEvent",
    "Tracing",
    "add_metrics_route",
    "metrics_handler",
    "serve_metrics",
]
