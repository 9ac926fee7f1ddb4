"""The response cache's configuration: off by default, on per router or per group."""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from interlock.models import ConfigModel

__all__ = ["CacheConfig", "GroupCachePolicy"]

_REDIS_SCHEMES = ("redis", "rediss", "unix")


class GroupCachePolicy(ConfigModel):
    """Caching for one group, overriding the router-wide `CacheConfig` defaults."""

    enabled: bool = True
    ttl: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Seconds an entry lives; None uses `CacheConfig.ttl`."""


class CacheConfig(ConfigModel):
    """The response cache (see docs/caching.md).

    Off unless `enabled` is set (every group), a group's policy enables it, or a request
    passes ``cache=True``. Entries live `ttl` seconds of the router's clock (the memory
    backend) or of Redis's clock (the redis backend).
    """

    enabled: bool = False
    """Cache every group by default."""
    ttl: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    """Default seconds an entry lives."""
    groups: dict[str, GroupCachePolicy] = Field(default_factory=dict)
    """Per-group overrides (group names, not aliases)."""
    max_entries: int = Field(default=10_000, gt=0)
    """Memory backend: the most entries kept; the least recently used goes first."""
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Memory backend: the most bytes of serialized responses kept."""
    coalesce: bool = True
    """Identical requests in flight at once share one provider call."""
    backend: Literal["memory", "redis"] = "memory"
    redis_url: SecretStr | None = Field(default=None, repr=False)
    """``redis://[:password@]host:port/db`` (or rediss://, unix://); may hold a password,
    so it is never shown."""
    redis_timeout: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    """Seconds to connect to Redis or wait for one reply before treating it as down."""
    redis_retry_interval: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    """After Redis failed, seconds during which requests skip it (they go uncached)."""
    namespace: str = Field(default="interlock:cache", min_length=1)
    """Prefix of every key (routers sharing a Redis share entries only within one)."""

    @model_validator(mode="after")
    def _check_redis(self) -> Self:
        if self.redis_url is not None:
            scheme = urlsplit(self.redis_url.get_secret_value()).scheme
            if scheme not in _REDIS_SCHEMES:
                raise ValueError(
                    "redis_url must start with redis://, rediss:// or unix:// "
                    "(the URL itself is not shown: it may hold a password)"
                )
        if self.backend == "redis" and self.redis_url is None:
            raise ValueError("backend 'redis' needs redis_url")
        return self

    @property
    def active(self) -> bool:
        """Whether any group caches without a per-request ``cache=True``."""
        return self.enabled or any(p.enabled for p in self.groups.values())
