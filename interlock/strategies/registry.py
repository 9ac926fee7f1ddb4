"""Strategies by name: the built-ins, those added with `register_strategy`, and how a
name, an instance or a function becomes the `Strategy` a pool uses."""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType

from interlock.strategies.base import FunctionStrategy, Strategy, StrategyFactory, StrategyLike
from interlock.strategies.cost import CostStrategy
from interlock.strategies.latency import LatencyStrategy
from interlock.strategies.least_busy import LeastBusyStrategy
from interlock.strategies.p2c_ewma import PeakEwmaStrategy
from interlock.strategies.usage import UsageStrategy
from interlock.strategies.weighted import WeightedStrategy

__all__ = [
    "BUILTIN_NAMES",
    "as_strategy",
    "builtin_strategies",
    "register_strategy",
    "resolve_strategy",
    "strategy_factory",
]


_registry: dict[str, StrategyFactory] = {}


def _builtins() -> dict[str, StrategyFactory]:
    if not _registry:

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


def strategy_factory(name: str) -> StrategyFactory:
    """The factory registered under `name`; ValueError naming the known ones."""
    table = _builtins()
    factory = table.get(name)
    if factory is None:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(sorted(table))}")
    return factory


def as_strategy(spec: object) -> Strategy:
    """`spec` as a Strategy: an instance as is, a plain function wrapped in a
    `FunctionStrategy`; TypeError for anything else (names: see `strategy_factory`)."""
    if isinstance(spec, Strategy):
        return spec
    if callable(spec) and not isinstance(spec, str):
        return FunctionStrategy(spec)
    raise TypeError(f"strategy must be a name, a Strategy or a callable, not {type(spec).__name__}")


def resolve_strategy(spec: StrategyLike, rng: random.Random) -> Strategy:
    """A Strategy from a name (a fresh instance), an instance, or a callable; raises
    ValueError naming the known strategies when the name is unknown."""
    if isinstance(spec, str):
        return strategy_factory(spec)(rng)
    return as_strategy(spec)
