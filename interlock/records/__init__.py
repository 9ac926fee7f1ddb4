"""Records: the live state every rule reads and updates, at the bottom of the layers.

A `DeploymentState` per deployment (with its `CircuitState`, `RateWindow` and
`BudgetCounter`s) and the `Transport` protocols it holds. Nothing here imports from
the rules (health, limits, strategies, cache, observability), the transports or the
router; see docs/architecture.md.
"""

from interlock.records.budget import BudgetCounter
from interlock.records.state import (
    CLOSED,
    OPEN,
    CircuitState,
    DeploymentState,
    Ejection,
    PoolHealth,
    Waiters,
    health_state,
    is_available,
)
from interlock.records.transport import ChunkSource, Transport
from interlock.records.window import RateWindow

__all__ = [
    "CLOSED",
    "OPEN",
    "BudgetCounter",
    "ChunkSource",
    "CircuitState",
    "DeploymentState",
    "Ejection",
    "PoolHealth",
    "RateWindow",
    "Transport",
    "Waiters",
    "health_state",
    "is_available",
]
