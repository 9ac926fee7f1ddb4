"""How a Router is put together, in one pass: `router_config` validates the keywords
of ``Router(...)`` once into a `RouterConfig` (``Router.from_config`` validates its
mapping or file once the same way), then `build_parts` builds every part through its
constructor, each from the parts below it: states, pools, fallbacks, health,
observer, attempts, queues, shared ledger, pipeline, prober, cache, budgets.

The result is a frozen `RouterParts`; `Router` keeps the few the request path reads
as plain attributes, and `router.parts` is the documented seam for tests and tools.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from interlock.cache.response import ResponseCache
from interlock.clock import Clock, MonotonicClock
from interlock.config import (
    Deployment,
    HedgePolicy,
    QueuePolicy,
    RouterConfig,
)
from interlock.deadline import DeadlineWheel
from interlock.errors import ConfigError
from interlock.health.probe import HealthProber
from interlock.health.tracker import HealthTracker
from interlock.limits.queue import WaitQueue
from interlock.limits.shared import RedisLedger, SharedLedger
from interlock.limits.spend import attach_budgets
from interlock.limits.tokens import TokenCounter
from interlock.observability.hooks import HOOK_METHODS, Hook
from interlock.observability.metrics import PrometheusMetrics
from interlock.observability.observer import Observer
from interlock.observability.tracing import Tracing
from interlock.providers.endpoints import EndpointClient
from interlock.providers.http import HttpClient
from interlock.providers.network import configure_networks
from interlock.providers.registry import builtin_transports
from interlock.records.budget import BudgetCounter
from interlock.records.state import DeploymentState
from interlock.records.transport import Transport
from interlock.router.attempt import Attempts
from interlock.router.fallbacks import FallbackTable
from interlock.router.hedge import Hedger
from interlock.router.pipeline import Pipeline
from interlock.router.pool import DeploymentPool
from interlock.router.traced import TracedPipeline
from interlock.strategies.base import Strategy, StrategyLike
from interlock.strategies.registry import resolve_strategy

# StrategyLike's forward references resolve in the namespace of the function that
# uses it, so typing.get_type_hints(Router.__init__) needs Request here.
from interlock.types import Request  # noqa: F401

__all__ = ["RouterParts", "build_parts", "object_problems", "router_config"]


@dataclass(frozen=True, slots=True, eq=False)
class RouterParts:
    """Everything a Router is made of, built by `build_parts`. Read-only: for tests,
    benchmarks and tools that need to look inside (``router.parts``); application
    code has no need of it."""

    config: RouterConfig
    clock: Clock
    rng: random.Random
    http: HttpClient
    deadlines: DeadlineWheel
    transports: Mapping[str, Transport]
    strategy: Strategy
    """The default strategy (each group named by a string gets its own instance)."""
    states: tuple[DeploymentState, ...]
    pools: Mapping[str, DeploymentPool]
    names: Mapping[str, str]
    """Group or alias -> group."""
    fallbacks: FallbackTable
    health: HealthTracker
    attempts: Attempts
    """Opens and ends attempts; its `observer` is where every event goes."""
    queues: Mapping[str, WaitQueue]
    shared: SharedLedger | None
    pipeline: Pipeline
    prober: HealthProber
    cache: ResponseCache
    tokens: TokenCounter
    budget_counters: tuple[BudgetCounter, ...]
    lookup: dict[str, DeploymentPool]
    """Where running calls and attempts look groups up: `pools` until the first
    runtime change (the same mapping); after it, every group the router has had,
    a removed group's pool kept empty, so a call that was routed before a change
    ends cleanly after it (see interlock/router/runtime.py)."""
    entry: Pipeline | TracedPipeline
    """What the router's calls run: the pipeline, or the pipeline inside a trace."""
    endpoints: EndpointClient
    """Sends the other endpoints' and passthrough requests (one per router, so each
    deployment's address and headers are made once)."""
    tracing: Tracing | None = None
    """Makes the calls' OpenTelemetry spans (None: tracing is off)."""


def router_config(
    deployments: object,
    *,
    strategy: StrategyLike,
    strategies: object,
    **settings: Any,
) -> RouterConfig:
    """The `RouterConfig` of ``Router(...)``'s keywords (validated once, here).
    Strategies given as instances or functions stay out of it: a config holds names.

    Values are handed to validation as they were given (a list where a mapping
    belongs, None where a list does): converting them here would fail with the
    converter's TypeError instead of a `ConfigError` naming the field.
    """
    return RouterConfig(
        deployments=deployments,
        strategy=strategy if isinstance(strategy, str) else "p2c-ewma",
        strategies=_strategy_names(strategies),
        **{k: v for k, v in settings.items() if v is not None},
    )


