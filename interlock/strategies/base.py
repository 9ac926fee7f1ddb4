"""The Strategy protocol, what a strategy may learn from, and the adapter for plain
functions (the name registry is `interlock.strategies.registry`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from interlock.records.state import DeploymentState
from interlock.strategies.candidates import Candidates
from interlock.types import Request

__all__ = [
    "Feedback",
    "FunctionStrategy",
    "Strategy",
    "StrategyFactory",
    "StrategyFunction",
    "StrategyLike",
]


@runtime_checkable
class Strategy(Protocol):
    """Picks one deployment for a request.

    `candidates` is a `Candidates` view of one order tier (tags already applied) with
    at least one eligible deployment, `candidates.first`. It is a `Sequence` of the
    eligible deployments (materialized on first use, O(n)), and offers O(1) helpers
    for large pools: `ok(state)`, `another(state)`, `weighted()`,
    `sample_from(states)`, the tier's fixed `tier.states`, `now` and the `rng`.
    `choose` must not await and must return an eligible deployment. A class
    attribute ``lazy_candidates = True`` skips the pool's initial probe: the view may
    then be empty, and `choose` signals that by letting `NoEligible` (raised by
    `first` and `require()`) propagate. A strategy may also define
    ``record(state, ok, latency, ttft)`` (see `Feedback`) to learn from outcomes,
    and ``choose_alone(candidates)``, which the pool calls instead of `choose` for a
    tier of one deployment: it returns that deployment when it is eligible (else
    None) with the same effects as `choose` (`PeakEwmaStrategy` has one).
    """

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState: ...


class Feedback(Protocol):
    """``record(state, ok, latency, ttft)``: an optional method of a strategy, called
    after every attempt in the strategy's group with whether it succeeded, its
    latency in seconds and, for streams, the time to first chunk. Attempts answered
    with a rate limit (429) are not reported: they say nothing about speed."""

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
