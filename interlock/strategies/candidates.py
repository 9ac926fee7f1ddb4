"""What a strategy chooses from: one order tier, checked for eligibility lazily.

Building the list of eligible deployments costs O(n) per request, too much for a
pool of 10,000. Instead the pool hands a strategy a `Candidates` view of the tier
(after tag filtering) and the predicate `ok(state)`; built-in strategies sample a
few deployments from the tier and check only those, so a pick stays O(1) while most
of the tier is eligible. When random probes keep failing (most of the tier cooling
or saturated) the view falls back to one scan and reuses the list it built.

`Candidates` is also a `Sequence`: code that iterates it or takes its `len()` gets the
materialized eligible list (O(n) the first time). Plain callables passed as a
strategy always receive that list.
"""

from __future__ import annotations

import random
from collections.abc import Container, Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

from interlock.records.state import CLOSED, is_available

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState
    from interlock.types import Request

__all__ = ["PROBES", "AliasTable", "Candidates", "NoEligible", "Tier"]

PROBES = 32
"""Random probes (at most the tier's size) before a view gives up on sampling and
scans the tier. With a share p of the tier ineligible a probe succeeds after
1 / (1 - p) tries on average, and the O(n) scan happens with probability p^32:
below 1e-4 while p <= 3/4."""


class NoEligible(Exception):
    """Raised by a `Candidates` view (and so from a lazy strategy's `choose`) when the
    tier has no eligible deployment; the pool moves on to the next tier."""


class Tier:
    """One order tier of a pool after tag filtering.

    `states` is fixed for the life of the pool; `cache` holds what strategies derive
    from it once (alias tables, price orderings), keyed by the strategy instance.
    """

    __slots__ = ("_alias", "cache", "mean_weight", "members", "n", "order", "states", "uniform")

    def __init__(self, states: Sequence[DeploymentState], order: int) -> None:
        if not states:
            raise ValueError("Tier: a tier needs at least one deployment")
        self.states: tuple[DeploymentState, ...] = tuple(states)
        self.n = len(self.states)
        self.order = order
        self.members = frozenset(self.states)
        first = self.states[0].weight
        self.uniform = all(s.weight == first for s in self.states)
        """Every deployment has the same share (weighted choice is a uniform one)."""
        self.mean_weight = first if self.uniform else sum(s.weight for s in self.states) / self.n
        """The tier's mean `weight` (exactly each one's when they are all equal)."""
        self.cache: dict[object, Any] = {}
        self._alias: AliasTable | None = None

    @property
    def alias(self) -> AliasTable:
        """An alias table over the deployments' `weight` (built on first use)."""
        table = self._alias
        if table is None:
            table = self._alias = AliasTable([s.weight for s in self.states])
        return table

    def __repr__(self) -> str:
        return f"<Tier order={self.order} deployments={self.n}>"


