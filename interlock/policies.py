"""Policies: retries, health, hedging, budgets, the rate-limit queue and shared state."""

from __future__ import annotations

from typing import ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from interlock.errors import ConfigError
from interlock.failures import COUNTED_KIND_NAMES, RETRYABLE_KIND_NAMES
from interlock.models import ConfigModel

__all__ = [
    "Budget",
    "CacheConfig",
    "GroupCachePolicy",
    "HealthPolicy",
    "HedgePolicy",
    "QueuePolicy",
    "RetryPolicy",
    "SharedState",
]


class RetryPolicy(ConfigModel):
    """How many attempts a group gets and how to wait between them."""

    _where: ClassVar[str] = "RetryPolicy"

    max_attempts: int = Field(default=3, ge=1)
    """Attempts per group, the first included; each goes to a deployment not yet tried
    while one is eligible."""
    backoff_base: float = Field(default=0.05, ge=0)
    """Seconds; full-jitter backoff ``uniform(0, min(cap, base * 2**n))`` applies only when
    every eligible deployment has already been tried."""
    backoff_max: float = Field(default=2.0, ge=0)
    max_wait: float = Field(default=5.0, ge=0)
    """When every deployment of the last group in the chain is cooling down, wait for the
    first to come back if that is at most this many seconds away (and before the
    deadline); otherwise fail at once with NoDeploymentAvailableError. 0 never waits."""
    attempts_by_kind: dict[str, int] = Field(default_factory=dict)
    """Failure kind (``timeout``, ``connection``, ``server_error``, ``malformed``,
    ``rate_limit``, ``auth``) -> attempts in one group that may fail that way before the
    group is given up (the call moves to its fallbacks). Unset kinds use `max_attempts`."""
    budget_ratio: float = Field(default=0.2, ge=0)
    """Retries (and hedges, and fallback attempts) a group's calls may add, as a share
    of the calls it received in the last `budget_window` seconds."""
    budget_floor: int = Field(default=10, ge=0)
    """Retries always allowed per `budget_window`, so a quiet group can still retry."""
    budget_window: float = Field(default=10.0, gt=0)
    """Seconds over which the retry budget counts calls and retries."""

    @field_validator("attempts_by_kind")
    @classmethod
    def _check_kinds(cls, value: dict[str, int]) -> dict[str, int]:
        for name, n in value.items():
            if name not in RETRYABLE_KIND_NAMES:
                raise ValueError(
                    f"unknown failure kind {name!r}; known: {', '.join(RETRYABLE_KIND_NAMES)}"
                )
            if n < 1:
                raise ValueError(f"attempts for {name!r} must be >= 1")
        return value


class HealthPolicy(ConfigModel):
    """When a deployment is taken out of rotation, and for how long."""

    _where: ClassVar[str] = "HealthPolicy"

    allowed_fails: int = Field(default=3, ge=1)
    """Consecutive failures that cool a deployment down."""
    cooldown: float = Field(default=10.0, gt=0)
    """Seconds a deployment cools after `allowed_fails` consecutive failures."""
    rate_limit_cooldown: float = Field(default=5.0, ge=0)
    """Seconds a 429 without Retry-After cools a deployment."""
    max_retry_after: float = Field(default=600.0, gt=0)
    """The longest Retry-After honoured (a broken header must not remove a deployment
    for a day)."""
    auth_cooldown: float = Field(default=60.0, ge=0)
    """Seconds a deployment-scoped 4xx (401/403 a bad key, 402, a missing model or
    deployment, an account that cannot pay) takes the deployment out; the n-th in a row
    lasts n times as long, up to ``max(cooldown_max, auth_cooldown)``."""
    cooldown_max: float = Field(default=300.0, gt=0)
    """The longest ejection: the n-th ejection in a row lasts ``min(cooldown * n,
    cooldown_max)``; the count starts again once the deployment has been healthy this
    long."""
    allowed_fails_by_kind: dict[str, int] = Field(default_factory=dict)
    """Failure kind (``timeout``, ``connection``, ``server_error``, ``malformed``) -> its
    own consecutive-failure allowance; a kind listed here is counted apart from the
    others (which share `allowed_fails`)."""
    failure_rate_threshold: float | None = Field(default=0.5, gt=0, le=1)
    """Eject when at least this share of the recent outcomes (over `failure_rate_window`)
    failed, once there are `failure_rate_min_requests` of them. None turns it off."""
    failure_rate_min_requests: int = Field(default=20, ge=1)
    failure_rate_window: float = Field(default=30.0, gt=0)
    max_ejected_share: float = Field(default=0.5, gt=0, le=1)
    """At most this share of a pool (never less than one deployment) is out of rotation
    for failures at once; 429 and deployment-scoped 4xx cooldowns are always applied."""
    panic_threshold: float = Field(default=0.5, ge=0, le=1)
    """When less than this share of a pool is healthy, route across all of it (except
    deployments whose 429 Retry-After or bad key is still running). 0 never panics."""
    half_open_successes: int = Field(default=2, ge=1)
    """Successful trial requests that bring an ejected deployment back."""
    half_open_max_trials: int = Field(default=1, ge=1)
    """Trial requests in flight at once to a half-open deployment."""
    slow_start: float = Field(default=0.0, ge=0)
    """Seconds over which a recovered deployment's share of traffic ramps from 10% back
    to 100%. 0 turns it off."""
    probe_interval: float | None = Field(default=None, gt=0)
    """Seconds between active probes of ejected deployments (a one-token request that,
    on success, ends the ejection early). None turns probes off."""
    probe_timeout: float = Field(default=5.0, gt=0)

    @field_validator("allowed_fails_by_kind")
    @classmethod
    def _check_kinds(cls, value: dict[str, int]) -> dict[str, int]:
        for name, n in value.items():
            if name not in COUNTED_KIND_NAMES:
                raise ValueError(
                    f"unknown failure kind {name!r}; known: {', '.join(COUNTED_KIND_NAMES)}"
                )
            if n < 1:
                raise ValueError(f"allowance for {name!r} must be >= 1")
        return value

    @model_validator(mode="after")
    def _check_cooldowns(self) -> Self:
        if self.cooldown_max < self.cooldown:
            raise ConfigError([("cooldown_max", f"must be >= cooldown ({self.cooldown:g} s)")])
        return self


