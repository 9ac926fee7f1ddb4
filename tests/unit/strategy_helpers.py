"""Shared helpers for the strategy tests: real pools of real states on a FakeClock."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from interlock import Deployment, HealthPolicy
from interlock.health.tracker import HealthTracker
from interlock.limits.ledger import Ledger
from interlock.observability.observer import Observer
from interlock.providers.http import HttpClient
from interlock.providers.openai import OpenAITransport
from interlock.records.state import DeploymentState
from interlock.router.attempt import Attempts
from interlock.router.pool import DeploymentPool
from interlock.strategies import StrategyLike, resolve_strategy
from interlock.testing import FakeClock
from interlock.types import Request

__all__ = ["chi2_sf", "make_pool", "pick", "pick_settled", "request", "uniform_p"]

_TRANSPORT = OpenAITransport(HttpClient())


def make_pool(
    specs: Sequence[Mapping[str, Any]], strategy: StrategyLike, seed: int = 1
) -> tuple[DeploymentPool, Attempts, FakeClock]:
    """A pool of group "g" with one deployment per spec (ids d0, d1, ...), the
    attempts recorder that feeds its strategy, and the fake clock both read."""
    states = [
        DeploymentState(
            Deployment(group="g", model="m", id=f"d{i}", **spec),
            _TRANSPORT,
        )
        for i, spec in enumerate(specs)
    ]
    rng = random.Random(seed)
    strat = resolve_strategy(strategy, rng)
    pool = DeploymentPool("g", states, strat, rng)
    clock = FakeClock()
    attempts = Attempts(
        clock, HealthTracker(HealthPolicy()), Observer(clock), {"g": pool}, {}, None
    )
    return pool, attempts, clock


def request(**kw: object) -> Request:
    base: dict[str, object] = {"est_input_tokens": 100, "est_output_tokens": 100}
    base.update(kw)
    return Request("chat", "g", **base)  # type: ignore[arg-type]


def pick(pool: DeploymentPool, clock: FakeClock, req: Request | None = None) -> DeploymentState:
    s = pool.select(req or request(), clock.now())
    assert s is not None
    return s


def pick_settled(pool: DeploymentPool, clock: FakeClock, n: int) -> Counter[str]:
    """`n` picks, each reserved and settled at once (nothing stays in flight)."""
    counts: Counter[str] = Counter()
    req = request()
    for _ in range(n):
        s = pick(pool, clock, req)
        Ledger.settle(Ledger.reserve(s, 200, clock.now()), 200, clock.now())
        counts[s.id] += 1
    return counts


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square(df): 1 - P(df/2, x/2), lower gamma by its series."""
    a, z = df / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    term = 1.0 / a
    total = term
    n = 1
    while term > total * 1e-15 and n < 10_000:
        term *= z / (a + n)
        total += term
        n += 1
    lower = math.exp(-z + a * math.log(z) - math.lgamma(a)) * total
    return max(0.0, 1.0 - lower)


def uniform_p(counts: Counter[str], k: int) -> float:
    n = sum(counts.values())
    expected = n / k
    x = sum((counts.get(f"d{i}", 0) - expected) ** 2 / expected for i in range(k))
    return chi2_sf(x, k - 1)
