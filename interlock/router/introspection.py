"""What a router can tell about itself: its deployments, groups, chains, statistics and
spend (a `Router` mixin, so that router.py stays small)."""

from __future__ import annotations

from interlock.cache.response import ResponseCache
from interlock.config import Deployment
from interlock.limits.shared import SharedLedger
from interlock.limits.spend import SpendReport, spend_report
from interlock.observability.stats import RouterStatistics, deployment_statistics
from interlock.router.wiring import RouterParts

__all__ = ["Introspection"]


class Introspection:
    """`Router`'s read-only views of its state."""

    __slots__ = ()

    parts: RouterParts
    _cache: ResponseCache

    def _group_for(self, model: str) -> str:
        raise NotImplementedError  # Router's

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        """Every deployment, ids filled in, in configuration order."""
        return tuple(s.deployment for s in self.parts.states)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.parts.pools)

    def fallback_chain(self, model: str) -> tuple[str, ...]:
        """The groups a request for `model` tries, in order."""
        return self.parts.fallbacks.chains[self._group_for(model)]

    def statistics(self) -> RouterStatistics:
        """A frozen snapshot of every deployment."""
        now = self.parts.clock.now()
        return RouterStatistics(
            at=now,
            deployments=tuple(deployment_statistics(s, now) for s in self.parts.states),
            cache=self._cache.statistics(),
        )

    def spend(self) -> SpendReport:
        """Spend in USD per deployment, group and tag, and every budget's state."""
        parts = self.parts
        return spend_report(parts.states, parts.budget_counters, parts.clock.now())

    @property
    def shared(self) -> SharedLedger | None:
        """The ledger shared with other router processes, when configured."""
        return self.parts.shared
