"""Configuration models: deployments and the router's config (the policies it holds
are in `interlock.policies`, re-exported here).

Everything is validated when it is built. A problem is reported as a `ConfigError`
whose lines name the field and what is wrong with it (``deployments[2].rpm: must be
> 0``); input values are never echoed, so a key cannot leak through an error.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from interlock.sources import read_config

__all__ = [
    "AzureADTokenProvider",
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


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

AzureADTokenProvider = Callable[[], Any]
"""A callable or async callable taking no arguments and returning a Microsoft Entra ID
access token: a string, or an object with ``token`` and ``expires_on`` (epoch seconds),
like azure-identity's ``AccessToken``. See docs/providers.md."""

# Optional extras: (the module a provider needs, the extra that installs it).
_EXTRAS: dict[str, tuple[str, str]] = {
    "bedrock": ("botocore", "bedrock"),
    "vertex": ("google.auth", "vertex"),
    "azure-identity": ("azure.identity", "azure"),
}
_NAME = r"^[a-z0-9][a-z0-9-]*$"


def _module_missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ImportError:  # a parent package is absent
        return True


def extra_missing(what: str) -> Problem | None:
    """``(field, problem)`` when the optional extra `what` needs is not installed."""
    module, extra = _EXTRAS[what]
    if not _module_missing(module):
        return None
    field = "azure_ad_token_provider" if what == "azure-identity" else "provider"
    return (field, f"{what!r} needs {module}: pip install 'interlock[{extra}]'")


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
    input_cost_per_token: float | None = Field(default=None, ge=0)
    """USD per prompt token. None (and `output_cost_per_token` None too): the built-in
    price of the model (`interlock.prices`, docs/operations.md); ``0.0`` means free.
    Giving either of the two makes all four prices the deployment's own (an unset
    output price is then 0, unset cache prices the input price)."""
    output_cost_per_token: float | None = Field(default=None, ge=0)
    """USD per completion token (reasoning included); None: see `input_cost_per_token`."""
    cache_read_cost_per_token: float | None = Field(default=None, ge=0)
    """Price of a prompt token read from the provider's prompt cache (OpenAI
    ``cached_tokens``, Anthropic ``cache_read_input_tokens``, Gemini
    ``cachedContentTokenCount``); None: the built-in cache-read price, or the input
    price."""
    cache_write_cost_per_token: float | None = Field(default=None, ge=0)
    """Price of a prompt token written to the prompt cache (Anthropic
    ``cache_creation_input_tokens``); None: the built-in cache-write price, or the
    input price."""
    context_window: int | None = Field(default=None, gt=0)
    """Tokens the model holds (prompt plus output); None: the built-in window of the
    model when known, else no pre-check."""
    base_model: str | None = Field(default=None, min_length=1)
    """The model this deployment serves, for built-in prices and context window when
    `model` is not a model name (an Azure deployment name, a Bedrock inference-profile
    ARN, a gateway's alias). Never sent upstream."""
    stream_usage: bool = True
    """Ask for usage in the final stream chunk (``stream_options.include_usage``)."""
    api_version: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    """Azure: the ``api-version`` query parameter (default ``2024-10-21``); Anthropic: the
    ``anthropic-version`` header (default ``2023-06-01``). Other providers ignore it."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    """``max_tokens`` sent to a provider that requires one (Anthropic) when the call
    sets none; defaults to 4096 there."""
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    """Extra HTTP headers sent with every request to this deployment (``anthropic-beta``,
    ``OpenAI-Organization``, a gateway's routing headers); they win over the
    transport's own. Kept out of every repr: a value may be a credential."""
    aws_region: str | None = Field(default=None, pattern=_NAME)
    """Bedrock: the AWS region (``us-east-1``); required for ``provider="bedrock"``."""
    aws_profile: str | None = Field(default=None, min_length=1)
    """Bedrock: a named profile of the AWS config files; None: botocore's default chain
    (environment, config files, container and instance roles)."""
    aws_access_key_id: str | None = Field(default=None, min_length=1, repr=False)
    """Bedrock: explicit credentials, instead of the chain; with `aws_secret_access_key`."""
    aws_secret_access_key: SecretStr | None = Field(default=None, repr=False)
    aws_session_token: SecretStr | None = Field(default=None, repr=False)
    vertex_project: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.:-]*$")
    """Vertex AI: the Google Cloud project id; required for ``provider="vertex"``."""
    vertex_location: str | None = Field(default=None, pattern=_NAME)
    """Vertex AI: the region (``us-east5``) or ``global``; required for ``provider="vertex"``."""
    vertex_credentials: str | None = Field(default=None, min_length=1)
    """Vertex AI: the path of a credentials JSON file (a service account key); None:
    application default credentials."""
    azure_ad_token_provider: AzureADTokenProvider | Literal["azure-identity"] | None = Field(
        default=None, repr=False, exclude=True
    )
    """Azure: authenticate with Microsoft Entra ID instead of `api_key`. A callable (in
    Python only; a JSON config cannot hold one), or ``"azure-identity"`` for interlock's
    own provider over azure-identity's ``DefaultAzureCredential``."""
    mode: Literal["chat", "embedding"] = "chat"
    """What the deployment serves, for `Router.health_check` and active probes: they
    send a one-token chat completion, or the embedding of one word."""
    proxy: str | None = Field(default=None, repr=False)
    """An HTTP proxy for this deployment's requests (``http://[user:pass@]host:port``),
    or ``"direct"`` for none; None: the environment's (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``NO_PROXY``) when the router's `trust_env` is on. Kept out of reprs: it may hold a
    password."""
    ca_bundle: str | None = Field(default=None, min_length=1)
    """A PEM file of the certificate authorities to trust for this deployment's TLS,
    instead of the system's (a private CA, a corporate TLS-inspecting proxy)."""
    verify: bool = True
    """False: do not verify the server's TLS certificate (a self-signed test server).
    Never on a network you do not control."""

    @model_validator(mode="before")
    @classmethod
    def _preset_api_base(cls, data: Any) -> Any:
        # A built-in provider named without an api_base gets its preset's address.
        if isinstance(data, Mapping) and data.get("api_base") is None:
            preset = preset_for(str(data.get("provider") or "openai"))
            if preset is not None:
                base = preset.base_for(data)
                if base is None:
                    missing = [f for f in preset.base_fields if not data.get(f)] or ["api_base"]
                    raise ConfigError(
                        [(f, f"is required for provider {preset.name!r}") for f in missing]
                    )
                data = {**data, "api_base": base}
        return data

    @model_validator(mode="after")
    def _check_cloud_fields(self) -> Self:
        problems = _cloud_problems(self)
        if problems:
            raise ConfigError(problems)
        return self

    @field_validator("api_base")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use api_key")
        return value.rstrip("/")

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        if value is None or value == "direct":
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Never echo the value: it may hold a password.
            raise ValueError('must be an http:// or https:// proxy URL with a host, or "direct"')
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        if self.ca_bundle is not None and not self.verify:
            raise ConfigError([("ca_bundle", "has no use with verify=false; set one or the other")])
        return self

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(
                    "header names must be HTTP tokens (letters, digits, -_.!#$%&'*+^`|~)"
                )
            if "\r" in header or "\n" in header:
                raise ValueError(f"header {name} must not hold a line break")
        return value

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    def api_key_value(self) -> str | None:
        """The key in clear text, for transports only."""
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret in clear text (key, AWS secret key and session
        token), for scrubbing them out of text."""
        secrets = (self.api_key, self.aws_secret_access_key, self.aws_session_token)
        found = tuple(s.get_secret_value() for s in secrets if s is not None)
        password = urlsplit(self.proxy).password if self.proxy else None
        return (*found, password) if password else found


def _cloud_problems(d: Deployment) -> list[Problem]:
    """What is missing or contradictory in a deployment's cloud fields."""
    problems: list[Problem] = []
    if d.provider == "bedrock":
        if d.aws_region is None:
            problems.append(("aws_region", "is required for provider 'bedrock'"))
        if (d.aws_access_key_id is None) != (d.aws_secret_access_key is None):
            problems.append(
                ("aws_secret_access_key", "aws_access_key_id and aws_secret_access_key go together")
            )
        if d.aws_session_token is not None and d.aws_access_key_id is None:
            problems.append(("aws_session_token", "needs aws_access_key_id"))
    if d.provider == "vertex":
        for field in ("vertex_project", "vertex_location"):
            if getattr(d, field) is None:
                problems.append((field, "is required for provider 'vertex'"))
    if d.azure_ad_token_provider is not None:
        if d.provider != "azure":
            problems.append(("azure_ad_token_provider", "is only for provider 'azure'"))
        if d.api_key is not None:
            problems.append(
                ("azure_ad_token_provider", "give api_key or a token provider, not both")
            )
    needed = [d.provider] if d.provider in ("bedrock", "vertex") else []
    if d.azure_ad_token_provider == "azure-identity":
        needed.append("azure-identity")
    problems += [p for p in map(extra_missing, needed) if p is not None]
    return problems


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
    trust_env: bool = True
    """Take HTTP proxies from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``) for deployments that set no `proxy`, as requests,
    httpx and LiteLLM do. Read once, when the router is built."""

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
    """A config mapping, or the path of a JSON or YAML file holding one, as keyword
    arguments of `RouterConfig`, with its secret references resolved (see
    `interlock.sources`); a `ConfigError` for anything else."""
    return read_config(source).data