def _strategy_names(strategies: object) -> object:
    """The names among a ``strategies=`` mapping (its instances and functions are built
    by `build_parts`); anything but a mapping keyed by strings is passed on as it is,
    for validation to refuse."""
    if strategies is None:
        return {}
    if not isinstance(strategies, Mapping) or not all(isinstance(k, str) for k in strategies):
        return strategies
    return {g: v for g, v in strategies.items() if isinstance(v, str)}


def build_parts(
    cfg: RouterConfig,
    *,
    strategy: StrategyLike | None = None,
    strategies: Mapping[str, StrategyLike] | None = None,
    clock: Clock | None = None,
    transports: Mapping[str, Transport] | None = None,
    seed: int | None = None,
    connection_limit: int = 1000,
    hooks: Sequence[Hook] | None = None,
    metrics: PrometheusMetrics | None = None,
    tokenizer: TokenCounter | None = None,
    tracing: object = None,
) -> RouterParts:
    """Build a router's parts from a validated config. `strategy` and `strategies`
    may hold instances and functions beside the config's names (they win over it)."""
    problems = object_problems(clock, transports, seed, hooks, metrics, tokenizer)
    if problems:
        raise ConfigError(problems)
    clock = clock or MonotonicClock()
    rng = random.Random(seed)
    http = HttpClient(connection_limit=connection_limit)
    deadlines = DeadlineWheel()
    # Off the hot path: the wheel calls it only when it first sees a new loop.
    deadlines.on_new_loop = http.check_loop
    all_transports = builtin_transports(http, deadlines)
    all_transports.update(transports or {})
    default = cfg.strategy if strategy is None else strategy
    per_group: dict[str, StrategyLike] = {**cfg.strategies, **(strategies or {})}
    default_strategy = _resolve(default, rng, "strategy")
    states = _build_states(cfg.deployments, all_transports)
    configure_networks(http, [s.deployment for s in states], cfg.trust_env)
    pools = _build_pools(states, default, default_strategy, per_group, rng)
    names: dict[str, str] = {g: g for g in pools}
    names.update(cfg.aliases)
    fallbacks = _fallback_table(cfg, pools)
    health = HealthTracker(cfg.health, rng)
    health.attach(states)
    try:
        tracer = Tracing.of(tracing)
    except TypeError as exc:
        raise ConfigError([("tracing", str(exc))]) from None
    observer = Observer(clock, states, hooks or (), metrics, traced=tracer is not None)
    budget_counters, problems = attach_budgets(cfg.budgets, states, clock.now())
    if problems:
        raise ConfigError(problems)
    queues = _build_queues(cfg.queue, pools, clock)
    shared = RedisLedger(cfg.shared, states, clock) if cfg.shared is not None else None
    hedgers = _build_hedgers(cfg.hedging, pools)
    attempts = Attempts(
        clock, health, observer, pools, {g: h.record for g, h in hedgers.items()}, shared
    )
    pipeline = Pipeline(
        pools,
        fallbacks,
        cfg.retry,
        attempts,
        rng,
        hedgers=hedgers,
        queues=queues,
        queue_wait=cfg.queue.max_wait,
    )
    return RouterParts(
        config=cfg,
        clock=clock,
        rng=rng,
        http=http,
        deadlines=deadlines,
        transports=all_transports,
        strategy=default_strategy,
        states=states,
        pools=pools,
        names=names,
        fallbacks=fallbacks,
        health=health,
        attempts=attempts,
        queues=queues,
        shared=shared,
        pipeline=pipeline,
        prober=HealthProber(states, health, clock, cfg.health),
        cache=ResponseCache(cfg.cache, pools, clock),
        tokens=tokenizer or TokenCounter(),
        budget_counters=tuple(budget_counters),
        lookup=pools,
        tracing=tracer,
        entry=pipeline if tracer is None else TracedPipeline(pipeline, tracer),
        endpoints=EndpointClient(http, deadlines),
    )


def object_problems(
    clock: object,
    transports: object,
    seed: object,
    hooks: object,
    metrics: object,
    tokenizer: object,
) -> list[tuple[str, str]]:
    """What is wrong with the keywords a config file cannot hold (objects), checked
    before anything is built from them: otherwise the first use would fail with an
    AttributeError or TypeError far from the keyword."""
    problems = [
        (name, f"must be {what} or None, not a {type(value).__name__}")
        for name, value, ok, what in (
            ("clock", clock, isinstance(clock, Clock), "a Clock (now() and sleep())"),
            ("seed", seed, isinstance(seed, int), "an int"),
            ("metrics", metrics, isinstance(metrics, PrometheusMetrics), "a PrometheusMetrics"),
            ("tokenizer", tokenizer, isinstance(tokenizer, TokenCounter), "a TokenCounter"),
        )
        if value is not None and not ok
    ]
    return problems + _transport_problems(transports) + _hook_problems(hooks)


