"""Configuration models: deployments and the router's config (the policies it holds
are in `interlock.policies`, re-exported here).

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

from pydantic import Field, SecretStr, field_validator, model_validator

from interlock.errors import ConfigError
from interlock.models import ConfigModel, validation_problems
from interlock.policies import (
    Budget,
    CacheConfig,
    HealthPolicy,
    HedgePolicy,
    QueuePolicy,
    RetryPolicy,
    SharedState,
)
from interlock.presets import preset_for

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


class Deployment(ConfigModel):
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


class RouterConfig(ConfigModel):
    """The router's whole configuration, as `Router.from_config` reads it."""

    _where: ClassVar[str] = ""

    deployments: tuple[Deployment, ...] = Field(min_length=1)
    strategy: str = Field(default="p2c-ewma", min_length=1)
    """The default strategy's name (see docs/strategies.md). Names are checked against
    the strategy registry when the router is built (`build_parts`): this module sits
    below the strategies and cannot import them."""
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

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        groups = {d.group for d in self.deployments}
        maps = {
            "fallbacks": self.fallbacks,
            "context_window_fallbacks": self.context_window_fallbacks,
            "content_policy_fallbacks": self.content_policy_fallbacks,
        }
        problems = [
            *_duplicate_ids(self.deployments),
            *_alias_problems(self.aliases, groups),
            *_unknown_groups("strategies", self.strategies, groups, wildcard=False),
        ]
        for field, mapping in maps.items():
            problems += _fallback_problems(field, mapping, groups)
        problems += _unknown_groups("hedging", self.hedging, groups, wildcard=True)
        problems += _budget_problems(self.budgets, self.deployments, groups)
        if not problems:
            for field, mapping in maps.items():
                cycle = _find_cycle(expand_wildcard(mapping, groups))
                if cycle:
                    problems.append((field, "cycle " + " -> ".join(cycle)))
        if problems:
            raise ConfigError(problems)
        return self


Problem = tuple[str, str]
"""(field path, what is wrong with it), as `ConfigError` takes them."""


def _duplicate_ids(deployments: Sequence[Deployment]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, d in enumerate(deployments):
        if d.id is None:
            continue
        if d.id in seen:
            problems.append(
                (f"deployments[{i}].id", f"duplicates deployments[{seen[d.id]}].id {d.id!r}")
            )
        seen.setdefault(d.id, i)
    return problems


def _alias_problems(aliases: Mapping[str, str], groups: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    for name, target in aliases.items():
        if name in groups:
            problems.append((f"aliases.{name}", "is already a group name"))
        if target not in groups:
            problems.append((f"aliases.{name}", f"names unknown group {target!r}"))
    return problems


def _unknown_groups(
    field: str, keys: Iterable[str], groups: set[str], *, wildcard: bool
) -> list[Problem]:
    """Keys of a per-group mapping that name no group (``"*"`` is allowed with `wildcard`)."""
    return [
        (f"{field}.{key}", "is not a group")
        for key in keys
        if key not in groups and not (wildcard and key == "*")
    ]


def _fallback_problems(
    field: str, mapping: Mapping[str, Sequence[str]], groups: set[str]
) -> list[Problem]:
    problems: list[Problem] = []
    for group, chain in mapping.items():
        if group != "*" and group not in groups:
            problems.append((f"{field}.{group}", "is not a group"))
        for j, fb in enumerate(chain):
            if fb not in groups:
                problems.append((f"{field}.{group}[{j}]", f"names unknown group {fb!r}"))
            elif fb == group:
                problems.append((f"{field}.{group}[{j}]", "a group cannot fall back to itself"))
    return problems


def _budget_problems(
    budgets: Sequence[Budget], deployments: Sequence[Deployment], groups: set[str]
) -> list[Problem]:
    problems: list[Problem] = []
    tags = {t for d in deployments for t in d.tags}
    for k, b in enumerate(budgets):
        if b.scope == "group" and b.name not in groups:
            problems.append((f"budgets[{k}].name", f"names unknown group {b.name!r}"))
        elif b.scope == "tag" and b.name not in tags:
            problems.append((f"budgets[{k}].name", f"no deployment carries tag {b.name!r}"))
    return problems


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
    """A cycle in the fallback graph as a path that returns to its start, or None.

    Depth-first with an explicit stack, so a chain of any length is walked without
    recursion."""
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        path = [start]
        on_path = {start}
        todo = [iter(graph.get(start, ()))]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                node = path.pop()
                on_path.discard(node)
                done.add(node)
                todo.pop()
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                todo.append(iter(graph.get(nxt, ())))
    return None


def load_config_source(source: object) -> dict[str, Any]:
    """A config mapping, or the path of a JSON file holding one, as keyword arguments
    of `RouterConfig`; a `ConfigError` for anything else."""
    if isinstance(source, Mapping):
        data = dict(source)
    elif isinstance(source, str | os.PathLike):
        data = _read_json(Path(source))
    else:
        what = "must be a mapping, a RouterConfig or a JSON file's path"
        raise ConfigError([("", f"{what}, not a {_kind(source)}")])
    keys = [k for k in data if not isinstance(k, str)]
    if keys:
        # The key itself is not shown: a config may hold secrets.
        raise ConfigError([("", f"keys must be field names (strings), not a {_kind(keys[0])}")])
    return data


def _kind(value: object) -> str:
    return type(value).__name__


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    except ValueError:  # not UTF-8, or a NUL in the path
        problem = "cannot be read as UTF-8 text"
    else:
        problem = ""
    if problem:
        raise ConfigError([(str(path), problem)])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    except RecursionError:
        problem = "nested too deeply"
    if problem:
        raise ConfigError([(str(path), problem)])
    if not isinstance(data, dict):
        raise ConfigError([(str(path), "must hold a JSON object at the top level")])
    return data
