"""The in-process store: a cachetools TLRU cache bounded by entries and by bytes."""

from __future__ import annotations

from cachetools import TLRUCache

from interlock.clock import Clock

__all__ = ["MemoryStore"]


def _ttu(key: str, value: tuple[float, bytes], now: float) -> float:
    return now + value[0]


def _size(value: tuple[float, bytes]) -> int:
    return len(value[1])


class MemoryStore:
    """Serialized entries with a TTL each, read through the router's clock.

    Bounded twice: `max_bytes` of serialized data (cachetools' size accounting) and
    `max_entries`. Either bound evicts the least recently used entry first (expired
    entries go before that); an entry larger than `max_bytes` is not stored at all.
    """

    name = "memory"

    __slots__ = ("_cache", "max_bytes", "max_entries")

    def __init__(self, clock: Clock, *, max_entries: int, max_bytes: int) -> None:
        if max_entries <= 0 or max_bytes <= 0:
            raise ValueError("max_entries and max_bytes must be > 0")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._cache: TLRUCache[str, tuple[float, bytes]] = TLRUCache(
            maxsize=max_bytes, ttu=_ttu, timer=clock.now, getsizeof=_size
        )

    def get_nowait(self, key: str) -> bytes | None:
        value = self._cache.get(key)
        return None if value is None else value[1]

    def set_nowait(self, key: str, data: bytes, ttl: float) -> bool:
        cache = self._cache
        if len(data) > self.max_bytes:
            return False
        if key not in cache:
            while len(cache) >= self.max_entries:
                cache.popitem()
        cache[key] = (ttl, data)
        return True

    async def get(self, key: str) -> bytes | None:
        return self.get_nowait(key)

    async def set(self, key: str, data: bytes, ttl: float) -> bool:
        return self.set_nowait(key, data, ttl)

    def usage(self) -> tuple[int, int]:
        """(entries, bytes), expired entries dropped first."""
        self._cache.expire()
        return len(self._cache), int(self._cache.currsize)

    def clear(self) -> None:
        self._cache.clear()

    async def aclose(self) -> None:
        self._cache.clear()

    def __repr__(self) -> str:
        entries, size = len(self._cache), int(self._cache.currsize)
        return f"<MemoryStore entries={entries}/{self.max_entries} bytes={size}/{self.max_bytes}>"