class Candidates(Sequence["DeploymentState"]):
    """The eligible deployments of one tier for one request, checked on demand.

    `first` is a uniformly random eligible deployment, found on first access (it
    raises `NoEligible` when there is none). A strategy receives a view whose `first`
    is already known, so the tier is not empty, unless it sets the class attribute
    ``lazy_candidates = True``: then the pool hands it the view untouched and treats
    `NoEligible` from `choose` as "this tier has nothing" (the built-ins do this, to
    save a probe). `ok(s)` says whether `s` may serve the request now: not cooling,
    not already tried by this request, with concurrency and rate headroom (tags and
    order were applied when the tier was built).
    """

    __slots__ = ("_first", "_list", "exclude", "now", "request", "rng", "tier", "tokens")

    def __init__(
        self,
        tier: Tier,
        request: Request,
        now: float,
        exclude: Container[DeploymentState],
        rng: random.Random,
    ) -> None:
        self.tier = tier
        self.request = request
        self.now = now
        self.exclude = exclude
        self.rng = rng
        self.tokens = request.est_input_tokens + request.est_output_tokens
        self._list: list[DeploymentState] | None = None
        self._first: DeploymentState | None = None

    def reset(
        self, tier: Tier, request: Request, now: float, exclude: Container[DeploymentState]
    ) -> None:
        """Point the view at another tier, request or time, as if newly built.

        The pool keeps one view and resets it for every pick (building an object costs
        about as much as two eligibility checks), so a view is valid only during the
        `choose` call that receives it: a strategy must not keep it.
        """
        self.tier = tier
        self.request = request
        self.now = now
        self.exclude = exclude
        self.tokens = request.est_input_tokens + request.est_output_tokens
        self._list = None
        self._first = None

    @property
    def first(self) -> DeploymentState:
        """A uniformly random eligible deployment (the same one on every access)."""
        s = self._first
        if s is None:
            s = self.probe()
            if s is None:
                raise NoEligible
        return s

    def ok(self, s: DeploymentState) -> bool:
        """May `s` serve this request right now?

        Health, then not tried yet, then `Ledger.has_headroom`, written out here: this
        runs for every deployment a strategy looks at, and the call would be a tenth
        of a pick (tests/unit/strategies/test_candidates.py keeps the two in agreement).
        """
        now = self.now
        # Healthy and closed is the common case; anything else asks the health module
        # (half-open trial slots, panic mode).
        if not (s.cooldown_until <= now and s.circuit_mode == CLOSED) and not is_available(s, now):
            return False
        if s in self.exclude:
            return False
        lim = s.max_concurrency
        if lim is not None and s.in_flight >= lim:
            return False
        if s.blocked_until > now:
            return False
        tokens = self.tokens
        w = s.rate_window
        if w is not None:
            if now >= w.edge:
                w.advance(now)
            lim = s.rpm_limit
            if lim is not None and w.requests >= lim:
                return False
            lim = s.tpm_limit
            if lim is not None and w.tokens + tokens > lim:
                return False
        lim = s.context_window
        if lim is not None and tokens > lim:
            return False
        if s.budgets:
            for b in s.budgets:
                if b.exhausted(now):
                    return False
        return True

    def probe(self) -> DeploymentState | None:
        """Find one uniformly random eligible deployment (and remember it as `first`),
        or None when the tier has none. O(1) expected; one scan when probes fail."""
        s = self._first
        if s is None:
            # The first draw in this frame (see `weighted`), then `_probing`.
            tier = self.tier
            n = tier.n
            s = tier.states[int(self.rng.random() * n)]
            if not self.ok(s):
                s = self._probing((PROBES if n > PROBES else n) - 1)
            self._first = s
        return s

    def eligible(self) -> list[DeploymentState]:
        """Every eligible deployment of the tier, in tier order. O(n) the first time."""
        lst = self._list
        if lst is None:
            ok = self.ok
            lst = self._list = [s for s in self.tier.states if ok(s)]
        return lst

    def require(self) -> list[DeploymentState]:
        """`eligible()`, raising `NoEligible` when it is empty."""
        lst = self.eligible()
        if not lst:
            raise NoEligible
        return lst

    @property
    def materialized(self) -> bool:
        """Whether `eligible()` has been built already (then it is free to use)."""
        return self._list is not None

    def weighted(self) -> DeploymentState:
        """An eligible deployment drawn with probability proportional to its `weight`
        (the share `weighted` uses); raises `NoEligible` when there is none.

        Equal weights: `first`. Otherwise draws from an alias table built once per tier
        and rejects ineligible draws, which leaves the distribution over the eligible
        ones exact; after `PROBES` rejections it draws from the eligible list (O(n),
        only when most of the tier is out). O(1) expected."""
        tier = self.tier
        if tier.uniform:
            return self.first
        table = tier._alias
        if table is None:
            table = tier.alias
        # The first draw, in this frame: it is eligible nearly always, and setting up
        # the probing loop would cost a quarter of the call.
        n = tier.n
        u = self.rng.random() * n
        i = int(u)
        s = tier.states[i if u - i < table._prob[i] else table._alias[i]]
        if self.ok(s):
            return s
        return self._weighted_probing(table, (PROBES if n > PROBES else n) - 1)

    def _weighted_probing(self, table: AliasTable, tries: int) -> DeploymentState:
        """`weighted()` after a rejected first draw: up to `tries` more draws, then a
        weighted choice from the eligible list."""
        states = self.tier.states
        n = self.tier.n
        prob = table._prob
        alias = table._alias
        rnd = self.rng.random
        ok = self.ok
        for _ in range(tries):
            u = rnd() * n
            i = int(u)
            s = states[i if u - i < prob[i] else alias[i]]
            if ok(s):
                return s
        lst = self.require()
        return self.rng.choices(lst, weights=[s.weight for s in lst])[0]

    def sample_from(
        self, states: Sequence[DeploymentState], tries: int | None = None
    ) -> DeploymentState | None:
        """An eligible member of `states` found by up to `tries` uniform probes
        (default: `PROBES`, at most ``len(states)``), or None."""
        n = len(states)
        if tries is None:
            tries = PROBES if n > PROBES else n
        rnd = self.rng.random
        ok = self.ok
        for _ in range(tries):
            s = states[int(rnd() * n)]
            if ok(s):
                return s
        return None

    def another(self, s: DeploymentState) -> DeploymentState | None:
        """A uniformly random eligible deployment other than `s`; None when `s` is the
        only one. O(1) expected (probes), one scan when probes fail."""
        tier = self.tier
        n = tier.n
        if self._list is not None or n <= 1:
            return self._other_than(s)
        # The first draw in this frame (see `weighted`), then `_another_probing`.
        t = tier.states[int(self.rng.random() * n)]
        if t is not s and self.ok(t):
            return t
        return self._another_probing(s, (PROBES if n > PROBES else n) - 1)

    def pair(self) -> tuple[DeploymentState, DeploymentState | None]:
        """``(first, another(first))`` in one call, for the power-of-two-choices
        strategies: two distinct uniformly random eligible deployments, the second
        None when the first is the only one. Raises `NoEligible` when there is none.

        The common case (both draws eligible) takes two draws, in one frame; the
        second draw is over the other deployments, so it never has to be repeated
        because it hit the first one."""
        tier = self.tier
        states = tier.states
        n = tier.n
        rnd = self.rng.random
        a = self._first
        if a is None:
            a = states[int(rnd() * n)]
            if not self.ok(a):
                a = self._probing((PROBES if n > PROBES else n) - 1)
                if a is None:
                    raise NoEligible
            self._first = a
        if n == 1:
            return a, None  # `a` is eligible and alone in the tier
        if self._list is not None:
            return a, self.another(a)
        # Uniform over the others in one draw: n - 1 slots, the last deployment standing
        # in for `a` when `a` is drawn.
        t = states[int(rnd() * (n - 1))]
        if t is a:
            t = states[n - 1]
        if self.ok(t):
            return a, t
        return a, self._another_probing(a, (PROBES if n > PROBES else n) - 1)

    def weighted_pair(self) -> tuple[DeploymentState, DeploymentState | None]:
        """``(weighted(), another(it))`` in one call: the first drawn in proportion to
        weight, the second uniformly among the other eligible deployments (None when
        the first is the only one). Raises `NoEligible` when there is none. Equal
        weights: `pair()`."""
        tier = self.tier
        if tier.uniform:
            return self.pair()
        states = tier.states
        n = tier.n
        table = tier._alias
        if table is None:
            table = tier.alias
        rnd = self.rng.random
        u = rnd() * n
        i = int(u)
        a = states[i if u - i < table._prob[i] else table._alias[i]]
        if not self.ok(a):
            a = self.weighted()
        # n >= 2 here (a tier of one is uniform). Uniform over the others in one draw.
        if self._list is not None:
            return a, self.another(a)
        t = states[int(rnd() * (n - 1))]
        if t is a:
            t = states[n - 1]
        if self.ok(t):
            return a, t
        return a, self._another_probing(a, (PROBES if n > PROBES else n) - 1)

    def _probing(self, tries: int) -> DeploymentState | None:
        """Up to `tries` uniform draws from the tier, then (all missed) a uniform choice
        from the eligible list; None when there is none."""
        states = self.tier.states
        n = self.tier.n
        rnd = self.rng.random
        ok = self.ok
        for _ in range(tries):
            s = states[int(rnd() * n)]
            if ok(s):
                return s
        lst = self.eligible()
        m = len(lst)
        if not m:
            return None
        return lst[0] if m == 1 else lst[int(rnd() * m)]

    def _another_probing(self, s: DeploymentState, tries: int) -> DeploymentState | None:
        """`another(s)` by up to `tries` draws from the tier, then from the list."""
        states = self.tier.states
        n = self.tier.n
        rnd = self.rng.random
        ok = self.ok
        for _ in range(tries):
            t = states[int(rnd() * n)]
            if t is not s and ok(t):
                return t
        return self._other_than(s)

    def _other_than(self, s: DeploymentState) -> DeploymentState | None:
        """A uniformly random member of the eligible list other than `s` (or None)."""
        lst = self.eligible()
        m = len(lst)
        if m <= 1:
            return None if (m == 0 or lst[0] is s) else lst[0]
        # Uniform over the others: draw among m - 1 slots, the last one standing in
        # for `s` if `s` was drawn.
        t = lst[int(self.rng.random() * (m - 1))]
        return lst[m - 1] if t is s else t

    # Sequence: the materialized eligible list, for strategies that want all of it.
    def __len__(self) -> int:
        return len(self.eligible())

    @overload
    def __getitem__(self, i: int) -> DeploymentState: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[DeploymentState]: ...
    def __getitem__(self, i: int | slice) -> DeploymentState | Sequence[DeploymentState]:
        return self.eligible()[i]

    def __iter__(self) -> Iterator[DeploymentState]:
        return iter(self.eligible())

    def __contains__(self, s: object) -> bool:
        return s in self.tier.members and self.ok(s)

    def __repr__(self) -> str:
        known = f"{len(self._list)} eligible" if self._list is not None else "lazy"
        return f"<Candidates order={self.tier.order} of {self.tier.n} ({known})>"


