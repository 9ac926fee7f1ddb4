"""A group's deployments and the eligibility filter in front of its strategy."""

from __future__ import annotations

from collections.abc import Container, Sequence

from interlock.health.circuit import is_available
from interlock.limits.ledger import Ledger
from interlock.router.state import DeploymentState
from interlock.strategies.base import Feedback, Strategy
from interlock.types import Request

__all__ = ["DeploymentPool"]


class DeploymentPool:
    """The deployments of one group, split into `order` tiers."""

    __slots__ = ("feedback", "group", "states", "strategy", "tiers")

    def __init__(self, group: str, states: Sequence[DeploymentState], strategy: Strategy) -> None:
        self.group = group
        self.states = tuple(states)
        self.strategy = strategy
        # Strategies that learn from outcomes (latency, errors) expose `record`.
        self.feedback: Feedback | None = getattr(strategy, "record", None)
        orders = sorted({s.order for s in self.states})
        self.tiers = tuple(tuple(s for s in self.states if s.order == o) for o in orders)
        _assign_shares(self.states)

    def eligible(
        self, request: Request, now: float, exclude: Container[DeploymentState] = ()
    ) -> list[DeploymentState]:
        """Candidates of the lowest order tier that has any: available to health (see
        `interlock.health.is_available`: not cooling, unless in panic mode), not excluded,
        with rate and concurrency headroom, carrying every tag the request asks for."""
        tokens = request.est_input_tokens + request.est_output_tokens
        tags = request.tags
        has_headroom = Ledger.has_headroom
        for tier in self.tiers:
            out = [
                s
                for s in tier
                if is_available(s, now)
                and s not in exclude
                and has_headroom(s, tokens, now)
                and (not tags or tags <= s.tags)
            ]
            if out:
                return out
        return []

    def unavailable_reasons(self, request: Request, now: float) -> tuple[list[str], float | None]:
        """Why no deployment is eligible, one line each, and the seconds until the first
        one may be (None when that is not known)."""
        tokens = request.est_input_tokens + request.est_output_tokens
        reasons: list[str] = []
        waits: list[float] = []
        for s in self.states:
            if request.tags and not request.tags <= s.tags:
                reasons.append(f"{s.id}: lacks tags {sorted(request.tags - s.tags)}")
            elif s.cooldown_until > now and not is_available(s, now):
                wait = s.cooldown_until - now
                reasons.append(f"{s.id}: cooling down for {wait:.2f} s more")
                waits.append(wait)
            elif not Ledger.has_headroom(s, tokens, now):
                why, wait_or_none = Ledger.blocked_reason(s, tokens, now)
                reasons.append(f"{s.id}: {why}")
                if wait_or_none is not None:
                    waits.append(wait_or_none)
            elif not is_available(s, now):
                reasons.append(f"{s.id}: half-open, trial request in flight")
            else:
                reasons.append(f"{s.id}: already tried")
        return reasons, (min(waits) if waits else None)

    def __repr__(self) -> str:
        return f"<DeploymentPool {self.group} deployments={len(self.states)} {self.strategy!r}>"


def _assign_shares(states: Sequence[DeploymentState]) -> None:
    """Each state's `weight` becomes its share for weighted choice: the configured
    weight when any deployment sets one, else rpm, else tpm, else 1."""
    ds = [s.deployment for s in states]
    if any(d.weight is not None for d in ds):
        shares = [d.weight if d.weight is not None else 1.0 for d in ds]
    elif any(d.rpm is not None for d in ds):
        known = [d.rpm for d in ds if d.rpm is not None]
        fill = sum(known) / len(known)
        shares = [float(d.rpm) if d.rpm is not None else fill for d in ds]
    elif any(d.tpm is not None for d in ds):
        known = [d.tpm for d in ds if d.tpm is not None]
        fill = sum(known) / len(known)
        shares = [float(d.tpm) if d.tpm is not None else fill for d in ds]
    else:
        shares = [1.0] * len(ds)
    for s, share in zip(states, shares, strict=True):
        s.weight = share
