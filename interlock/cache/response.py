"""The response cache in front of the request pipeline.

`Router` asks `plan()` whether a request is cached at all (cheap: a dict lookup
when nothing is configured), then hands the provider call to `fetch()` (a complete
response) or `stream()`. See docs/caching.md for the semantics.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from interlock.cache.coalesce import Flight
from interlock.cache.codec import CacheEntry, decode, encode
from interlock.cache.key import cache_key
from interlock.cache.memory import MemoryStore
from interlock.cache.stats import CacheStatistics
from interlock.cache.stream import CachedStream, LiveStream
from interlock.clock import Clock
from interlock.errors import ConfigError, DeadlineExceededError, InterlockError
from interlock.policies import CacheConfig
from interlock.types import ChatCompletion, EmbeddingResponse, Request

__all__ = ["CacheMode", "CachePlan", "CacheStore", "ResponseCache"]

CacheMode = bool | Literal["no-store"] | None
"""Per request: None follows the router/group policy; True caches; False bypasses the
cache entirely; ``"no-store"`` may be answered from the cache but is never stored."""

R = TypeVar("R", ChatCompletion, EmbeddingResponse)
S = TypeVar("S", bound=LiveStream)


class CacheStore(Protocol):
    """Where serialized entries live (`MemoryStore`, `RedisStore`)."""

    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, data: bytes, ttl: float) -> bool: ...

    def usage(self) -> tuple[int | None, int | None]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CachePlan:
    """How one request uses the cache."""

    store: bool
    """Whether its response may be stored (False for ``"no-store"``)."""
    ttl: float
    mode: CacheMode
    ttl_arg: float | None


def _store_from(config: CacheConfig, clock: Clock) -> CacheStore:
    if config.backend == "redis":
        from interlock.cache.redis import RedisStore

        assert config.redis_url is not None  # checked by CacheConfig
        return RedisStore(
            config.redis_url.get_secret_value(),
            clock,
            timeout=config.redis_timeout,
            retry_interval=config.redis_retry_interval,
        )
    return MemoryStore(clock, max_entries=config.max_entries, max_bytes=config.max_bytes)


class ResponseCache:
    """Lookup, store, coalescing and counters for one router."""

    __slots__ = (
        "_active",
        "_flights",
        "coalesced",
        "config",
        "hits",
        "misses",
        "store",
        "stores",
    )

    def __init__(
        self,
        config: CacheConfig,
        groups: Collection[str],
        clock: Clock,
        store: CacheStore | None = None,
    ) -> None:
        unknown = [g for g in config.groups if g not in groups]
        if unknown:
            raise ConfigError([(f"cache.groups.{g}", "is not a group") for g in sorted(unknown)])
        self.config = config
        self._active = config.active
        self.store: CacheStore = store if store is not None else _store_from(config, clock)
        self._flights: dict[str, Flight] = {}
        self.hits = 0
        self.coalesced = 0
        self.misses = 0
        self.stores = 0

    # --- policy -----------------------------------------------------------------------

    def plan(self, group: str, mode: CacheMode, ttl: float | None) -> CachePlan | None:
        """How a request for `group` uses the cache; None when it does not."""
        if mode is None and not self._active:
            if ttl is not None:
                _check_ttl(ttl)
            return None
        if mode is False:
            return None
        if mode is not None and mode is not True and mode != "no-store":
            raise ValueError(f"cache must be True, False, None or 'no-store', got {mode!r}")
        if ttl is not None:
            _check_ttl(ttl)
        policy = self.config.groups.get(group)
        if mode is None and not (policy.enabled if policy is not None else self.config.enabled):
            return None
        if ttl is None:
            ttl = policy.ttl if policy is not None and policy.ttl is not None else self.config.ttl
        return CachePlan(mode != "no-store", ttl, mode, ttl)

    def key(self, request: Request, group: str | None = None) -> str | None:
        payload = request.messages if request.kind == "chat" else request.input
        return cache_key(
            self.config.namespace,
            request.kind,
            group if group is not None else request.group,
            payload,
            request.params,
        )

    # --- complete responses -----------------------------------------------------------

    async def fetch(
        self,
        plan: CachePlan,
        request: Request,
        timeout: float,
        kind: type[R],
        run: Callable[[], Awaitable[R]],
    ) -> R:
        """A response for `request`: from the cache, from an identical request in flight,
        or from `run()` (the pipeline), stored if it succeeds."""
        group = request.group
        key = self.key(request)
        if key is None:
            return await run()
        found = await self._lookup(key, request, timeout)
        if found is not None and isinstance(found.result, kind):
            found.result.request_id = request.id  # a fresh copy: this call's id
            return found.result
        flight: Flight | None = None
        if plan.store and self.config.coalesce:
            flight = self._flights[key] = Flight()
        self.misses += 1
        try:
            result = await run()
        except BaseException as exc:
            if flight is not None:
                self._land(key, flight)
                if isinstance(exc, InterlockError) and not isinstance(exc, DeadlineExceededError):
                    flight.fail(exc)
                else:
                    flight.abandon()
            raise
        needed = plan.store or (flight is not None and flight.waiters > 0)
        data = _encode(result) if needed else None
        if flight is not None:
            flight.succeed(data)
            self._land(key, flight)
        if plan.store and data is not None:
            await self._store(plan, request, group, key, result.group, data)
        return result

    # --- streams ----------------------------------------------------------------------

    async def stream(
        self,
        plan: CachePlan,
        request: Request,
        timeout: float,
        run: Callable[[], Awaitable[S]],
    ) -> S | CachedStream:
        """A stream for `request`: a replay of a cached (or in-flight identical)
        response, or the live stream from `run()`, recorded and stored when it ends
        cleanly. Streams join identical complete requests in flight but never lead
        one: their pace is set by their reader, and nobody should wait on that."""
        group = request.group
        key = self.key(request)
        if key is None:
            return await run()
        found = await self._lookup(key, request, timeout)
        if found is not None and isinstance(found.result, ChatCompletion):
            replay = CachedStream.from_completion(found.result, found.pieces)
            replay.request_id = request.id
            return replay
        self.misses += 1
        live = await run()
        if not plan.store:
            return live

        async def on_complete(c: ChatCompletion, pieces: dict[int, list[int]]) -> None:
            data = _encode(c, pieces)
            if data is not None:
                await self._store(plan, request, group, key, c.group, data)

        return CachedStream.recording(live, on_complete)

    # --- internals --------------------------------------------------------------------

    async def _lookup(self, key: str, request: Request, timeout: float) -> CacheEntry | None:
        """A stored entry, or the outcome of an identical request in flight (its error
        is raised); None when the caller must call the provider itself."""
        data = await self.store.get(key)
        if data is not None:
            entry = decode(data, request.kind)
            if entry is not None:
                self.hits += 1
                return entry
        if not self.config.coalesce:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Loops only when a leader gave up (abandoned); each pass waits on a new one.
        while (flight := self._flights.get(key)) is not None:
            if not await flight.wait(deadline - loop.time()):
                raise DeadlineExceededError(
                    f"deadline of {timeout:.3g} s for {request.requested!r} passed while "
                    "waiting for an identical request in flight"
                )
            if flight.error is not None:
                self.coalesced += 1
                raise flight.error
            if flight.data is not None:
                entry = decode(flight.data, request.kind)
                if entry is not None:
                    self.coalesced += 1
                    return entry
                return None
        return None

    def _land(self, key: str, flight: Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    async def _store(
        self,
        plan: CachePlan,
        request: Request,
        group: str,
        key: str,
        served_by: str,
        data: bytes,
    ) -> None:
        if served_by != group:
            # A fallback answered: the requested group's key must not return another
            # model's answer for a whole TTL once the group is healthy again. The
            # answer is stored under the serving group's key, if that group caches.
            alt = self.plan(served_by, plan.mode, plan.ttl_arg)
            alt_key = self.key(request, served_by) if alt is not None and alt.store else None
            if alt is None or alt_key is None:
                return
            plan, key = alt, alt_key
        if await self.store.set(key, data, plan.ttl):
            self.stores += 1

    # --- introspection ----------------------------------------------------------------

    def statistics(self) -> CacheStatistics:
        entries, size = self.store.usage()
        memory = self.store if isinstance(self.store, MemoryStore) else None
        return CacheStatistics(
            backend=self.store.name,
            hits=self.hits,
            coalesced=self.coalesced,
            misses=self.misses,
            stores=self.stores,
            in_flight=len(self._flights),
            entries=entries,
            bytes=size,
            max_entries=memory.max_entries if memory is not None else None,
            max_bytes=memory.max_bytes if memory is not None else None,
            available=bool(getattr(self.store, "available", True)),
        )

    async def aclose(self) -> None:
        await self.store.aclose()

    def __repr__(self) -> str:
        return (
            f"<ResponseCache {self.store.name} hits={self.hits} coalesced={self.coalesced} "
            f"misses={self.misses} in_flight={len(self._flights)}>"
        )


def _check_ttl(ttl: float) -> None:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
        raise ValueError(f"cache_ttl must be a finite number of seconds > 0, got {ttl!r}")
    if not ttl > 0:
        raise ValueError(f"cache_ttl must be > 0 seconds, got {ttl!r}")


def _encode(
    result: ChatCompletion | EmbeddingResponse, pieces: dict[int, list[int]] | None = None
) -> bytes | None:
    try:
        return encode(result, pieces)
    except TypeError:
        return None