class AliasTable:
    """Vose's alias method: draws index i with probability weight[i] / sum in O(1)
    after an O(n) build. Weights must be >= 0 with a positive sum."""

    __slots__ = ("_alias", "_n", "_prob")

    def __init__(self, weights: Sequence[float]) -> None:
        n = len(weights)
        total = float(sum(weights))
        if n == 0 or not total > 0:
            raise ValueError("AliasTable: weights must be non-empty with a positive sum")
        scaled = [w * n / total for w in weights]
        prob = [1.0] * n
        alias = list(range(n))
        small = [i for i, p in enumerate(scaled) if p < 1.0]
        large = [i for i, p in enumerate(scaled) if p >= 1.0]
        while small and large:
            lo = small.pop()
            hi = large.pop()
            prob[lo] = scaled[lo]
            alias[lo] = hi
            scaled[hi] = (scaled[hi] + scaled[lo]) - 1.0
            (small if scaled[hi] < 1.0 else large).append(hi)
        # Leftovers are 1 up to rounding.
        for i in small + large:
            prob[i] = 1.0
        self._n = n
        self._prob = prob
        self._alias = alias

    def draw(self, rng: random.Random) -> int:
        u = rng.random() * self._n
        i = int(u)
        return i if u - i < self._prob[i] else self._alias[i]
