"""The live record of one deployment: what health, limits and strategies read and update.

One flat slotted object per deployment keeps the hot path to attribute reads and
writes; the health tracker, the ledger and the strategies each own some of its
fields and change them synchronously.

The circuit: a deployment is CLOSED (in rotation) or OPEN (taken out). An OPEN deployment whose
cooldown has passed is half-open: it takes at most `max_trials` trial requests at a
time until enough of them succeed. The pool keeps how many of its deployments are
not CLOSED, updated on each transition, so the ejection cap and panic mode cost O(1).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass
from typing import Literal, Protocol

from interlock.config import Deployment
from interlock.failures import FailureKind
from interlock.prices import DeploymentPrices, resolve_prices
from interlock.records.budget import BudgetCounter
from interlock.records.transport import Transport
from interlock.records.window import RateWindow
from interlock.result_parts import MAX_COUNT
from interlock.types import Usage

__all__ = [
    "CLOSED",
    "OPEN",
    "CircuitState",
    "DeploymentState",
    "Ejection",
    "PoolHealth",
    "Waiters",
    "health_state",
    "is_available",
]

CLOSED = 0
OPEN = 1


@dataclass(frozen=True, slots=True)
class Ejection:
    """The error that last took a deployment out of rotation: its class and status,
    never its message (a key could hide in upstream text)."""

    error_type: str
    """The error's class name, e.g. ``"AuthenticationError"``."""
    status_code: int | None
    """The HTTP status the provider sent, None for timeouts and connection errors."""
    kind: FailureKind
    at: float
    """Router-clock time of the ejection."""
    until: float
    """Router-clock time its cooldown was set to end."""

    def describe(self) -> str:
        """``"AuthenticationError (401)"``."""
        status = f" ({self.status_code})" if self.status_code is not None else ""
        return f"{self.error_type}{status}"


class PoolHealth:
    """Counts for one pool: its size and how many deployments are out (OPEN)."""

    __slots__ = (
        "_ends",
        "_seq",
        "cooling",
        "max_ejected",
        "max_trials",
        "panic",
        "panic_below",
        "size",
        "unhealthy",
    )

    def __init__(
        self,
        size: int = 1,
        *,
        max_ejected_share: float = 1.0,
        panic_threshold: float = 0.0,
        max_trials: int = 1,
    ) -> None:
        self.size = size
        self.unhealthy = 0
        self.max_ejected = max(1, math.floor(max_ejected_share * size + 1e-9))
        """Failure ejections are refused while this many deployments are cooling."""
        self.panic_below = panic_threshold * size
        """Panic while fewer than this many deployments are healthy."""
        self.max_trials = max_trials
        self.panic = False
        self.cooling = 0
        """Deployments whose cooldown was running at the last `cooling_now` (the
        ejection cap counts these; half-open ones are back in rotation)."""
        self._ends: list[tuple[float, int, DeploymentState]] = []
        self._seq = itertools.count()

    def cooling_started(self, s: DeploymentState) -> None:
        """`s` got a cooldown (new or longer): remember when it ends."""
        c = s.circuit
        if not c.counted:
            c.counted = True
            self.cooling += 1
        heapq.heappush(self._ends, (s.cooldown_until, next(self._seq), s))

    def cooling_ended(self, s: DeploymentState) -> None:
        """`s`'s cooldown was ended early (a probe)."""
        c = s.circuit
        if c.counted:
            c.counted = False
            self.cooling -= 1

    def cooling_now(self, now: float) -> int:
        """How many deployments are cooling at `now` (amortized O(log n))."""
        ends = self._ends
        while ends and ends[0][0] <= now:
            _, _, s = heapq.heappop(ends)
            # Skip entries superseded by a longer cooldown or an early end.
            if s.circuit.counted and s.cooldown_until <= now:
                s.circuit.counted = False
                self.cooling -= 1
        return self.cooling

    def changed(self, delta: int) -> None:
        self.unhealthy += delta
        self.panic = (self.size - self.unhealthy) < self.panic_below

    def __repr__(self) -> str:
        return (
            f"<PoolHealth size={self.size} unhealthy={self.unhealthy}"
            f"{' panic' if self.panic else ''}>"
        )


