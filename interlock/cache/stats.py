"""The response cache's counters, as `Router.statistics().cache` reports them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheStatistics"]


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """The response cache at the moment `Router.statistics()` was called.

    Every request the cache considered is exactly one of `hits`, `coalesced` and
    `misses`; requests with caching off are not counted.
    """

    backend: str
    """``"memory"`` or ``"redis"``."""
    hits: int
    """Answered from a stored entry."""
    coalesced: int
    """Answered by sharing an identical request's provider call that was in flight."""
    misses: int
    """Went to the providers."""
    stores: int
    """Responses stored."""
    in_flight: int
    """Provider calls that identical requests can join right now."""
    entries: int | None
    """Stored entries (memory backend; None for Redis, whose entries are shared)."""
    bytes: int | None
    """Bytes of serialized responses held (memory backend; None for Redis)."""
    max_entries: int | None
    max_bytes: int | None
    available: bool
    """False while the backend is unreachable (Redis); requests then go uncached."""

    @property
    def hit_ratio(self) -> float:
        """(hits + coalesced) / all counted requests; 0.0 before the first."""
        total = self.hits + self.coalesced + self.misses
        return (self.hits + self.coalesced) / total if total else 0.0
