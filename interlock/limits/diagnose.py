"""Why no deployment of a group can take a request: the one slow-path classifier.

The pipeline asks only when a pool's strategy found nothing eligible. The answer
decides what happens next (redirect to the context-window fallbacks, wait in the
capacity queue, back off, or give the group up) and, when the call fails, what its
error says: one line per deployment and the seconds until the first may be usable.

A cooling deployment's line says until when and after which error, as wall-clock
times: the router's clock is monotonic (its readings mean nothing to a person), so a
time on it is shown as ``time.time()`` at the moment the line is written plus the
seconds between it and the router's `now`, in UTC (``12:03:07 UTC``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Literal

from interlock.limits.ledger import Ledger
from interlock.records.budget import BudgetCounter
from interlock.records.state import DeploymentState, is_available

__all__ = ["Diagnosis", "DiagnosisKind", "clock_time", "diagnose", "time_in"]

_HALF_DAY = 43_200.0

DiagnosisKind = Literal["free", "limits", "oversize", "context", "budget", "other"]


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Why a group could not take a request, summed over its deployments."""

    kind: DiagnosisKind
    """``free``: some deployment could take it now; ``limits``: some deployment frees
    up with time or as requests finish (waiting helps); ``oversize``/``context``: no
    deployment can ever take it; ``budget``: every candidate is over budget;
    ``other``: cooling down, tags, already tried."""
    wait: float | None
    """Seconds until the first deployment may be usable (None when not known)."""
    budget: BudgetCounter | None
    """The used-up budget that resets first, when budgets are what blocks."""
    reasons: tuple[str, ...]
    """One line per deployment, for error messages and logs."""


def diagnose(
    states: Iterable[DeploymentState],
    tokens: int,
    now: float,
    tags: frozenset[str] = frozenset(),
    exclude: Container[DeploymentState] = (),
    wall: float | None = None,
) -> Diagnosis:
    """Classify why none of `states` can take a request of `tokens` carrying `tags`
    (the effective tags: see `DeploymentPool`), `exclude` being those already tried.
    `wall` is the wall-clock time (``time.time()``) at the router's `now`, for the
    times the lines show (default: read now). O(n)."""
    wall = time.time() if wall is None else wall
    kinds: set[str] = set()
    waits: list[float] = []
    reasons: list[str] = []
    budget: BudgetCounter | None = None
    for s in states:
        if tags and not tags <= s.tags:
            reasons.append(f"{s.id}: lacks tags {sorted(tags - s.tags)}")
            continue
        b = Ledger.block(s, tokens, now)
        available = is_available(s, now)
        excluded = s in exclude
        line, wait = _reason(s, b.kind, b.why, b.wait, available, excluded, now, wall)
        reasons.append(line)
        if wait is not None:
            waits.append(wait)
        if excluded:
            kinds.add("other")
        elif b.kind == "ok":
            kinds.add("free" if available else "other")
        else:
            kinds.add(b.kind)
            if b.budget is not None and (
                budget is None or b.budget.reset_in(now) < budget.reset_in(now)
            ):
                budget = b.budget
    return Diagnosis(_kind(kinds), min(waits) if waits else None, budget, tuple(reasons))


def _reason(
    s: DeploymentState,
    block: str,
    why: str,
    limit_wait: float | None,
    available: bool,
    excluded: bool,
    now: float,
    wall: float,
) -> tuple[str, float | None]:
    """One deployment's line, and the seconds until it may take the request."""
    if s.cooldown_until > now and not available:
        wait = s.cooldown_until - now
        if block != "ok" and limit_wait is not None:
            wait = max(wait, limit_wait)  # usable once both have passed
        return f"{s.id}: {_cooling(s, now, wall)}", wait
    if block != "ok":
        return f"{s.id}: {why}", limit_wait
    if not available:
        e = s.ejected_by
        after = f" after {e.describe()} at {clock_time(wall - (now - e.at))}" if e else ""
        return f"{s.id}: half-open{after}, trial request in flight", None
    if excluded:
        return f"{s.id}: already tried", None
    return f"{s.id}: can take it now", None


def _cooling(s: DeploymentState, now: float, wall: float) -> str:
    """``cooling until 12:03:07 UTC (in 60.0 s) after AuthenticationError (401) at
    12:02:07 UTC``: when the cooldown ends, and the ejection that set it."""
    left = s.cooldown_until - now
    if math.isfinite(left):
        head = f"cooling until {time_in(left, wall)} (in {left:.1f} s)"
    else:
        head = "cooling with no end set"
    e = s.ejected_by
    if e is None or e.until < s.cooldown_until:
        # Only a shared ledger sets a cooldown without an ejection here.
        return f"{head}, a cooldown shared by another router"
    return f"{head} after {e.describe()} at {clock_time(wall - (now - e.at))}"


def time_in(seconds: float, wall: float) -> str:
    """The wall-clock time `seconds` after `wall`, with its date when that is more than
    half a day away."""
    return clock_time(wall + seconds, date=seconds >= _HALF_DAY)


def clock_time(wall: float, *, date: bool = False) -> str:
    """A wall-clock time (seconds since the epoch) as ``HH:MM:SS UTC``, with the date
    first when `date` (a time more than half a day away)."""
    try:
        t = time.gmtime(wall)
    except (OverflowError, OSError, ValueError):
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC" if date else "%H:%M:%S UTC", t)


def _kind(kinds: set[str]) -> DiagnosisKind:
    if "free" in kinds:
        return "free"
    if kinds & {"concurrency", "rate", "shared"}:
        return "limits"
    if kinds == {"context"}:
        return "context"
    if kinds and kinds <= {"context", "oversize"}:
        return "oversize"
    if "budget" in kinds and kinds <= {"budget", "context", "oversize"}:
        return "budget"
    return "other"
