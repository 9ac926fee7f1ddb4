"""The live record of one deployment: what health, limits and strategies read and update.

One flat slotted object per deployment keeps the hot path to attribute reads and
writes; the health tracker, the ledger and the strategies each own some of its
fields and change them synchronously.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interlock.config import Deployment
from interlock.health.circuit import CLOSED, CircuitState
from interlock.limits.window import RateWindow

if TYPE_CHECKING:
    from interlock.limits.queue import WaitQueue
    from interlock.limits.spend import BudgetCounter
    from interlock.providers.base import Transport

__all__ = ["DeploymentState"]


class _Checked:
    """The fields an eligibility check and a strategy's comparison read, in a base
    class of their own so they sit together at the start of the object.

    CPython lays out slots in sorted name order, base class first; spread over the
    whole object these fields cost a pick in a pool of 10,000 deployments (where a
    randomly drawn deployment is rarely in the CPU's caches) about twice as many
    cache lines per candidate.
    """

    __slots__ = (
        "blocked_until",
        "budgets",
        "circuit",
        "circuit_mode",
        "context_window",
        "cooldown_until",
        "group",
        "in_flight",
        "max_concurrency",
        "rate_window",
        "rpm_limit",
        "tpm_limit",
        "weight",
    )


class DeploymentState(_Checked):
    """Live state of one deployment. Strategies receive these as candidates."""

    __slots__ = (
        "consecutive_failures",
        "deployment",
        "ejections",
        "failures",
        "id",
        "input_cost",
        "input_tokens",
        "last_output_tokens",
        "latency_ewma",
        "order",
        "output_cost",
        "output_tokens",
        "requests",
        "spend",
        "successes",
        "tags",
        "transport",
        "ttft_ewma",
        "waiters",
    )

    def __init__(self, deployment: Deployment, transport: Transport) -> None:
        assert deployment.id is not None
        self.deployment = deployment
        self.transport = transport
        self.id: str = deployment.id
        self.group = deployment.group
        self.order = deployment.order
        self.tags = deployment.tags
        self.weight: float = deployment.weight or 1.0
        self.max_concurrency = deployment.max_concurrency
        # ledger
        self.in_flight = 0
        self.requests = 0
        self.rate_window = (
            RateWindow() if deployment.rpm is not None or deployment.tpm is not None else None
        )
        # limits (interlock.limits): effective rpm/tpm (scaled down while a shared
        # ledger is unreachable), a shared ledger's refusal, spend and budgets
        self.rpm_limit = deployment.rpm
        self.tpm_limit = deployment.tpm
        self.context_window = deployment.context_window
        self.blocked_until = 0.0
        self.input_cost = deployment.input_cost_per_token
        self.output_cost = deployment.output_cost_per_token
        self.input_tokens = 0
        self.output_tokens = 0
        self.spend = 0.0
        self.budgets: tuple[BudgetCounter, ...] = ()
        self.waiters: WaitQueue | None = None
        # health
        self.successes = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.cooldown_until = 0.0
        self.ejections = 0
        self.latency_ewma: float | None = None
        # strategies: completion tokens of the latest success (0 when unknown), set by
        # Pipeline.succeeded just before the strategy's `record` (latency per token)
        self.last_output_tokens = 0
        # observability: smoothed time to first chunk of streams
        self.ttft_ewma: float | None = None
        self.circuit = CircuitState()
        """Half-open/ejection state; `HealthTracker.attach` links it to its pool."""
        self.circuit_mode = CLOSED
        """CLOSED (in rotation) or OPEN (ejected: cooling down, then half-open); set by
        the health tracker. Kept here rather than on `circuit`: every eligibility check
        reads it, and this object is already in the CPU's cache by then."""

    def __repr__(self) -> str:
        return (
            f"<DeploymentState {self.id} group={self.group} in_flight={self.in_flight} "
            f"requests={self.requests} failures={self.failures} "
            f"cooldown_until={self.cooldown_until:.3f}>"
        )