def _transport_problems(transports: object) -> list[tuple[str, str]]:
    if transports is None:
        return []
    if not isinstance(transports, Mapping):
        return [("transports", f"must be a mapping of provider names to transports, not a "
                 f"{type(transports).__name__}")]  # fmt: skip
    problems = []
    for name, t in transports.items():
        if not isinstance(name, str):
            problems.append(("transports", "keys must be provider names (strings)"))
        elif not isinstance(t, Transport):
            problems.append(
                (f"transports.{name}", "must be a Transport (chat, open_stream, embed, aclose)")
            )
    return problems


def _hook_problems(hooks: object) -> list[tuple[str, str]]:
    if hooks is None:
        return []
    if not isinstance(hooks, Sequence) or isinstance(hooks, str | bytes):
        return [("hooks", f"must be a list of hooks, not a {type(hooks).__name__}")]
    return [
        (f"hooks[{i}].{name}", "is not callable")
        for i, hook in enumerate(hooks)
        for name in HOOK_METHODS
        if not callable(getattr(hook, name, _no_hook))
    ]


def _no_hook() -> None: ...


def _resolve(spec: StrategyLike, rng: random.Random, where: str) -> Strategy:
    try:
        return resolve_strategy(spec, rng)
    except (ValueError, TypeError) as exc:
        raise ConfigError([(where, str(exc))]) from None


def _fallback_table(cfg: RouterConfig, groups: Iterable[str]) -> FallbackTable:
    """The config's fallback chains over `groups` (construction and runtime changes)."""
    return FallbackTable(
        groups,
        cfg.fallbacks,
        context_window=cfg.context_window_fallbacks,
        content_policy=cfg.content_policy_fallbacks,
        max_depth=cfg.max_fallback_depth,
    )


def _build_pools(
    states: Sequence[DeploymentState],
    default: StrategyLike,
    default_strategy: Strategy,
    per_group: Mapping[str, StrategyLike],
    rng: random.Random,
) -> dict[str, DeploymentPool]:
    """One pool per group. A group's strategy is its own setting or the default; a
    name gives every group a fresh instance (strategies keep per-group state)."""
    by_group: dict[str, list[DeploymentState]] = {}
    for s in states:
        by_group.setdefault(s.group, []).append(s)
    unknown = sorted(set(per_group) - by_group.keys())
    if unknown:
        raise ConfigError([(f"strategies.{g}", "is not a group") for g in unknown])
    pools: dict[str, DeploymentPool] = {}
    for g, ss in by_group.items():
        spec = per_group.get(g, default)
        if g not in per_group and not isinstance(spec, str):
            strategy = default_strategy  # one instance or function: shared as given
        else:
            strategy = _resolve(spec, rng, f"strategies.{g}" if g in per_group else "strategy")
        pools[g] = DeploymentPool(g, ss, strategy, rng)
    return pools


def _build_states(
    deployments: Sequence[Deployment], transports: Mapping[str, Transport]
) -> tuple[DeploymentState, ...]:
    """A state per deployment, with its transport and an id (``group-n`` when unset)."""
    problems: list[tuple[str, str]] = []
    explicit = {d.id for d in deployments if d.id is not None}
    counters: dict[str, int] = {}
    states: list[DeploymentState] = []
    for i, d in enumerate(deployments):
        transport = transports.get(d.provider)
        if transport is None:
            known = ", ".join(sorted(transports))
            problems.append(
                (f"deployments[{i}].provider", f"unknown provider {d.provider!r}; known: {known}")
            )
            continue
        if d.id is None:
            n = counters.get(d.group, 0)
            while f"{d.group}-{n}" in explicit:
                n += 1
            counters[d.group] = n + 1
            d = d.model_copy(update={"id": f"{d.group}-{n}"})
        states.append(DeploymentState(d, transport))
    if problems:
        raise ConfigError(problems)
    return tuple(states)


def _build_queues(
    policy: QueuePolicy, pools: Mapping[str, DeploymentPool], clock: Clock
) -> dict[str, WaitQueue]:
    """A capacity line per group when queueing is on (``max_wait > 0``)."""
    if policy.max_wait <= 0:
        return {}
    queues: dict[str, WaitQueue] = {}
    for g, pool in pools.items():
        q = queues[g] = WaitQueue(clock, policy.max_size)
        for st in pool.states:
            st.waiters = q
    return queues


def _build_hedgers(
    hedging: Mapping[str, HedgePolicy], pools: Mapping[str, DeploymentPool]
) -> dict[str, Hedger]:
    """A hedger per group with a policy of its own or the ``"*"`` one."""
    out: dict[str, Hedger] = {}
    for g in pools:
        policy = hedging.get(g, hedging.get("*"))
        if policy is not None:
            out[g] = Hedger(policy)
    return out
