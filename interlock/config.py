"""Configuration models: deployments, retry and health policies, the router's config.

Everything is validated when it is built. A problem is reported as a `ConfigError`
whose lines name the field and what is wrong with it (``deployments[2].rpm: must be
> 0``); input values are never echoed, so a key cannot leak through an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from interlock.cache.config import CacheConfig
from interlock.errors import ConfigError, join_path

__all__ = [
    "Budget",
    "Deployment",
    "HealthPolicy",
    "HedgePolicy",
    "QueuePolicy",
    "RetryPolicy",
    "RouterConfig",
    "SharedState",
    "expand_wildcard",
    "load_config_source",
    "validation_problems",
]


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(path, problem)`` for each error, never the input value. A nested model's
    ConfigError is expanded under the path where it sits."""
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_input=False):
        loc = ""
        for part in err["loc"]:
            loc = join_path(loc, f"[{part}]" if isinstance(part, int) else str(part))
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigError):
            out.extend((join_path(loc, path), problem) for path, problem in inner.fields)
        else:
            out.append((loc, _describe(err)))
    # pydantic counts only the items that validated, so a list whose only items are
    # invalid is also reported as too short; the item errors already say what is wrong.
    return [
        (path, problem)
        for path, problem in out
        if not (
            problem.startswith(_TOO_SHORT) and any(p != path and p.startswith(path) for p, _ in out)
        )
    ]


_TOO_SHORT = "too short:"


def _describe(err: ErrorDetails) -> str:
    if err["type"] == "too_short":
        return f"{_TOO_SHORT} needs at least {(err.get('ctx') or {}).get('min_length', 1)} item(s)"
    ctx = err.get("ctx") or {}
    kind = err["type"]
    simple = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "missing": "is required",
        "extra_forbidden": "is not a known field",
        "string_too_short": "must not be empty",
    }
    if kind in simple:
        return simple[kind].format(**ctx)
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


class _Model(BaseModel):
    """Frozen, strict about unknown fields, and raising ConfigError instead of pydantic's
    ValidationError (whose text would include the offending input, keys included)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
    _where: ClassVar[str]

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = validation_problems(exc)
        else:
            return
        # Raised outside the except block so the ValidationError, which holds the
        # input values (keys included), is not kept as __context__.
        raise ConfigError(problems, self._where)


class Deployment(_Model):
    """One endpoint that serves a group: a model at an `api_base` with a key and limits."""

    _where: ClassVar[str] = "Deployment"

    group: str = Field(min_length=1)
    """The name callers ask for (`model=` in acompletion); several deployments share one."""
    model: str = Field(min_length=1)
    """The provider's model name sent upstream."""
    provider: str = "openai"
    id: str | None = None
    """Unique id; defaults to ``<group>-<n>`` (n counts deployments of the group from 0)."""
    api_base: str = "https://api.openai.com/v1"
    api_key: SecretStr | None = Field(default=None, repr=False)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)
    weight: float | None = Field(default=None, gt=0)
    order: int = Field(default=1, ge=1)
    tags: frozenset[str] = frozenset()
    timeout: float = Field(default=60.0, gt=0)
    """Seconds one attempt may take (bounded further by the call's deadline)."""
    input_cost_per_token: float = Field(default=0.0, ge=0)
    output_cost_per_token: float = Field(default=0.0, ge=0)
    context_window: int | None = Field(default=None, gt=0)
    stream_usage: bool = True
    """Ask for usage in the final stream chunk (``stream_options.include_usage``)."""
    api_version: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    """Azure: the ``api-version`` query parameter (default ``2024-10-21``); Anthropic: the
    ``anthropic-version`` header (default ``2023-06-01``). Other providers ignore it."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    """``max_tokens`` sent to a provider that requires one (Anthropic) when the call
    sets none; defaults to 4096 there."""

    @model_validator(mode="before")
    @classmethod
    def _preset_api_base(cls, data: Any) -> Any:
        # A built-in provider named without an api_base gets its preset's address.
        if isinstance(data, Mapping) and data.get("api_base") is None:
            from interlock.providers.presets import preset_for

            preset = preset_for(str(data.get("provider") or "openai"))
            if preset is not None:
                if preset.api_base is None:
                    raise ConfigError([("api_base", f"is required for provider {preset.name!r}")])
                data = {**data, "api_base": preset.api_base}
        return data

    @field_validator("api_base")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use api_key")
        return value.rstrip("/")

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    def api_key_value(self) -> str | None:
        """The key in clear text, for transports only."""
        return self.api_key.get_secret_value() if self.api_key is not None else None


class RetryPolicy(_Model):
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
        from interlock.health.classify import RETRYABLE_KIND_NAMES

        for name, n in value.items():
            if name not in RETRYABLE_KIND_NAMES:
                raise ValueError(
                    f"unknown failure kind {name!r}; known: {', '.join(RETRYABLE_KIND_NAMES)}"
                )
            if n < 1:
                raise ValueError(f"attempts for {name!r} must be >= 1")
        return value


class HealthPolicy(_Model):
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
    """Seconds a 401/403 (a bad key) takes the deployment out."""
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
    for failures at once; 429 and bad-key cooldowns are always applied."""
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
        from interlock.health.classify import COUNTED_KIND_NAMES

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


