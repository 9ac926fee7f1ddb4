"""The ledger: in-flight requests, RPM and TPM per deployment, spend and budgets.

Reserve before the call, settle exactly once after it. State changes are
synchronous, so concurrent requests on one event loop can never both take the last
unit of headroom. Every operation is O(1) (budgets: O(budgets covering the
deployment), usually 0-2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, overload

from interlock.records.budget import BudgetCounter
from interlock.records.state import DeploymentState
from interlock.types import Usage

__all__ = [
    "BlockKind",
    "Blocked",
    "Ledger",
    "RemoteTicket",
    "Reservation",
]

BlockKind = Literal["ok", "concurrency", "rate", "shared", "oversize", "context", "budget"]
"""Why a deployment cannot take a request now: ``rate`` (rpm/tpm window), ``shared``
(the shared ledger refused it), ``oversize`` (the request exceeds the whole tpm
limit: waiting cannot help), ``context`` (prompt + output exceed the context
window), ``budget`` (a budget covering it is used up)."""


class RemoteTicket(Protocol):
    """What a shared ledger attaches to a reservation it admitted."""

    def settle(self, delta_tokens: int) -> None: ...


class Reservation:
    """What one attempt holds at one deployment until it is settled or released."""

    __slots__ = ("attempt", "open", "remote", "state", "tick", "tokens")

    def __init__(self, state: DeploymentState, tokens: int, tick: int):
        self.state = state
        self.tokens = tokens
        self.tick = tick  # the rate window's bucket it was counted in
        self.open = True
        self.attempt = 1  # the attempt's number, set by the pipeline when observed
        self.remote: RemoteTicket | None = None

    def __repr__(self) -> str:
        return (
            f"<Reservation {self.state.id} tokens={self.tokens} "
            f"{'open' if self.open else 'settled'}>"
        )


R = TypeVar("R", bound=Reservation)


class Ledger:
    """Reserve/settle accounting; every operation is O(1)."""

    __slots__ = ()

    @staticmethod
    def has_headroom(s: DeploymentState, tokens: int, now: float) -> bool:
        """Can `s` take a request of `tokens` (prompt + expected output) now?

        A request larger than the whole TPM limit is never admitted (it would be
        refused upstream, or take the whole minute); neither is one larger than the
        context window.
        """
        lim = s.max_concurrency
        if lim is not None and s.in_flight >= lim:
            return False
        if s.blocked_until > now:
            return False
        w = s.rate_window
        if w is not None:
            # Read inline (see RateWindow): this runs for every candidate a strategy
            # looks at.
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

    @staticmethod
    def block(s: DeploymentState, tokens: int, now: float) -> Blocked:
        """Why `s` cannot take the request (kind "ok" if it can). Slow path."""
        d = s.deployment
        cw = s.context_window
        if cw is not None and tokens > cw:
            return Blocked("context", f"context window {cw} < ~{tokens} tokens needed", None)
        for b in s.budgets:
            if b.exhausted(now):
                return Blocked(
                    "budget",
                    f"budget {b.budget.label} used up (${b.spent:.4g}); "
                    f"resets in {b.reset_in(now):.0f} s",
                    b.reset_in(now),
                    b,
                )
        if d.tpm is not None and tokens > d.tpm:
            return Blocked("oversize", f"~{tokens} tokens exceed its whole tpm limit {d.tpm}", None)
        if s.max_concurrency is not None and s.in_flight >= s.max_concurrency:
            return Blocked(
                "concurrency",
                f"at its concurrency cap ({s.in_flight}/{s.max_concurrency} in flight)",
                None,
            )
        if s.blocked_until > now:
            wait = s.blocked_until - now
            return Blocked("shared", f"over a shared limit for {wait:.2f} s more", wait)
        w = s.rate_window
        if w is not None:
            used_requests, used_tokens = w.totals(now)
            if s.rpm_limit is not None and used_requests >= s.rpm_limit:
                return Blocked(
                    "rate",
                    f"over its rpm limit ({s.rpm_limit})",
                    w.next_expiry(now, "requests"),
                )
            if s.tpm_limit is not None and used_tokens + tokens > s.tpm_limit:
                return Blocked(
                    "rate",
                    f"over its tpm limit ({used_tokens} + {tokens} > {s.tpm_limit})",
                    w.next_expiry(now, "tokens"),
                )
        return Blocked("ok", "has headroom", 0.0)

    @overload
    @staticmethod
    def reserve(s: DeploymentState, tokens: int, now: float) -> Reservation: ...

    @overload
    @staticmethod
    def reserve(s: DeploymentState, tokens: int, now: float, kind: type[R]) -> R: ...

    @staticmethod
    def reserve(
        s: DeploymentState, tokens: int, now: float, kind: type[Reservation] = Reservation
    ) -> Reservation:
        """Count a request of `tokens` at `s` (in flight, rpm, tpm) and hold it in a new
        `kind` (a `Reservation`, or a subclass that carries more, like the router's
        `Attempt`)."""
        s.in_flight += 1
        s.requests += 1
        w = s.rate_window
        return kind(s, tokens, w.add(now, tokens) if w is not None else 0)

    @staticmethod
    def settle(
        r: Reservation, actual_tokens: int | None, now: float, usage: Usage | None = None
    ) -> float | None:
        """The call succeeded; reconcile the estimate with what the provider reported.

        `usage` (prompt and completion tokens, cached reads and cache writes at their
        own prices: `DeploymentState.cost_of`) prices the request: its cost is added
        to the deployment's spend and to every budget covering it, and returned (the
        router's result and success event report it); None without usage, for a
        deployment without a known price, or when `r` was settled already.
        """
        if not r.open:
            return None
        r.open = False
        cost: float | None = None
        s = r.state
        s.in_flight -= 1
        if actual_tokens is not None:
            delta = actual_tokens - r.tokens
            if delta:
                w = s.rate_window
                if w is not None:
                    w.adjust(now, r.tick, 0, delta)
            if r.remote is not None:
                r.remote.settle(delta)
        if usage is not None:
            s.input_tokens += usage.prompt_tokens
            s.output_tokens += usage.completion_tokens
            if s.priced:
                cost = s.cost_of(usage)
                if cost:
                    s.spend += cost
                    for b in s.budgets:
                        b.add(cost, now)
        q = s.waiters
        if q is not None and q.waiting:
            q.wake()
        return cost

    @staticmethod
    def release(r: Reservation, now: float) -> None:
        """The call failed or was cancelled: give back the tokens it did not use.

        The request itself still counts against RPM: it reached (or may have reached)
        the provider.
        """
        if not r.open:
            return
        r.open = False
        s = r.state
        s.in_flight -= 1
        w = s.rate_window
        if w is not None:
            w.adjust(now, r.tick, 0, -r.tokens)
        if r.remote is not None:
            r.remote.settle(-r.tokens)
        q = s.waiters
        if q is not None and q.waiting:
            q.wake()

    @staticmethod
    def cancel(r: Reservation, now: float) -> None:
        """Undo a reservation whose request was never sent (a shared ledger refused
        it): request, RPM and TPM are all given back."""
        if not r.open:
            return
        r.open = False
        s = r.state
        s.in_flight -= 1
        s.requests -= 1
        w = s.rate_window
        if w is not None:
            w.adjust(now, r.tick, -1, -r.tokens)
        q = s.waiters
        if q is not None and q.waiting:
            q.wake()


@dataclass(frozen=True, slots=True)
class Blocked:
    """One deployment's refusal: what kind, why (one line), and the seconds until it
    may pass (None when unknown or never)."""

    kind: BlockKind
    why: str
    wait: float | None
    budget: BudgetCounter | None = None