class HedgePolicy(ConfigModel):
    """Opt-in request hedging for a group: when the first attempt is slow, send another
    to a different deployment; the first success wins and the rest are cancelled."""

    _where: ClassVar[str] = "HedgePolicy"

    delay: float | None = Field(default=None, gt=0)
    """Fixed seconds before a hedge is sent; with `percentile`, used until enough
    latencies have been seen."""
    percentile: float | None = Field(default=None, gt=0, lt=100)
    """Hedge after this percentile of the group's recent successful latencies."""
    min_samples: int = Field(default=20, ge=1, le=256)
    """Latencies needed before `percentile` is used (at most the 256 the router keeps
    per group)."""
    max_hedges: int = Field(default=1, ge=1, le=4)
    """Extra requests per attempt at most (each draws on the retry budget)."""

    @model_validator(mode="after")
    def _check_delay(self) -> Self:
        if self.delay is None and self.percentile is None:
            raise ConfigError([("delay", "set delay, percentile, or both")])
        return self


_PERIOD_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class Budget(ConfigModel):
    """A maximum spend per period for one deployment, one group or one tag.

    Periods are fixed windows on the router's clock starting when the router is
    built: ``period="1d"`` resets every 24 h from then. A deployment is not eligible
    while any budget that covers it is used up.
    """

    _where: ClassVar[str] = "Budget"

    scope: Literal["deployment", "group", "tag"]
    """What the budget covers: a deployment id, a group name, or every deployment
    carrying a tag."""
    name: str = Field(min_length=1)
    limit_usd: float = Field(gt=0)
    period: float = Field(gt=0)
    """Seconds, or a string: ``"30s"``, ``"15m"``, ``"1h"``, ``"1d"``, ``"1w"``."""

    @field_validator("period", mode="before")
    @classmethod
    def _parse_period(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip().lower()
            unit = _PERIOD_UNITS.get(text[-1:]) if text else None
            try:
                return float(text[:-1]) * unit if unit is not None else float(text)
            except ValueError:
                raise ValueError(
                    "must be seconds or a number with a unit s, m, h, d or w (e.g. '1d')"
                ) from None
        return value

    @property
    def label(self) -> str:
        """How errors and statistics name the budget."""
        return f"{self.scope} {self.name!r} ${self.limit_usd:g}/{_period_text(self.period)}"


def _period_text(seconds: float) -> str:
    for unit in ("w", "d", "h", "m"):
        size = _PERIOD_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class QueuePolicy(ConfigModel):
    """What a request does when no deployment of its group has rate or concurrency
    headroom: wait in a FIFO line for capacity, or fail at once with RateLimitError."""

    _where: ClassVar[str] = "QueuePolicy"

    max_wait: float = Field(default=0.0, ge=0)
    """Longest wait in seconds for capacity (always cut short by the call's deadline).
    0 disables the queue: the caller gets a RateLimitError saying when capacity
    returns."""
    max_size: int = Field(default=10_000, ge=1)
    """Most requests waiting per group; one more gets a RateLimitError at once."""


class SharedState(ConfigModel):
    """Rate windows and cooldowns shared by several router processes through Redis
    (needs the ``redis`` extra)."""

    _where: ClassVar[str] = "SharedState"

    url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    """A redis:// or rediss:// URL (may carry a password; it is never logged)."""
    prefix: str = Field(default="interlock", min_length=1)
    """Key prefix, so several router fleets can share one Redis."""
    timeout: float = Field(default=0.25, gt=0)
    """Seconds one Redis call may take before the router falls back to local
    accounting."""
    sync_interval: float = Field(default=0.25, gt=0, le=1.0)
    """Seconds between reads of the shared cooldowns (a cooldown set by another
    process is seen within this, plus one round trip)."""
    retry_interval: float = Field(default=0.5, gt=0)
    """Seconds between reconnection attempts while Redis is unreachable."""
    local_share: float = Field(default=1.0, gt=0, le=1.0)
    """The share of each rpm/tpm limit this process uses on its own while Redis is
    unreachable (1/N for N processes keeps the total within the limit)."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        problem = redis_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL, without quoting it (it may hold a password)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "is not a valid URL (not shown: it may hold a password)"
    if parts.scheme not in _REDIS_SCHEMES:
        return "must be a redis://, rediss:// or unix:// URL"
    return None


# --- the response cache (docs/caching.md): off by default, on per router or per group


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
            problem = redis_url_problem(self.redis_url.get_secret_value())
            if problem:
                raise ConfigError([("redis_url", problem)])
        if self.backend == "redis" and self.redis_url is None:
            raise ValueError("backend 'redis' needs redis_url")
        return self

    @property
    def active(self) -> bool:
        """Whether any group caches without a per-request ``cache=True``."""
        return self.enabled or any(p.enabled for p in self.groups.values())
