"""The Strategy protocol and how a strategy is named."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from interlock.router.state import DeploymentState
    from interlock.types import Request

__all__ = [
    "Feedback",
    "FunctionStrategy",
    "Strategy",
    "StrategyFunction",
    "StrategyLike",
    "builtin_strategies",
    "resolve_strategy",
]


@runtime_checkable
class Strategy(Protocol):
    """Picks one deployment out of the eligible candidates.

    `candidates` is never empty and holds only deployments that may serve the request
    right now (healthy, within limits, lowest order tier). `choose` must not await and
    should cost O(1) or O(log n).
    """

    def choose(
        self, candidates: Sequence[DeploymentState], request: Request
    ) -> DeploymentState: ...


class Feedback(Protocol):
    """``record(state, ok, latency, ttft)``: an optional method of a strategy, called
    after every attempt it chose with whether it succeeded, its latency in seconds and,
    for streams, the time to first chunk."""

    def __call__(
        self, state: DeploymentState, ok: bool, latency: float, ttft: float | None
    ) -> None: ...


StrategyFunction = Callable[["Sequence[DeploymentState]", "Request"], "DeploymentState"]
StrategyLike = str | Strategy | StrategyFunction


class FunctionStrategy:
    """Adapts a plain callable ``fn(candidates, request) -> candidate`` to `Strategy`."""

    __slots__ = ("fn",)

    def __init__(self, fn: StrategyFunction) -> None:
        self.fn = fn

    def choose(self, candidates: Sequence[DeploymentState], request: Request) -> DeploymentState:
        return self.fn(candidates, request)

    def __repr__(self) -> str:
        return f"FunctionStrategy({getattr(self.fn, '__qualname__', self.fn)!r})"


def builtin_strategies() -> Mapping[str, Callable[[random.Random], Strategy]]:
    """Name -> factory for every built-in strategy."""
    from interlock.strategies.least_busy import LeastBusyStrategy
    from interlock.strategies.weighted import WeightedStrategy

    return MappingProxyType(
        {
            "weighted": WeightedStrategy,
            "least-busy": LeastBusyStrategy,
        }
    )


def resolve_strategy(spec: StrategyLike, rng: random.Random) -> Strategy:
    """A Strategy from a name, an instance, or a callable; raises ValueError naming the
    known strategies when the name is unknown."""
    if isinstance(spec, str):
        table = builtin_strategies()
        factory = table.get(spec)
        if factory is None:
            raise ValueError(f"unknown strategy {spec!r}; known: {', '.join(sorted(table))}")
        return factory(rng)
    if isinstance(spec, Strategy):
        return spec
    if callable(spec):
        return FunctionStrategy(spec)
    raise TypeError(f"strategy must be a name, a Strategy or a callable, not {type(spec).__name__}")
