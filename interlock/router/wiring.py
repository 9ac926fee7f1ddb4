"""How a Router is put together: the constructor turns its keywords into a
`RouterConfig`, then builds and connects the parts (pools, fallbacks, health, observer,
pipeline, queues, cache, budgets, shared ledger).

`Router` inherits this rather than holding a parts object, so the parts stay plain
attributes of the router and the request path reaches each with one lookup.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from interlock.cache.response import ResponseCache
from interlock.clock import Clock, MonotonicClock
from interlock.config import (
    Budget,
    Deployment,
    HealthPolicy,
    HedgePolicy,
    QueuePolicy,
    RetryPolicy,
    RouterConfig,
    SharedState,
)
from interlock.deadline import DeadlineWheel
from interlock.errors import ConfigError
from interlock.health.probe import HealthProber
from interlock.health.tracker import HealthTracker
from interlock.limits.queue import WaitQueue
from interlock.limits.shared import RedisLedger, SharedLedger
from interlock.limits.spend import attach_budgets
from interlock.limits.tokens import TokenCounter
from interlock.observability.hooks import Hook
from interlock.observability.metrics import PrometheusMetrics
from interlock.observability.observer import Observer
from interlock.policies import CacheConfig
from interlock.providers.base import Transport
from interlock.providers.http import HttpClient
from interlock.providers.params import UnsupportedParams
from interlock.providers.registry import builtin_transports
from interlock.records.state import DeploymentState
from interlock.router.fallbacks import FallbackTable
from interlock.router.pipeline import Pipeline
from interlock.router.pool import DeploymentPool
from interlock.strategies.base import Strategy, StrategyLike
from interlock.strategies.registry import resolve_strategy

# StrategyLike's forward references resolve in the namespace of the function that
# uses it, so typing.get_type_hints(Router.__init__) needs Request here.
from interlock.types import Request  # noqa: F401

__all__ = ["RouterParts"]


class RouterParts:
    """A Router's parts, built from its configuration; `Router` adds the requests,
    lifecycle and introspection."""

    def __init__(
        self,
        deployments: Sequence[Deployment | Mapping[str, Any]],
        *,
        strategy: StrategyLike = "p2c-ewma",
        strategies: Mapping[str, StrategyLike] | None = None,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        aliases: Mapping[str, str] | None = None,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        health: HealthPolicy | Mapping[str, Any] | None = None,
        timeout: float = 120.0,
        expected_output_tokens: int = 256,
        clock: Clock | None = None,
        transports: Mapping[str, Transport] | None = None,
        seed: int | None = None,
        connection_limit: int = 1000,
        unsupported_params: UnsupportedParams = "drop",
        cache: CacheConfig | Mapping[str, Any] | None = None,
        hooks: Sequence[Hook] | None = None,
        metrics: PrometheusMetrics | None = None,
        context_window_fallbacks: Mapping[str, Sequence[str]] | None = None,
        content_policy_fallbacks: Mapping[str, Sequence[str]] | None = None,
        max_fallback_depth: int = 3,
        hedging: Mapping[str, HedgePolicy | Mapping[str, Any]] | None = None,
        budgets: Sequence[Budget | Mapping[str, Any]] = (),
        queue: QueuePolicy | Mapping[str, Any] | None = None,
        shared: SharedState | Mapping[str, Any] | None = None,
        tokenizer: TokenCounter | None = None,
    ) -> None:
        cfg = RouterConfig(
            deployments=tuple(deployments),
            strategy=strategy if isinstance(strategy, str) else "p2c-ewma",
            strategies={g: v for g, v in (strategies or {}).items() if isinstance(v, str)},
            # A bare string is passed on as is, so validation rejects it instead of
            # splitting it into one-letter group names.
            fallbacks={
                k: v if isinstance(v, str) else tuple(v) for k, v in (fallbacks or {}).items()
            },
            aliases=dict(aliases or {}),
            retry=retry if retry is not None else RetryPolicy(),
            health=health if health is not None else HealthPolicy(),
            timeout=timeout,
            expected_output_tokens=expected_output_tokens,
            unsupported_params=unsupported_params,
            cache=cache if cache is not None else CacheConfig(),
            context_window_fallbacks={
                k: v if isinstance(v, str) else tuple(v)
                for k, v in (context_window_fallbacks or {}).items()
            },
            content_policy_fallbacks={
                k: v if isinstance(v, str) else tuple(v)
                for k, v in (content_policy_fallbacks or {}).items()
            },
            max_fallback_depth=max_fallback_depth,
            hedging=dict(hedging or {}),
            budgets=tuple(budgets),
            queue=queue if queue is not None else QueuePolicy(),
            shared=shared,
        )
        self.config = cfg
        self._clock: Clock = clock or MonotonicClock()
        self._rng = random.Random(seed)
        self._http = HttpClient(connection_limit=connection_limit)
        self._deadlines = DeadlineWheel()
        self._transports = builtin_transports(self._http, self._deadlines)
        self._transports.update(transports or {})
        try:
            self._strategy: Strategy = resolve_strategy(strategy, self._rng)
        except (ValueError, TypeError) as exc:
            raise ConfigError([("strategy", str(exc))]) from None

        self._states = self._build_states(cfg.deployments)
        by_group: dict[str, list[DeploymentState]] = {}
        for s in self._states:
            by_group.setdefault(s.group, []).append(s)
        unknown = sorted(set(strategies or {}) - by_group.keys())
        if unknown:
            raise ConfigError([(f"strategies.{g}", "is not a group") for g in unknown])
        self._pools = {
            g: DeploymentPool(g, ss, self._group_strategy(g, strategy, strategies), self._rng)
            for g, ss in by_group.items()
        }
        self._names: dict[str, str] = {g: g for g in self._pools}
        self._names.update(cfg.aliases)
        self._fallbacks = FallbackTable(
            self._pools,
            cfg.fallbacks,
            context_window=cfg.context_window_fallbacks,
            content_policy=cfg.content_policy_fallbacks,
            max_depth=cfg.max_fallback_depth,
        )
        self._chains = self._fallbacks.chains
        self._health = HealthTracker(cfg.health, self._rng)
        self._health.attach(self._states)
        # Hooks and metrics: see docs/observability.md.
        self._observer = Observer(self._clock, self._states, hooks or (), metrics)
        self._pipeline = Pipeline(
            self._pools,
            self._chains,
            cfg.retry,
            self._health,
            self._clock,
            self._rng,
            fallbacks=self._fallbacks,
            hedging=cfg.hedging,
            observer=self._observer,
        )
        self._prober = HealthProber(self._states, self._health, self._clock, cfg.health)
        self._timeout = cfg.timeout
        self._expected_output = cfg.expected_output_tokens
        self._closed = False
        self._unsupported: UnsupportedParams = cfg.unsupported_params
        self._cache = ResponseCache(cfg.cache, self._pools, self._clock)
        self._cache_active = cfg.cache.active
        self._tokens = tokenizer or TokenCounter()
        self._budgets, problems = attach_budgets(cfg.budgets, self._states, self._clock.now())
        if problems:
            raise ConfigError(problems)
        if cfg.queue.max_wait > 0:
            self._pipeline.queue_wait = cfg.queue.max_wait
            for g, pool in self._pools.items():
                q = WaitQueue(self._clock, cfg.queue.max_size)
                self._pipeline.queues[g] = q
                for st in pool.states:
                    st.waiters = q
        self._shared: SharedLedger | None = None
        if cfg.shared is not None:
            self._shared = RedisLedger(cfg.shared, self._states, self._clock)
            self._pipeline.shared = self._shared

    def _group_strategy(
        self, group: str, default: StrategyLike, per_group: Mapping[str, StrategyLike] | None
    ) -> Strategy:
        """A group's strategy: its own setting or the default; a name gives every
        group a fresh instance (strategies keep per-group state)."""
        spec = (per_group or {}).get(group, default)
        if spec is default and not isinstance(spec, str):
            return self._strategy
        try:
            return resolve_strategy(spec, self._rng)
        except (ValueError, TypeError) as exc:
            where = "strategy" if spec is default else f"strategies.{group}"
            raise ConfigError([(where, str(exc))]) from None

    def _build_states(self, deployments: Sequence[Deployment]) -> list[DeploymentState]:
        problems: list[tuple[str, str]] = []
        explicit = {d.id for d in deployments if d.id is not None}
        counters: dict[str, int] = {}
        states: list[DeploymentState] = []
        for i, d in enumerate(deployments):
            transport = self._transports.get(d.provider)
            if transport is None:
                problems.append(
                    (
                        f"deployments[{i}].provider",
                        f"unknown provider {d.provider!r}; known: "
                        f"{', '.join(sorted(self._transports))}",
                    )
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
        return states
