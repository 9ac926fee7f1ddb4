"""A group's deployments and the eligibility filter in front of its strategy."""

from __future__ import annotations

import random
from collections.abc import Callable, Container, Sequence
from typing import cast

from interlock.limits.diagnose import Diagnosis, diagnose
from interlock.records.state import DeploymentState
from interlock.strategies.base import Feedback, Strategy
from interlock.strategies.candidates import Candidates, NoEligible, Tier
from interlock.strategies.registry import resolve_strategy
from interlock.types import Request, StrategyRef

__all__ = ["DEFAULT_TAG", "DeploymentPool"]

DEFAULT_TAG = "default"
"""Untagged requests go only to deployments carrying this tag, when any does."""
_MAX_TAG_SETS = 256  # cached tag filters per pool
_MAX_FEEDS = 16  # strategy instances fed with outcomes per pool


class DeploymentPool:
    """The deployments of one group, split into `order` tiers."""

    __slots__ = (
        "_alone",
        "_feeds",
        "_has_default",
        "_lazy",
        "_named",
        "_tiered",
        "_view",
        "feedback",
        "group",
        "rng",
        "states",
        "strategy",
        "tiers",
    )

    def __init__(
        self,
        group: str,
        states: Sequence[DeploymentState],
        strategy: Strategy,
        rng: random.Random | None = None,
    ) -> None:
        self.group = group
        self.rng = rng or random.Random()
        self.refill(states, strategy)

    def refill(self, states: Sequence[DeploymentState], strategy: Strategy) -> None:
        """Take `states` and `strategy` (a runtime change, or construction): calls
        routed before a change pick from the pool as it is now."""
        self.states = tuple(states)
        self.strategy = strategy
        self._lazy: bool = getattr(strategy, "lazy_candidates", False)
        self._alone: Callable[[Candidates], DeploymentState | None] | None = getattr(
            strategy, "choose_alone", None
        )
        # Strategies that learn from outcomes (latency, errors) expose `record`; every
        # strategy used in this pool (its own, and per-request overrides) is fed.
        self.feedback: Feedback | None = None
        self._feeds: dict[int, Feedback] = {}
        self._named: dict[str, Strategy] = {}
        self._feed(strategy)
        orders = sorted({s.order for s in self.states})
        self.tiers = tuple(tuple(s for s in self.states if s.order == o) for o in orders)
        _assign_shares(self.states)
        self._has_default = any(DEFAULT_TAG in s.tags for s in self.states)
        self._tiered: dict[frozenset[str], tuple[Tier, ...]] = {}
        # The one view `select` hands strategies, reset per pick (see Candidates.reset).
        self._view: Candidates | None = None

    def select(
        self, request: Request, now: float, exclude: Container[DeploymentState] = ()
    ) -> DeploymentState | None:
        """The deployment to try next, or None when none is eligible: the strategy
        chooses within the lowest order tier that has an eligible deployment (after
        tag filtering). O(1) expected per tier; see `Candidates`."""
        spec = request.strategy
        if spec is None:
            strategy = self.strategy
            lazy = self._lazy
            alone = self._alone
        else:
            strategy = self._strategy_for(spec)
            lazy = getattr(strategy, "lazy_candidates", False)
            alone = None
        tiers = self._tiered.get(request.tags)
        if tiers is None:
            tiers = self._tiers_for(request.tags)
        view = self._view
        for tier in tiers:
            if view is None:
                view = self._view = Candidates(tier, request, now, exclude, self.rng)
            else:
                view.reset(tier, request, now, exclude)
            if alone is not None and tier.n == 1:
                # A tier of one (often the whole pool): the strategy's shortcut.
                state = alone(view)
                if state is not None:
                    return state
                continue
            if lazy:
                try:
                    return strategy.choose(view, request)
                except NoEligible:
                    continue
            if view.probe() is not None:
                return strategy.choose(view, request)
        return None

    def eligible(
        self, request: Request, now: float, exclude: Container[DeploymentState] = ()
    ) -> list[DeploymentState]:
        """Candidates of the lowest order tier that has any: available to health (see
        `interlock.health.is_available`: not cooling, unless in panic mode), not excluded,
        with rate and concurrency headroom, carrying every tag the request asks for
        (or `DEFAULT_TAG`, for an untagged request when the pool uses it). O(n)."""
        for tier in self._tiers_for(request.tags):
            out = Candidates(tier, request, now, exclude, self.rng).eligible()
            if out:
                return out
        return []

    def _effective_tags(self, tags: frozenset[str]) -> frozenset[str]:
        if not tags and self._has_default:
            return _DEFAULT_TAGS
        return tags

    def _tiers_for(self, tags: frozenset[str]) -> tuple[Tier, ...]:
        tiers = self._tiered.get(tags)
        if tiers is None:
            want = self._effective_tags(tags)
            tiers = tuple(
                Tier(ts, ts[0].order)
                for ts in (tuple(s for s in tier if want <= s.tags) for tier in self.tiers)
                if ts
            )
            if len(self._tiered) < _MAX_TAG_SETS:
                self._tiered[tags] = tiers
        return tiers

    def _strategy_for(self, spec: str | StrategyRef) -> Strategy:
        if isinstance(spec, str):
            strategy = self._named.get(spec)
            if strategy is None:
                strategy = self._named[spec] = resolve_strategy(spec, self.rng)
                self._feed(strategy)
            return strategy
        # The router let only a Strategy (or a function wrapped in one) in here.
        chosen = cast(Strategy, spec)
        if id(chosen) not in self._feeds:
            self._feed(chosen)
        return chosen

    def _feed(self, strategy: Strategy) -> None:
        record: Feedback | None = getattr(strategy, "record", None)
        if record is None or id(strategy) in self._feeds or len(self._feeds) >= _MAX_FEEDS:
            return
        self._feeds[id(strategy)] = record
        feeds = tuple(self._feeds.values())
        self.feedback = feeds[0] if len(feeds) == 1 else _fan_out(feeds)

    def diagnose(
        self, request: Request, now: float, exclude: Container[DeploymentState] = ()
    ) -> Diagnosis:
        """Why no deployment can take `request` now (slow path, O(n); see
        `interlock.limits.diagnose`)."""
        return diagnose(
            self.states,
            request.est_input_tokens + request.est_output_tokens,
            now,
            self._effective_tags(request.tags),
            exclude,
        )

    def __repr__(self) -> str:
        return f"<DeploymentPool {self.group} deployments={len(self.states)} {self.strategy!r}>"


