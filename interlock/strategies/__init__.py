"""Routing strategies: which eligible deployment serves a request."""

from interlock.strategies.base import (
    Feedback,
    FunctionStrategy,
    Strategy,
    StrategyFactory,
    StrategyFunction,
    StrategyLike,
)
from interlock.strategies.candidates import AliasTable, Candidates, NoEligible, Tier
from interlock.strategies.cost import CostStrategy
from interlock.strategies.latency import LatencyStrategy
from interlock.strategies.least_busy import LeastBusyStrategy
from interlock.strategies.p2c_ewma import PeakEwmaStrategy
from interlock.strategies.registry import (
    BUILTIN_NAMES,
    builtin_strategies,
    register_strategy,
    resolve_strategy,
)
from interlock.strategies.usage import UsageStrategy
from interlock.strategies.weighted import WeightedStrategy

__all__ = [
    "BUILTIN_NAMES",
    "AliasTable",
    "Candidates",
    "CostStrategy",
    "Feedback",
    "FunctionStrategy",
    "LatencyStrategy",
    "LeastBusyStrategy",
    "NoEligible",
    "PeakEwmaStrategy",
    "Strategy",
    "StrategyFactory",
    "StrategyFunction",
    "StrategyLike",
    "Tier",
    "UsageStrategy",
    "WeightedStrategy",
    "builtin_strategies",
    "register_strategy",
    "resolve_strategy",
]