class CircuitState:
    """The health tracker's part of a `DeploymentState` (`state.circuit`). The mode
    itself, CLOSED or OPEN, is `DeploymentState.circuit_mode`."""

    __slots__ = (
        "bucket_start",
        "closed_at",
        "counted",
        "cur_fail",
        "cur_ok",
        "hard_until",
        "kind_fails",
        "pool",
        "prev_fail",
        "prev_ok",
        "probing",
        "streak",
        "trial_successes",
        "trials",
    )

    def __init__(self, pool: PoolHealth | None = None) -> None:
        self.pool = pool if pool is not None else PoolHealth()
        self.hard_until = 0.0
        """Until then the cooldown is binding even in panic mode (429, bad key)."""
        self.trials = 0
        self.trial_successes = 0
        self.streak = 0
        """Ejections in a row; the next lasts ``cooldown * (streak + 1)``."""
        self.closed_at = -math.inf
        self.kind_fails: dict[int, int] = {}
        # Two-bucket sliding counters of outcomes for the failure-rate trigger.
        self.bucket_start = -math.inf
        self.cur_ok = self.cur_fail = self.prev_ok = self.prev_fail = 0
        self.probing = False
        self.counted = False

    def __repr__(self) -> str:
        return f"<CircuitState trials={self.trials} streak={self.streak}>"


def is_available(s: DeploymentState, now: float) -> bool:
    """Whether health lets `s` take a request now (limits and tags are checked apart).

    CLOSED: yes. Cooling down: only in panic mode, and not while a 429's Retry-After
    or a bad key's cooldown runs. Half-open: while a trial slot is free (or panic).
    """
    c = s.circuit
    if s.cooldown_until > now:
        return c.pool.panic and c.hard_until <= now
    if s.circuit_mode == CLOSED:
        return True
    return c.trials < c.pool.max_trials or c.pool.panic


def health_state(s: DeploymentState, now: float) -> Literal["healthy", "cooling", "half_open"]:
    """``"healthy"``, ``"cooling"`` or ``"half_open"``."""
    if s.cooldown_until > now:
        return "cooling"
    return "healthy" if s.circuit_mode == CLOSED else "half_open"


class Waiters(Protocol):
    """The line of requests waiting for this deployment's group to free up
    (`interlock.limits.WaitQueue`): settling a reservation wakes its head."""

    @property
    def waiting(self) -> int: ...

    def wake(self) -> None: ...


class _Checked:
    """The fields an eligibility check and a strategy's comparison read, in a base
    class of their own so they sit together at the start of the object.

    CPython lays out slots in sorted name order, base class first; spread over the
    whole object these fields cost a pick in a pool of 10,000 deployments (where a
    randomly drawn deployment is rarely in the CPU's caches) about twice as many
    cache lines per candidate.
    """

    __slots__ = (
        "blocked_until",
        "budgets",
        "circuit",
        "circuit_mode",
        "context_window",
        "cooldown_until",
        "group",
        "in_flight",
        "max_concurrency",
        "rate_window",
        "rpm_limit",
        "tpm_limit",
        "weight",
    )


