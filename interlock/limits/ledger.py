"""The ledger: in-flight requests, RPM and TPM per deployment.

Reserve before the call, settle exactly once after it. State changes are
synchronous, so concurrent requests on one event loop can never both take the last
unit of headroom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interlock.router.state import DeploymentState

__all__ = ["Ledger", "Reservation"]


class Reservation:
    """What one attempt holds at one deployment until it is settled or released."""

    __slots__ = ("attempt", "open", "rpm_tick", "state", "tokens", "tpm_tick")

    def __init__(self, state: DeploymentState, tokens: int, rpm_tick: int, tpm_tick: int):
        self.state = state
        self.tokens = tokens
        self.rpm_tick = rpm_tick
        self.tpm_tick = tpm_tick
        self.open = True
        self.attempt = 1  # the attempt's number, set by the pipeline when observed

    def __repr__(self) -> str:
        return (
            f"<Reservation {self.state.id} tokens={self.tokens} "
            f"{'open' if self.open else 'settled'}>"
        )


class Ledger:
    """Reserve/settle accounting; every operation is O(1)."""

    __slots__ = ()

    @staticmethod
    def has_headroom(s: DeploymentState, tokens: int, now: float) -> bool:
        if s.max_concurrency is not None and s.in_flight >= s.max_concurrency:
            return False
        d = s.deployment
        if s.rpm_window is not None and d.rpm is not None and s.rpm_window.total(now) + 1 > d.rpm:
            return False
        # A single request larger than the whole TPM limit may still go to an idle
        # deployment: refusing it forever would be worse than letting the provider judge.
        if s.tpm_window is not None and d.tpm is not None:
            used = s.tpm_window.total(now)
            if used + tokens > d.tpm and used > 0:
                return False
        return True

    @staticmethod
    def blocked_reason(s: DeploymentState, tokens: int, now: float) -> tuple[str, float | None]:
        """Why `s` has no headroom and seconds until it might (None if unknown)."""
        d = s.deployment
        if s.max_concurrency is not None and s.in_flight >= s.max_concurrency:
            return f"at its concurrency cap ({s.in_flight}/{s.max_concurrency} in flight)", None
        if s.rpm_window is not None and d.rpm is not None and s.rpm_window.total(now) + 1 > d.rpm:
            return f"over its rpm limit ({d.rpm})", s.rpm_window.next_expiry(now)
        if s.tpm_window is not None and d.tpm is not None:
            return (
                f"over its tpm limit ({s.tpm_window.total(now)} + {tokens} > {d.tpm})",
                s.tpm_window.next_expiry(now),
            )
        return "has headroom", 0.0

    @staticmethod
    def reserve(s: DeploymentState, tokens: int, now: float) -> Reservation:
        s.in_flight += 1
        s.requests += 1
        rpm_tick = s.rpm_window.add(now, 1) if s.rpm_window is not None else 0
        tpm_tick = s.tpm_window.add(now, tokens) if s.tpm_window is not None else 0
        return Reservation(s, tokens, rpm_tick, tpm_tick)

    @staticmethod
    def settle(r: Reservation, actual_tokens: int | None, now: float) -> None:
        """The call succeeded; reconcile the estimate with what the provider reported."""
        if not r.open:
            return
        r.open = False
        s = r.state
        s.in_flight -= 1
        if actual_tokens is not None and s.tpm_window is not None:
            s.tpm_window.adjust(now, r.tpm_tick, actual_tokens - r.tokens)

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
        if s.tpm_window is not None:
            s.tpm_window.adjust(now, r.tpm_tick, -r.tokens)
