"""What one call carries across its attempts and groups, and the errors that end it."""

from __future__ import annotations

from interlock.errors import (
    AttemptRecord,
    BudgetExceededError,
    DeadlineExceededError,
    InterlockError,
    NoDeploymentAvailableError,
    RateLimitError,
)
from interlock.health.retry_budget import RetryBudget
from interlock.limits.ledger import Exhaustion
from interlock.types import Request

__all__ = [
    "Call",
    "Exhausted",
    "Redirect",
    "deadline_error",
    "describe",
    "refusal_error",
]


class Exhausted(Exception):
    """A group can do no more for this call; move on to the next group."""


class Redirect(Exception):
    """A context-window or content-policy error: switch to that fallback chain."""

    def __init__(self, kind: str, error: InterlockError) -> None:
        self.kind = kind
        self.error = error


class Call:
    """What one call carries across its attempts and groups."""

    __slots__ = (
        "attempts",
        "blocked",
        "budget",
        "deadline",
        "free_retry",
        "last_error",
        "request",
        "sent",
        "soonest",
        "stopped",
        "timeout",
        "unavailable",
    )

    def __init__(self, request: Request, deadline: float, timeout: float, budget: RetryBudget):
        self.request = request
        self.deadline = deadline
        self.timeout = timeout
        self.budget = budget
        self.attempts: list[AttemptRecord] = []
        self.last_error: InterlockError | None = None
        self.unavailable: list[str] = []
        self.blocked: list[Exhaustion] = []
        self.soonest: float | None = None
        self.sent = 0
        self.free_retry = False
        self.stopped = False


def refusal_error(call: Call, now: float) -> InterlockError:
    """The error for a call that no deployment could even be sent: over limits
    (RateLimitError), over budget (BudgetExceededError), or else unavailable."""
    request = call.request
    kinds = {ex.kind for ex in call.blocked}
    if kinds and kinds <= {"limits", "oversize", "budget"} and kinds != {"budget"}:
        return RateLimitError(
            f"no deployment of {request.requested!r} has capacity: " + " | ".join(call.unavailable),
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
        f"no deployment can serve {request.requested!r}: " + " | ".join(call.unavailable),
        retry_after=call.soonest,
        attempts=call.attempts,
    )


def deadline_error(call: Call) -> DeadlineExceededError:
    last = call.last_error
    tail = f"; last error: {describe(last)}" if last is not None else ""
    return DeadlineExceededError(
        f"deadline of {call.timeout:.3g} s for {call.request.requested!r} passed after "
        f"{len(call.attempts)} attempt(s){tail}",
        attempts=call.attempts,
    )


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