class DeploymentState(_Checked):
    """Live state of one deployment. Strategies receive these as candidates."""

    __slots__ = (
        "cache_read_cost",
        "cache_write_cost",
        "consecutive_failures",
        "deployment",
        "ejected_by",
        "ejections",
        "failures",
        "id",
        "input_cost",
        "input_tokens",
        "last_output_tokens",
        "latency_ewma",
        "order",
        "output_cost",
        "output_tokens",
        "price_tiers",
        "priced",
        "prices",
        "requests",
        "spend",
        "successes",
        "tags",
        "tiers_above",
        "transport",
        "ttft_ewma",
        "waiters",
    )

    def __init__(self, deployment: Deployment, transport: Transport) -> None:
        assert deployment.id is not None
        self.deployment = deployment
        self.transport = transport
        self.id: str = deployment.id
        self.group = deployment.group
        self.order = deployment.order
        self.tags = deployment.tags
        self.weight: float = deployment.weight or 1.0
        self.max_concurrency = deployment.max_concurrency
        # ledger
        self.in_flight = 0
        self.requests = 0
        self.rate_window = (
            RateWindow() if deployment.rpm is not None or deployment.tpm is not None else None
        )
        # limits (interlock.limits): effective rpm/tpm (scaled down while a shared
        # ledger is unreachable), a shared ledger's refusal, spend and budgets
        self.rpm_limit = deployment.rpm
        self.tpm_limit = deployment.tpm
        # Prices and window: the deployment's own, else built in (looked up once here,
        # so pricing a response is a few multiplications).
        prices = resolve_prices(deployment)
        self.prices: DeploymentPrices = prices
        self.priced = prices.known
        """False when no price is known: results carry cost=None, spend is unchanged."""
        self.context_window = prices.context_window
        self.blocked_until = 0.0
        self.input_cost = prices.input
        self.output_cost = prices.output
        self.cache_read_cost = prices.cache_read
        self.cache_write_cost = prices.cache_write
        self.price_tiers = prices.tiers
        # The lowest tier threshold (past any count when there are none): a prompt at
        # or below it is priced without looking at the tiers.
        self.tiers_above = prices.tiers[-1].above if prices.tiers else MAX_COUNT
        self.input_tokens = 0
        self.output_tokens = 0
        self.spend = 0.0
        self.budgets: tuple[BudgetCounter, ...] = ()
        self.waiters: Waiters | None = None
        # health
        self.successes = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.cooldown_until = 0.0
        self.ejections = 0
        self.ejected_by: Ejection | None = None
        """The error behind the latest ejection (kept after recovery)."""
        self.latency_ewma: float | None = None
        # strategies: completion tokens of the latest success (0 when unknown), set just
        # before the strategy's `record` (latency per token)
        self.last_output_tokens = 0
        # observability: smoothed time to first chunk of streams
        self.ttft_ewma: float | None = None
        self.circuit = CircuitState()
        """Half-open/ejection state; `HealthTracker.attach` links it to its pool."""
        self.circuit_mode = CLOSED
        """CLOSED (in rotation) or OPEN (ejected: cooling down, then half-open); set by
        the health tracker. Kept here rather than on `circuit`: every eligibility check
        reads it, and this object is already in the CPU's cache by then."""

    def cost_of(self, usage: Usage) -> float:
        """What `usage` costs at this deployment's prices: cached reads and cache
        writes (parts of `prompt_tokens`) at their own prices, the rest at the input
        price, completion tokens (reasoning included) at the output price; a prompt
        past a price tier's threshold pays that tier's prices for every token. 0.0
        for a deployment without prices (`priced` tells the two apart)."""
        prompt = usage.prompt_tokens
        inp = self.input_cost
        out = self.output_cost
        read = self.cache_read_cost
        write = self.cache_write_cost
        if prompt > self.tiers_above:
            for t in self.price_tiers:  # highest threshold first
                if prompt > t.above:
                    inp, out, read, write = t.input, t.output, t.cache_read, t.cache_write
                    break
        cost = prompt * inp + usage.completion_tokens * out
        details = usage.prompt_tokens_details
        if details is not None:
            cost += details.cached_tokens * (read - inp)
            cost += details.cache_creation_tokens * (write - inp)
        return cost

    def __repr__(self) -> str:
        return (
            f"<DeploymentState {self.id} group={self.group} in_flight={self.in_flight} "
            f"requests={self.requests} failures={self.failures} "
            f"cooldown_until={self.cooldown_until:.3f}>"
        )
