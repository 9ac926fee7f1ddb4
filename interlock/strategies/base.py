"""The Strategy protocol, the name registry, and how a strategy is resolved."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from interlock.router.state import DeploymentState
    from interlock.strategies.candidates import Candidates
    from interlock.types import Request

__all__ = [
    "Feedback",
    "FunctionStrategy",
    "Strategy",
    "StrategyFactory",
    "StrategyFunction",
    "StrategyLike",
    "builtin_strategies",
    "register_strategy",
    "resolve_strategy",
]


@runtime_checkable
class Strategy(Protocol):
    """Picks one deployment for a request.

    `candidates` is a `Candidates` view of one order tier (tags already applied) with
    at least one eligible deployment, `candidates.first`. It is a `Sequence` of the
    eligible deployments (materialized on first use, O(n)), and offers O(1) helpers
    for large pools: `ok(state)`, `another(state)`, `sample_from(states)`, the
    tier's fixed `tier.states`, `now` and the `rng`. `choose` must not await and must
    return an eligible deployment. A class attribute ``lazy_candidates = True`` skips
    the pool's initial probe: the view may then be empty, and `choose` signals that
    by letting `NoEligible` (raised by `first` and `require()`) propagate. A strategy
    may also define
    ``record(state, ok, latency, ttft)`` (see `Feedback`) to learn from outcomes.
    """

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState: ...


class Feedback(Protocol):
    """``record(state, ok, latency, ttft)``: an optional method of a strategy, called
    after every attempt in the strategy's group with whether it succeeded, its
    latency in seconds and, for streams, the time to first chunk."""

    def __call__(
        self, state: DeploymentState, ok: bool, latency: float, ttft: float | None
    ) -> None: ...


StrategyFunction = Callable[["Sequence[DeploymentState]", "Request"], "DeploymentState"]
StrategyLike = str | Strategy | StrategyFunction
StrategyFactory = Callable[[random.Random], Strategy]
"""``factory(rng) -> Strategy``: builds a fresh instance for one group."""


class FunctionStrategy:
    """Adapts a plain callable ``fn(candidates, request) -> candidate`` to `Strategy`.

    `fn` receives the eligible deployments as a list, built per pick: O(n).
    """

    __slots__ = ("fn",)

    def __init__(self, fn: StrategyFunction) -> None:
        self.fn = fn

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        from interlock.router.state import DeploymentState

        picked = self.fn(candidates.eligible(), request)
        if not isinstance(picked, DeploymentState):
            raise TypeError(
                f"strategy function {_fn_name(self.fn)} returned "
                f"{type(picked).__name__}, not one of the candidates"
            )
        return picked

    def __repr__(self) -> str:
        return f"FunctionStrategy({_fn_name(self.fn)})"


def _fn_name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", type(fn).__name__))


_registry: dict[str, StrategyFactory] = {}


def _builtins() -> dict[str, StrategyFactory]:
    if not _registry:
        from interlock.strategies.cost import CostStrategy
        from interlock.strategies.latency import LatencyStrategy
        from interlock.strategies.least_busy import LeastBusyStrategy
        from interlock.strategies.p2c_ewma import PeakEwmaStrategy
        from interlock.strategies.usage import UsageStrategy
        from interlock.strategies.weighted import WeightedStrategy

        def inverse_square(rng: random.Random) -> Strategy:
            return CostStrategy(rng, inverse_square=True)

        _registry.update(
            {
                "weighted": WeightedStrategy,
                "least-busy": LeastBusyStrategy,
                "latency": LatencyStrategy,
                "cost": CostStrategy,
                "cost-inverse-square": inverse_square,
                "usage": UsageStrategy,
                "p2c-ewma": PeakEwmaStrategy,
            }
        )
    return _registry


BUILTIN_NAMES = (
    "weighted",
    "least-busy",
    "latency",
    "cost",
    "cost-inverse-square",
    "usage",
    "p2c-ewma",
)
"""The built-in strategies' names (they cannot be replaced), in the order docs list them."""


def builtin_strategies() -> Mapping[str, StrategyFactory]:
    """Name -> factory for every known strategy: the built-ins plus those added with
    `register_strategy`."""
    return MappingProxyType(_builtins())


def register_strategy(name: str, factory: StrategyFactory, *, replace: bool = False) -> None:
    """Make ``factory(rng) -> Strategy`` available by `name` (in ``Router(strategy=)``,
    per-group settings, per-request overrides and configuration files).

    Each group that names the strategy gets its own instance. A name already taken
    raises ValueError unless `replace` is true; built-in names cannot be replaced.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("register_strategy: name must be a non-empty string")
    if not callable(factory):
        raise TypeError("register_strategy: factory must be callable as factory(rng)")
    table = _builtins()
    if name in BUILTIN_NAMES:
        raise ValueError(f"register_strategy: {name!r} is a built-in strategy")
    if name in table and not replace:
        raise ValueError(f"register_strategy: {name!r} is already registered")
    table[name] = factory


def resolve_strategy(spec: StrategyLike, rng: random.Random) -> Strategy:
    """A Strategy from a name (a fresh instance), an instance, or a callable; raises
    ValueError naming the known strategies when the name is unknown."""
    if isinstance(spec, str):
        table = _builtins()
        factory = table.get(spec)
        if factory is None:
            raise ValueError(f"unknown strategy {spec!r}; known: {', '.join(sorted(table))}")
        return factory(rng)
    if isinstance(spec, Strategy):
        return spec
    if callable(spec):
        return FunctionStrategy(spec)
    raise TypeError(f"strategy must be a name, a Strategy or a callable, not {type(spec).__name__}")
