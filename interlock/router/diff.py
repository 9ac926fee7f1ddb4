"""The diff behind runtime changes (`RuntimeChanges`, runtime.py): validate a new
config against a router's parts without touching them (`plan_change`), apply it in
one synchronous step keeping every surviving deployment's state (`apply_plan`), and
release removed deployments once their last request has settled (`drain`).

A change is validated exactly as construction validates (`RouterConfig`, then the
checks of `build_parts`: providers, strategy names, budgets), on throwaway states, so
a refused change raises the same `ConfigError` and leaves every part untouched. Then:

- a deployment whose id survives keeps its `DeploymentState` (health, circuit,
  latency estimates, rate windows, spend, in-flight count, strategy estimates); its
  new settings are copied onto it, so a changed limit applies from the next pick;
- pools are refilled in place, so a call routed before the change (mid-retry, or
  waiting in a queue) picks from the pool as it is now; a removed group's pool is
  kept empty for such calls, which then move on along their fallback chain;
- groups keep their strategy instance, retry budget, hedger and capacity queue
  while their settings for these are unchanged;
- a removed deployment takes no new request; its requests in flight settle
  normally against its own state, and `drain` then releases it (metric series,
  shared-ledger keys, strategy estimates).

Nothing here is on the request path: the router's hot attributes are reassigned by
`Router._assemble`, and a draining deployment is watched through the `waiters` hook
its reservations already call when they settle.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from interlock.config import RouterConfig
from interlock.errors import ConfigError
from interlock.health.tracker import HealthTracker
from interlock.limits.queue import WaitQueue
from interlock.limits.shared import RedisLedger
from interlock.limits.spend import attach_budgets
from interlock.records.state import OPEN, DeploymentState, PoolHealth
from interlock.router.attempt import Attempts
from interlock.router.fallbacks import FallbackTable
from interlock.router.hedge import Hedger
from interlock.router.pipeline import Pipeline
from interlock.router.pool import DeploymentPool
from interlock.router.traced import TracedPipeline
from interlock.router.wiring import RouterParts, _build_states, _fallback_table, _resolve
from interlock.strategies.base import Strategy

__all__ = [
    "KEPT",
    "SETTINGS",
    "ConfigChange",
    "Drain",
    "Plan",
    "apply_plan",
    "drain",
    "plan_change",
]

_RESTART_ONLY = ("shared", "cache")
"""Settings a running router does not change (they own connections and stores)."""


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """What a runtime change did, by deployment id and group name."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    """Deployments whose settings changed (same id)."""
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    groups_added: tuple[str, ...] = ()
    groups_removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """A validated change, not applied yet (`plan_change`)."""

    config: RouterConfig
    fresh: tuple[DeploymentState, ...]
    """A throwaway state per deployment of `config` (ids assigned as construction
    does); surviving ids take their settings from these."""
    strategies: Mapping[str, Strategy]
    """Group -> its strategy (the current instance when its setting is unchanged)."""
    default_strategy: Strategy
    fallbacks: FallbackTable
    change: ConfigChange


def plan_change(parts: RouterParts, cfg: RouterConfig) -> Plan:
    """Validate `cfg` as the router's next config, touching nothing of `parts`:
    raises the `ConfigError` construction would, or one naming a setting that only
    a new router can change."""
    old = parts.config
    problems = [
        (name, "cannot change while the router runs: build a new Router")
        for name in _RESTART_ONLY
        if getattr(cfg, name) != getattr(old, name)
    ]
    if problems:
        raise ConfigError(problems)
    # In the order of build_parts' checks, so the first problem is the same one.
    default = parts.strategy
    if cfg.strategy != old.strategy:
        default = _resolve(cfg.strategy, parts.rng, "strategy")
    fresh = _build_states(cfg.deployments, parts.transports)
    groups = tuple(dict.fromkeys(s.group for s in fresh))
    # A default given as an instance (or function) is shared by every group without a
    # setting of its own, as at construction; a name gives each group its own.
    shared_default = any(p.strategy is parts.strategy for p in parts.pools.values())
    strategies: dict[str, Strategy] = {}
    for g in groups:
        spec = cfg.strategies.get(g, cfg.strategy)
        pool = parts.pools.get(g)
        if pool is not None and spec == old.strategies.get(g, old.strategy):
            strategies[g] = pool.strategy
        elif g not in cfg.strategies and shared_default and cfg.strategy == old.strategy:
            strategies[g] = default
        else:
            where = f"strategies.{g}" if g in cfg.strategies else "strategy"
            strategies[g] = _resolve(spec, parts.rng, where)
    _, problems = attach_budgets(cfg.budgets, fresh, parts.clock.now())
    if problems:
        raise ConfigError(problems)
    unknown = [g for g in cfg.cache.groups if g not in groups]
    if unknown:
        raise ConfigError([(f"cache.groups.{g}", "is not a group") for g in sorted(unknown)])
    fallbacks = _fallback_table(cfg, groups)
    return Plan(cfg, fresh, strategies, default, fallbacks, _describe(parts, fresh, groups))


def _describe(
    parts: RouterParts, fresh: Sequence[DeploymentState], groups: Sequence[str]
) -> ConfigChange:
    before = {s.id: s.deployment for s in parts.states}
    after = {s.id: s.deployment for s in fresh}
    return ConfigChange(
        added=tuple(i for i in after if i not in before),
        updated=tuple(i for i, d in after.items() if i in before and before[i] != d),
        removed=tuple(i for i in before if i not in after),
        unchanged=tuple(i for i, d in after.items() if before.get(i) == d),
        groups_added=tuple(g for g in groups if g not in parts.pools),
        groups_removed=tuple(g for g in parts.pools if g not in groups),
    )


def apply_plan(
    parts: RouterParts, plan: Plan, *, running: bool
) -> tuple[RouterParts, list[DeploymentState]]:
    """Apply a validated change (synchronously: nothing awaits until it is whole).
    Returns the new parts and the removed states, which drain from then on."""
    cfg, old = plan.config, parts.config
    now = parts.clock.now()
    # Read before the pools are refilled: until the first change `parts.pools` is
    # also the `lookup` that refilling extends.
    had = set(parts.pools)
    states, removed = _survivors(parts, plan)
    members: dict[str, list[DeploymentState]] = {}
    for s in states:
        members.setdefault(s.group, []).append(s)

    health = parts.health if cfg.health == old.health else HealthTracker(cfg.health, parts.rng)
    _attach_health(health, members, now)
    observer = parts.attempts.observer
    observer.watch(states)
    counters, _ = attach_budgets(cfg.budgets, states, now, keep=parts.budget_counters)
    if isinstance(parts.shared, RedisLedger):
        parts.shared.track(states)
    pools = _refill_pools(parts, plan.strategies, members)
    lookup = parts.lookup
    queues = _queues(parts, cfg, members)
    # A call resolved to a group just before the change removed it may start after
    # it (the response cache awaits in between): it then finds the group's empty
    # pool and fails as for a group without deployments, not with a KeyError.
    for g in lookup:
        plan.fallbacks.chains.setdefault(g, (g,))
    for s in removed:
        s.waiters = Drain(s)
    hedgers = _hedgers(parts, cfg, members)
    attempts = Attempts(
        parts.clock,
        health,
        observer,
        lookup,
        {g: h.record for g, h in hedgers.items()},
        parts.shared,
    )
    attempts.hedges_sent = parts.attempts.hedges_sent
    same_budget = _budget_settings(cfg) == _budget_settings(old)
    pipeline = Pipeline(
        lookup,
        plan.fallbacks,
        cfg.retry,
        attempts,
        parts.rng,
        hedgers=hedgers,
        queues=queues,
        queue_wait=cfg.queue.max_wait,
        retry_budgets={g: parts.pipeline.retry_budget(g) for g in pools if g in had}
        if same_budget
        else None,
    )
    prober = parts.prober
    prober.states, prober.tracker, prober.policy = tuple(states), health, cfg.health
    if running and cfg.health.probe_interval is not None:
        prober.start()
    names = {g: g for g in pools}
    names.update(cfg.aliases)
    new = dataclasses.replace(
        parts,
        config=cfg,
        strategy=plan.default_strategy,
        states=tuple(states),
        pools=pools,
        names=names,
        fallbacks=plan.fallbacks,
        health=health,
        attempts=attempts,
        queues=queues,
        pipeline=pipeline,
        # The traced entry wraps the pipeline: a new pipeline needs a new wrapper, or
        # traced calls would keep running the old one.
        entry=pipeline if parts.tracing is None else TracedPipeline(pipeline, parts.tracing),
        budget_counters=tuple(counters),
        lookup=lookup,
    )
    return new, removed


def _survivors(
    parts: RouterParts, plan: Plan
) -> tuple[list[DeploymentState], list[DeploymentState]]:
    """The states of the new config (a surviving id's own state, with its new
    settings; a new one's fresh state) and the removed states."""
    by_id = {s.id: s for s in parts.states}
    states: list[DeploymentState] = []
    for f in plan.fresh:
        s = by_id.pop(f.id, None)
        if s is None:
            s = f
        else:
            _take_settings(s, f)
        s.budgets = ()
        states.append(s)
    return states, list(by_id.values())


def _budget_settings(cfg: RouterConfig) -> tuple[float, int, float]:
    r = cfg.retry
    return (r.budget_ratio, r.budget_floor, r.budget_window)


SETTINGS = (
    "deployment",
    "transport",
    "id",
    "group",
    "order",
    "tags",
    "max_concurrency",
    "rpm_limit",
    "tpm_limit",
    "context_window",
    "input_cost",
    "output_cost",
    "cache_read_cost",
    "cache_write_cost",
    "prices",
    "priced",
    "price_tiers",
    "tiers_above",
)
"""`DeploymentState` fields derived from its `Deployment`: an update copies them."""

KEPT = (
    # ledger and limits
    "in_flight",
    "requests",
    "rate_window",
    "blocked_until",
    "input_tokens",
    "output_tokens",
    "spend",
    # health
    "successes",
    "failures",
    "consecutive_failures",
    "cooldown_until",
    "ejections",
    "ejected_by",
    "latency_ewma",
    "ttft_ewma",
    "last_output_tokens",
    "circuit",
    "circuit_mode",
    # set by the parts that own them when a change is applied
    "weight",
    "budgets",
    "waiters",
)
"""`DeploymentState` fields a surviving deployment keeps through an update. Every
field is in one of the two (a test checks it): a field added later must say which."""


def _take_settings(s: DeploymentState, f: DeploymentState) -> None:
    """Copy a deployment's new settings (from its throwaway state `f`) onto its live
    state `s`; what `s` has counted and learnt (`KEPT`) stays."""
    for name in SETTINGS:
        setattr(s, name, getattr(f, name))
    if s.rate_window is None:
        s.rate_window = f.rate_window  # a first limit: counted from now on


def _attach_health(
    health: HealthTracker, members: Mapping[str, Sequence[DeploymentState]], now: float
) -> None:
    """Each group's `PoolHealth` for its members now, counting those already out of
    rotation; every state keeps its own circuit (streak, trials, failure counts)."""
    p = health.policy
    pools: dict[str, PoolHealth] = {}
    for group, ss in members.items():
        pool = pools[group] = PoolHealth(
            len(ss),
            max_ejected_share=p.max_ejected_share,
            panic_threshold=p.panic_threshold,
            max_trials=p.half_open_max_trials,
        )
        for s in ss:
            c = s.circuit
            c.pool = pool
            if s.circuit_mode == OPEN:
                pool.changed(+1)
            if c.counted:
                c.counted = False
                if s.cooldown_until > now:
                    pool.cooling_started(s)
    health.pools = pools


def _refill_pools(
    parts: RouterParts,
    strategies: Mapping[str, Strategy],
    members: Mapping[str, Sequence[DeploymentState]],
) -> dict[str, DeploymentPool]:
    """The pools of the new config, refilled in place where the group existed (so
    calls already routed see them as they are now). A group that is gone keeps an
    empty pool in `lookup`, for calls whose fallback chain still names it."""
    lookup = parts.lookup
    pools: dict[str, DeploymentPool] = {}
    for g, ss in members.items():
        pool = lookup.get(g)
        if pool is None:
            pool = lookup[g] = DeploymentPool(g, ss, strategies[g], parts.rng)
        else:
            pool.refill(ss, strategies[g])
        pools[g] = pool
    for g, pool in lookup.items():
        if g not in members and pool.states:
            pool.refill((), pool.strategy)
    return pools


def _queues(
    parts: RouterParts, cfg: RouterConfig, members: Mapping[str, Sequence[DeploymentState]]
) -> dict[str, WaitQueue]:
    """Capacity lines: a surviving group keeps its line (and whoever waits in it)
    while its size is unchanged, and its head is woken to look at the pool as it is
    now; a line that is replaced wakes everyone in it."""
    policy, old = cfg.queue, parts.config.queue
    queues: dict[str, WaitQueue] = {}
    if policy.max_wait > 0:
        for g, ss in members.items():
            q = parts.queues.get(g) if policy.max_size == old.max_size else None
            q = queues[g] = q if q is not None else WaitQueue(parts.clock, policy.max_size)
            for s in ss:
                s.waiters = q
    else:
        for ss in members.values():
            for s in ss:
                s.waiters = None
    for g, q in parts.queues.items():
        if queues.get(g) is not q:
            for _ in range(q.waiting):
                q.wake()
        elif q.waiting:
            q.wake()  # capacity may have been added: the head looks, and wakes the next
    return queues


def _hedgers(
    parts: RouterParts, cfg: RouterConfig, members: Mapping[str, Sequence[DeploymentState]]
) -> dict[str, Hedger]:
    """A hedger per group with a policy; one whose policy is unchanged keeps the
    latencies it has learnt."""
    out: dict[str, Hedger] = {}
    for g in members:
        policy = cfg.hedging.get(g, cfg.hedging.get("*"))
        if policy is None:
            continue
        kept = parts.pipeline.hedger(g)
        out[g] = kept if kept is not None and kept.policy == policy else Hedger(policy)
    return out


class Drain:
    """Watches a removed deployment until its last request has settled. It takes the
    place of the state's capacity line (`DeploymentState.waiters`), which every
    settlement already calls: nothing is added to the request path."""

    __slots__ = ("done", "state", "waiting")

    def __init__(self, state: DeploymentState) -> None:
        self.state = state
        self.waiting = 1
        self.done = asyncio.Event()
        if state.in_flight <= 0:
            self.done.set()

    def wake(self) -> None:
        if self.state.in_flight <= 0:
            self.done.set()


async def drain(current: Callable[[], RouterParts], removed: Sequence[DeploymentState]) -> None:
    """Wait until every removed deployment's requests have settled, then release
    what the router kept for them (read from its parts as they are then: other
    changes may have come meanwhile)."""
    for s in removed:
        w = s.waiters
        if isinstance(w, Drain):
            await w.done.wait()
    parts = current()
    groups = [g for g in parts.lookup if g not in parts.pools]
    parts.attempts.observer.forget(removed, groups)
    if isinstance(parts.shared, RedisLedger):
        parts.shared.forget(s.id for s in removed)
    # Transports and strategies that keep something per deployment say how to drop
    # it (`forget`; a transport's own endpoints hold the deployment's key).
    for transport in {id(t): t for t in (*parts.transports.values(), parts.endpoints)}.values():
        forget_id = getattr(transport, "forget", None)
        if forget_id is not None:
            for s in removed:
                forget_id(s.id)
    for strategy in {id(p.strategy): p.strategy for p in parts.lookup.values()}.values():
        forget = getattr(strategy, "forget", None)
        if forget is not None:
            for s in removed:
                forget(s)