def _assign_shares(states: Sequence[DeploymentState]) -> None:
    """Each state's `weight` becomes its share for weighted choice: the configured
    weight when any deployment sets one, else rpm, else tpm, else 1."""
    ds = [s.deployment for s in states]
    if any(d.weight is not None for d in ds):
        shares = [d.weight if d.weight is not None else 1.0 for d in ds]
    elif any(d.rpm is not None for d in ds):
        known = [d.rpm for d in ds if d.rpm is not None]
        fill = sum(known) / len(known)
        shares = [float(d.rpm) if d.rpm is not None else fill for d in ds]
    elif any(d.tpm is not None for d in ds):
        known = [d.tpm for d in ds if d.tpm is not None]
        fill = sum(known) / len(known)
        shares = [float(d.tpm) if d.tpm is not None else fill for d in ds]
    else:
        shares = [1.0] * len(ds)
    # Equal shares become one float object: strategies read `weight` of randomly drawn
    # deployments, and in a pool of 10,000 each separate object is likely a cache miss.
    same: dict[float, float] = {}
    for s, share in zip(states, shares, strict=True):
        s.weight = same.setdefault(share, share)


_DEFAULT_TAGS = frozenset((DEFAULT_TAG,))


def _fan_out(feeds: tuple[Feedback, ...]) -> Feedback:
    def record(state: DeploymentState, ok: bool, latency: float, ttft: float | None) -> None:
        for f in feeds:
            f(state, ok, latency, ttft)

    return record
