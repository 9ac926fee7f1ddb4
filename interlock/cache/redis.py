"""The shared store: the same entries in Redis, for several router instances.

Needs the ``redis`` extra (``pip install 'interlock[redis]'``). Redis keeps the TTL
(``SET key value PX ms``), so entries expire on Redis's clock. When Redis cannot be
reached, a lookup is a miss and nothing is stored: requests go to the providers as if
uncached. The outage is logged once at WARNING (and its end at INFO); for
`retry_interval` seconds after a failure Redis is not asked at all, so an outage
costs one connection timeout per interval rather than one per request.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

from interlock.clock import Clock
from interlock.errors import ConfigError

__all__ = ["RedisStore"]

log = logging.getLogger("interlock.cache")

_REFUSED = "is not a URL redis accepts (not shown: it may hold a password)"


def _where(url: str) -> str:
    """The URL without credentials, for log lines."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or ''}"


class RedisStore:
    """Entries in Redis under the same keys as the memory store."""

    name = "redis"

    __slots__ = (
        "_client",
        "_clock",
        "_down_until",
        "_outage",
        "_where",
        "retry_interval",
    )

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        timeout: float = 0.5,
        retry_interval: float = 1.0,
        client: Any = None,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:
            missing = True
        else:
            missing = False
        if missing:  # a configuration problem, raised off the ImportError's chain
            raise ConfigError(
                [
                    (
                        "cache.backend",
                        "'redis' needs the 'redis' package: pip install 'interlock[redis]'",
                    )
                ]
            )
        if client is None:
            try:
                client = aioredis.Redis.from_url(
                    url,
                    socket_connect_timeout=timeout,
                    socket_timeout=timeout,
                    retry_on_timeout=False,
                    # A cache must not add retries with backoff to a request: one failure
                    # is enough to go uncached (and to skip Redis for retry_interval).
                    retry=Retry(NoBackoff(), 0),
                )
            except ValueError:  # e.g. an option in the query string redis does not take
                client = None
            if client is None:
                # Raised here, off the chain: redis' message may quote the URL.
                raise ConfigError([("cache.redis_url", _REFUSED)])
        self._client = client
        self._clock = clock
        self._where = _where(url)
        self.retry_interval = retry_interval
        self._down_until = float("-inf")
        self._outage = False

    @property
    def available(self) -> bool:
        """False during an outage (from a failed command until one succeeds again)."""
        return not self._outage

    def _skipping(self) -> bool:
        return self._outage and self._clock.now() < self._down_until

    def _failed(self, exc: BaseException) -> None:
        self._down_until = self._clock.now() + self.retry_interval
        if not self._outage:
            self._outage = True
            # The exception text may quote the URL; name only its class and where.
            log.warning(
                "response cache: Redis at %s unreachable (%s); serving uncached until "
                "it answers again",
                self._where,
                type(exc).__name__,
            )

    def _succeeded(self) -> None:
        if self._outage:
            self._outage = False
            log.info("response cache: Redis at %s reachable again", self._where)

    async def get(self, key: str) -> bytes | None:
        if self._skipping():
            return None
        try:
            value = await self._client.get(key)
        except Exception as exc:
            # Refused, timed out, a server error, or a server (or proxy) whose replies
            # redis-py cannot read, which it may report with any exception: all an
            # outage. A cache never fails a request.
            self._failed(exc)
            return None
        self._succeeded()
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, data: bytes, ttl: float) -> bool:
        if self._skipping():
            return False
        try:
            await self._client.set(key, data, px=max(1, int(ttl * 1000)))
        except Exception as exc:  # an outage, as in `get`
            self._failed(exc)
            return False
        self._succeeded()
        return True

    def usage(self) -> tuple[None, None]:
        # Shared entries belong to every router using this Redis; not counted here.
        return None, None

    async def aclose(self) -> None:
        # Closing a connection Redis already dropped can fail; the router is closing.
        with contextlib.suppress(Exception):
            await self._client.aclose()

    def __repr__(self) -> str:
        state = "down" if self._outage else "up"
        return f"<RedisStore {self._where} {state}>"
