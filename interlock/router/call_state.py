"""What one call carries across its attempts and groups, and the errors that end it."""

from __future__ import annotations

import math
import time
from collections.abc import Set as AbstractSet

from interlock.errors import (
    AttemptRecord,
    BudgetExceededError,
    DeadlineExceededError,
    InterlockError,
    NoDeploymentAvailableError,
    RateLimitError,
)
from interlock.failures import FailureKind
from interlock.health.retry_budget import RetryBudget
from interlock.limits.diagnose import Diagnosis, time_in
from interlock.records.state import DeploymentState
from interlock.types import Request

__all__ = [
    "NOTHING_TRIED",
    "Call",
    "GroupDone",
    "Redirect",
    "deadline_error",
    "describe",
    "note_refusal",
    "refusal_error",
]


class GroupDone(Exception):
    """The group being tried can do no more for this call; move on to the next one."""


class Redirect(Exception):
    """A context-window or content-policy error: switch to that fallback chain."""

    def __init__(self, kind: str, error: InterlockError) -> None:
        self.kind = kind
        self.error = error


NOTHING_TRIED: frozenset[DeploymentState] = frozenset()
"""`Call.tried` until a deployment of the group is tried."""


class Call:
    """What one call carries across its attempts and groups.

    The fields under "the group being tried" are reset by `next_group` each time the
    call moves to another group of its fallback chain.

    Only what every call sets is a slot. The rest are class-level defaults (all
    immutable) that a call overrides, in its own ``__dict__``, only when a failure, a
    retry, a queue or a fallback changes one: a call that succeeds at once (the
    common case) writes none of them and never has a ``__dict__``.
    """

    __slots__ = (
        "__dict__",
        "chain",
        "deadline",
        "group_attempts",
        "max_depth",
        "request",
        "retry_budget",
        "sent",
        "timeout",
        "visited",
    )

    # Containers a failure fills are shared empties until then.
    attempts: tuple[AttemptRecord, ...] = ()
    last_error: InterlockError | None = None
    unavailable: tuple[str, ...] = ()
    blocked: tuple[Diagnosis, ...] = ()
    soonest: float | None = None
    free_retry: bool = False
    """The next attempt is routing, not a retry (after a redirect): it is free."""
    spare: bool = True
    """The call's one free retry to a healthy untried deployment is unused."""
    refused: str | None = None
    """Why the retry budget refused one of this call's retries (None: it did not)."""
    refused_at: tuple[str, str] = ("", "")
    """The group and deployment (id, "" when none was chosen) of that retry."""
    chain_kind: str = "default"
    _i: int = 1
    """The next position in `chain` (the call starts on its first group, as
    `next_group` would start it)."""
    previous: str | None = None
    """The group tried before the current one (None for the first)."""
    # the group being tried (`next_group` resets these)
    tried: AbstractSet[DeploymentState] = NOTHING_TRIED
    """Deployments tried in this group (`mark_tried`)."""
    kind_counts: dict[FailureKind, int] | None = None
    """Failures by kind in this group (made on the first one counted)."""
    waits: int = 0
    """Backoff sleeps in this group."""
    queued_at: float | None = None
    """When the call first joined this group's capacity queue."""
    woken: bool = False
    """The capacity queue just woke the call: it goes first."""

    def __init__(
        self,
        request: Request,
        deadline: float,
        timeout: float,
        retry_budget: RetryBudget,
        chain: tuple[str, ...],
        max_depth: int,
    ) -> None:
        self.request = request
        self.deadline = deadline
        self.timeout = timeout
        self.retry_budget = retry_budget
        """The retry budget of the group the call started at (it pays for every
        attempt after the first, hedges and fallback attempts included, but the
        call's first retry to a healthy deployment: see `spare`)."""
        self.sent = 0
        """Attempts sent, every group together."""
        # the route: `chain` is the fallback chain of the group asked for (it starts
        # with that group), or the special chain a `Redirect` switched to
        self.chain = chain
        self.max_depth = max_depth
        """Fallback groups the call may move through after the first."""
        # A tuple, not a list: one GC-tracked object less per call while it is in
        # flight (fallbacks, which extend it, are rare).
        self.visited: tuple[str, ...] = (chain[0],)
        request.group = chain[0]
        self.group_attempts = 0
        """Attempts in the group being tried (`next_group` resets it)."""

    def mark_tried(self, state: DeploymentState) -> None:
        """`state` was tried in this group: later attempts avoid it while they can."""
        tried = self.tried
        if tried is NOTHING_TRIED:
            self.tried = {state}
        else:
            assert isinstance(tried, set)
            tried.add(state)

    def next_group(self) -> str | None:
        """Move on to the next group of the chain not visited yet (None when the chain
        or the fallback depth is used up), starting afresh on it."""
        chain = self.chain
        while self._i < len(chain) and len(self.visited) <= self.max_depth:
            group = chain[self._i]
            self._i += 1
            if group in self.visited:
                continue
            self.previous = self.visited[-1] if self.visited else None
            self.visited = (*self.visited, group)
            self.request.group = group
            self.tried = NOTHING_TRIED
            self.kind_counts = None
            self.group_attempts = 0
            self.waits = 0
            self.queued_at = None
            self.woken = False
            return group
        return None

    @property
    def has_next(self) -> bool:
        """Another group may follow the current one."""
        return self._i < len(self.chain) and len(self.visited) <= self.max_depth

    @property
    def chain_done(self) -> bool:
        """No group of the current chain is left (the depth aside)."""
        return self._i >= len(self.chain)

    def switch(self, chain: tuple[str, ...], kind: str) -> None:
        """Follow `chain` (a special fallback chain of `kind`) from its start."""
        self.chain, self.chain_kind, self._i = chain, kind, 0

    @property
    def first_group(self) -> str:
        """The group the call asked for."""
        return self.visited[0] if self.visited else self.request.group


