"""Routing strategies: which eligible deployment serves a request."""

from interlock.strategies.base import (
    FunctionStrategy,
    Strategy,
    StrategyFunction,
    StrategyLike,
    builtin_strategies,
    resolve_strategy,
)
from interlock.strategies.least_busy import LeastBusyStrategy
from interlock.strategies.weighted import WeightedStrategy

__all__ = [
    "FunctionStrategy",
    "LeastBusyStrategy",
    "Strategy",
    "StrategyFunction",
    "StrategyLike",
    "WeightedStrategy",
    "builtin_strategies",
    "resolve_strategy",
]