class HedgePolicy(_Model):
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


class Budget(_Model):
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


class QueuePolicy(_Model):
    """What a request does when no deployment of its group has rate or concurrency
    headroom: wait in a FIFO line for capacity, or fail at once with RateLimitError."""

    _where: ClassVar[str] = "QueuePolicy"

    max_wait: float = Field(default=0.0, ge=0)
    """Longest wait in seconds for capacity (always cut short by the call's deadline).
    0 disables the queue: the caller gets a RateLimitError saying when capacity
    returns."""
    max_size: int = Field(default=10_000, ge=1)
    """Most requests waiting per group; one more gets a RateLimitError at once."""


class SharedState(_Model):
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
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class RouterConfig(_Model):
    """The router's whole configuration, as `Router.from_config` reads it."""

    _where: ClassVar[str] = ""

    deployments: tuple[Deployment, ...] = Field(min_length=1)
    strategy: str = "p2c-ewma"
    """The default strategy's name (see docs/strategies.md)."""
    strategies: dict[str, str] = Field(default_factory=dict)
    """Group -> strategy name, for groups that route differently from `strategy`."""
    fallbacks: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Group -> groups to try, in order, when the group is exhausted. The key ``"*"``
    is the default chain of every group without an entry of its own."""
    context_window_fallbacks: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Group (or ``"*"``) -> groups to try when a deployment says the request does not
    fit its context window."""
    content_policy_fallbacks: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Group (or ``"*"``) -> groups to try when a provider refuses the content."""
    max_fallback_depth: int = Field(default=3, ge=0)
    """Fallback groups one call may move through after the one it asked for."""
    hedging: dict[str, HedgePolicy] = Field(default_factory=dict)
    """Group (or ``"*"``) -> hedging policy; groups without one never hedge."""
    aliases: dict[str, str] = Field(default_factory=dict)
    """Another name -> group."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    health: HealthPolicy = Field(default_factory=HealthPolicy)
    timeout: float = Field(default=120.0, gt=0)
    """Default deadline in seconds for one call, over every attempt and fallback."""
    expected_output_tokens: int = Field(default=256, ge=0)
    """Output tokens reserved against TPM when a request sets no `max_tokens`."""
    unsupported_params: Literal["drop", "raise"] = "drop"
    """What to do with a parameter a deployment's provider has no equivalent for: leave
    it out, or fail the call with UnsupportedParamsError (see docs/providers.md)."""
    cache: CacheConfig = Field(default_factory=CacheConfig)
    """The response cache (off unless enabled; see docs/caching.md)."""
    budgets: tuple[Budget, ...] = ()
    """Spend caps per deployment, group or tag."""
    queue: QueuePolicy = Field(default_factory=QueuePolicy)
    shared: SharedState | None = None
    """Share rate windows and cooldowns with other router processes through Redis."""

    @field_validator("strategy")
    @classmethod
    def _check_strategy(cls, value: str) -> str:
        from interlock.strategies.base import builtin_strategies

        known = builtin_strategies()
        if value not in known:
            raise ValueError(f"unknown strategy {value!r}; known: {', '.join(sorted(known))}")
        return value

    @field_validator("strategies")
    @classmethod
    def _check_strategies(cls, value: dict[str, str]) -> dict[str, str]:
        from interlock.strategies.base import builtin_strategies

        known = builtin_strategies()
        for group, name in value.items():
            if name not in known:
                raise ValueError(
                    f"{group}: unknown strategy {name!r}; known: {', '.join(sorted(known))}"
                )
        return value

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        problems: list[tuple[str, str]] = []
        groups = {d.group for d in self.deployments}
        seen: dict[str, int] = {}
        for i, d in enumerate(self.deployments):
            if d.id is not None:
                if d.id in seen:
                    problems.append(
                        (
                            f"deployments[{i}].id",
                            f"duplicates deployments[{seen[d.id]}].id {d.id!r}",
                        )
                    )
                seen.setdefault(d.id, i)
        for name, target in self.aliases.items():
            if name in groups:
                problems.append((f"aliases.{name}", "is already a group name"))
            if target not in groups:
                problems.append((f"aliases.{name}", f"names unknown group {target!r}"))
        for group in self.strategies:
            if group not in groups:
                problems.append((f"strategies.{group}", "is not a group"))
        maps = {
            "fallbacks": self.fallbacks,
            "context_window_fallbacks": self.context_window_fallbacks,
            "content_policy_fallbacks": self.content_policy_fallbacks,
        }
        for field, mapping in maps.items():
            for group, chain in mapping.items():
                if group != "*" and group not in groups:
                    problems.append((f"{field}.{group}", "is not a group"))
                for j, fb in enumerate(chain):
                    if fb not in groups:
                        problems.append((f"{field}.{group}[{j}]", f"names unknown group {fb!r}"))
                    elif fb == group:
                        problems.append(
                            (f"{field}.{group}[{j}]", "a group cannot fall back to itself")
                        )
        for group in self.hedging:
            if group != "*" and group not in groups:
                problems.append((f"hedging.{group}", "is not a group"))
        tags = {t for d in self.deployments for t in d.tags}
        for k, b in enumerate(self.budgets):
            if b.scope == "group" and b.name not in groups:
                problems.append((f"budgets[{k}].name", f"names unknown group {b.name!r}"))
            elif b.scope == "tag" and b.name not in tags:
                problems.append((f"budgets[{k}].name", f"no deployment carries tag {b.name!r}"))
        if not problems:
            for field, mapping in maps.items():
                cycle = _find_cycle(expand_wildcard(mapping, groups))
                if cycle:
                    problems.append((field, "cycle " + " -> ".join(cycle)))
        if problems:
            raise ConfigError(problems)
        return self


def expand_wildcard(
    mapping: Mapping[str, Sequence[str]], groups: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Each group's own chain; a group without an entry gets the ``"*"`` chain, minus
    itself."""
    default = tuple(mapping.get("*", ()))
    out: dict[str, tuple[str, ...]] = {}
    # Configured groups first, in the order given, so a reported cycle reads the way
    # the user wrote it; then the rest, sorted, for a stable order.
    known = set(groups)
    ordered = [g for g in mapping if g in known]
    ordered += sorted(known.difference(ordered))
    for g in ordered:
        chain = mapping.get(g)
        out[g] = tuple(chain) if chain is not None else tuple(x for x in default if x != g)
    return out


def _find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle in the fallback graph as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in graph:
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def load_config_source(source: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A config mapping, or the path of a JSON file holding one."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot be read ({exc.strerror or exc})")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [(str(path), f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")]
        ) from None
    if not isinstance(data, dict):
        raise ConfigError([(str(path), "must hold a JSON object at the top level")])
    return data