def refusal_error(call: Call, now: float, wall: float | None = None) -> InterlockError:
    """The error for a call that no deployment could even be sent: over limits
    (RateLimitError), over budget (BudgetExceededError), or else unavailable. Its
    message has a line per deployment (`diagnose`) and, when known, when the first one
    may be usable again, as a wall-clock time (`wall`: ``time.time()`` at `now`)."""
    request = call.request
    kinds = {ex.kind for ex in call.blocked}
    why = " | ".join(call.unavailable) + _first_back(call.soonest, wall)
    if kinds and kinds <= {"limits", "oversize", "budget"} and kinds != {"budget"}:
        return RateLimitError(
            f"no deployment of {request.requested!r} has capacity: {why}",
            retry_after=call.soonest,
            attempts=call.attempts,
        )
    if kinds == {"budget"}:
        counter = min(
            (ex.budget for ex in call.blocked if ex.budget is not None),
            key=lambda c: c.resets_at,
        )
        return BudgetExceededError(
            f"budget {counter.budget.label} for {request.requested!r} is used up "
            f"(${counter.spent:.4g} spent); it resets in {counter.reset_in(now):.0f} s",
            retry_after=counter.reset_in(now),
            attempts=call.attempts,
        )
    return NoDeploymentAvailableError(
        f"no deployment can serve {request.requested!r}: {why}",
        retry_after=call.soonest,
        attempts=call.attempts,
    )


def _first_back(soonest: float | None, wall: float | None) -> str:
    if soonest is None or not math.isfinite(soonest):
        return ""
    wall = time.time() if wall is None else wall
    return f"; the first may be usable at {time_in(soonest, wall)} (in {soonest:.1f} s)"


def note_refusal(error: InterlockError, call: Call) -> InterlockError:
    """`error` as the call's final error, saying that the retry budget refused one of
    its retries (when it did): in its message, and as the last of its `attempts`, a
    record of the attempt that was not sent (duration 0)."""
    error.attempts = tuple(call.attempts)
    error.request_id = call.request.id
    if call.refused is not None:
        error.message = f"{error.message}; {call.refused}"
        error.args = (error.message,)
        group, deployment = call.refused_at
        error.attempts = (*error.attempts, AttemptRecord(group, deployment, call.refused, 0.0))
    return error


def deadline_error(call: Call) -> DeadlineExceededError:
    last = call.last_error
    tail = f"; last error: {describe(last)}" if last is not None else ""
    err = DeadlineExceededError(
        f"deadline of {call.timeout:.3g} s for {call.request.requested!r} passed after "
        f"{len(call.attempts)} attempt(s){tail}",
        attempts=call.attempts,
    )
    err.request_id = call.request.id
    return err


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
