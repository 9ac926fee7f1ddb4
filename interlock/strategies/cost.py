"""Cheapest deployment for the request's expected token mix."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from interlock.strategies.candidates import PROBES, AliasTable, Candidates, NoEligible, Tier

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState
    from interlock.types import Request

__all__ = ["CostStrategy"]

_STEPS_PER_OCTAVE = 8
_MAX_MIXES = 256  # cached orderings per tier (one per token-mix bucket)


class _Prices:
    """Per-tier cache: deployments grouped by price, orderings per token mix."""

    __slots__ = ("classes", "orders", "tables")

    def __init__(self, tier: Tier) -> None:
        by_price: dict[tuple[float, float], list[DeploymentState]] = {}
        for s in tier.states:
            by_price.setdefault(_prices_of(s), []).append(s)
        self.classes = [(p[0], p[1], tuple(ss)) for p, ss in by_price.items()]
        self.orders: dict[int, tuple[tuple[DeploymentState, ...], ...]] = {}
        self.tables: dict[int, tuple[AliasTable, list[float]]] = {}


def _mix(request: Request) -> tuple[int, float, float]:
    """The request's token mix as a bucket key and representative (input, output)
    token counts: the output/input ratio rounded to 1/8 octave."""
    i = request.est_input_tokens
    o = request.est_output_tokens
    if i <= 0 and o <= 0:
        return 0, 1.0, 1.0
    if o <= 0:
        return -(1 << 20), 1.0, 0.0
    if i <= 0:
        return 1 << 20, 0.0, 1.0
    k = round(math.log2(o / i) * _STEPS_PER_OCTAVE)
    return k, 1.0, 2.0 ** (k / _STEPS_PER_OCTAVE)


class CostStrategy:
    """The cheapest eligible deployment for the request's expected tokens.

    cost(d) = input price(d) × est_input + output price(d) × est_output, with the
    deployment's resolved prices (its own, else built in: docs/operations.md; one
    without a known price ranks last). Strict mode (the default) picks the lowest
    cost, ties at random; a deployment over its limits is ineligible, so traffic
    moves to the next cheapest.
    With ``inverse_square=True`` (registered as ``"cost-inverse-square"``) it picks
    at random with P(d) ∝ 1 / cost(d)², spreading load while favouring cheap
    deployments (free ones, if any, take everything while eligible).

    Cost: deployments are grouped by price pair, and for each token mix — the
    output/input ratio rounded to 1/8 octave (within 4.4 %) — the price order is
    sorted once and cached; a pick walks it from the cheapest and samples within
    the cheapest price group that has an eligible deployment: O(1) while the
    cheapest ones have headroom. Inverse-square draws from a cached alias table.
    """

    __slots__ = ("_rng", "inverse_square")
    name = "cost"
    lazy_candidates = True

    def __init__(self, rng: random.Random | None = None, *, inverse_square: bool = False) -> None:
        self._rng = rng or random.Random()
        self.inverse_square = inverse_square

    def _prices(self, tier: Tier) -> _Prices:
        p = tier.cache.get(self)
        if p is None:
            p = tier.cache[self] = _Prices(tier)
        return p

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        prices = self._prices(candidates.tier)
        key, i, o = _mix(request)
        if self.inverse_square:
            return self._weighted(candidates, prices, key, i, o)
        order = prices.orders.get(key)
        if order is None:
            order = _order(prices, i, o)
            if len(prices.orders) >= _MAX_MIXES:
                prices.orders.clear()
            prices.orders[key] = order
        ok = candidates.ok
        for group in order:
            if len(group) == 1:
                if ok(group[0]):
                    return group[0]
                continue
            s = candidates.sample_from(group)
            if s is not None:
                return s
            found = [s for s in group if ok(s)]
            if found:
                return found[int(self._rng.random() * len(found))]
        raise NoEligible

    def _weighted(
        self, candidates: Candidates, prices: _Prices, key: int, i: float, o: float
    ) -> DeploymentState:
        entry = prices.tables.get(key)
        states = candidates.tier.states
        if entry is None:
            weights = _inverse_square([_cost(s, i, o) for s in states])
            entry = (AliasTable(weights), weights)
            if len(prices.tables) >= _MAX_MIXES:
                prices.tables.clear()
            prices.tables[key] = entry
        table, weights = entry
        ok = candidates.ok
        for _ in range(PROBES if len(states) > PROBES else len(states)):
            j = table.draw(self._rng)
            if ok(states[j]):
                return states[j]
        lst = candidates.require()
        w = _inverse_square([_cost(s, i, o) for s in lst])
        return self._rng.choices(lst, weights=w)[0]

    def __repr__(self) -> str:
        return f"CostStrategy(inverse_square={self.inverse_square})"


def _prices_of(s: DeploymentState) -> tuple[float, float]:
    """The state's resolved (input, output) prices per token (its own or built in); a
    deployment without a known price ranks after every priced one, rather than as
    free: it may well be the dearest."""
    if not s.priced:
        return (math.inf, math.inf)
    return (s.input_cost, s.output_cost)


def _cost(s: DeploymentState, i: float, o: float) -> float:
    ip, op = _prices_of(s)
    return _mixed(ip, op, i, o)


def _mixed(ip: float, op: float, i: float, o: float) -> float:
    if ip == math.inf:
        return math.inf  # unknown (inf x 0 tokens would be nan)
    return ip * i + op * o


def _inverse_square(costs: list[float]) -> list[float]:
    if min(costs) <= 0:
        return [1.0 if c <= 0 else 0.0 for c in costs]
    if min(costs) == math.inf:
        return [1.0] * len(costs)  # no price known at all: spread evenly
    return [1.0 / (c * c) for c in costs]


def _order(prices: _Prices, i: float, o: float) -> tuple[tuple[DeploymentState, ...], ...]:
    """Price groups from cheapest to dearest; groups of equal cost merged (ties)."""
    ranked = sorted(
        ((_mixed(ip, op, i, o), states) for ip, op, states in prices.classes), key=_first
    )
    out: list[tuple[DeploymentState, ...]] = []
    last: float | None = None
    for cost, states in ranked:
        if last is not None and math.isclose(cost, last, rel_tol=1e-12, abs_tol=0.0):
            out[-1] = out[-1] + states
        else:
            out.append(states)
            last = cost
    return tuple(out)


def _first(item: tuple[float, tuple[DeploymentState, ...]]) -> float:
    return item[0]
