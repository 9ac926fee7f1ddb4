"""What the observability tests share: a hook that records every event and a small router."""

from __future__ import annotations

from collections.abc import Sequence

from interlock import (
    CooldownEvent,
    Deployment,
    FailureEvent,
    FallbackEvent,
    HealthPolicy,
    Hook,
    RecoveryEvent,
    RequestStartEvent,
    RetryEvent,
    Router,
    SuccessEvent,
)
from interlock.testing import FakeClock, InstantTransport

MSG = [{"role": "user", "content": "hi"}]

# These tests are about events and metrics, not panic mode or the ejection cap
# (docs/resilience.md): with one-deployment pools those would keep a down deployment
# in rotation. Keep the plain "N failures cool it" behaviour.
CLASSIC: dict[str, float] = {"panic_threshold": 0.0, "max_ejected_share": 1.0}


class Recorder(Hook):
    """A sync hook that keeps every event."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def on_request_start(self, event: RequestStartEvent) -> None:
        self.events.append(event)

    def on_success(self, event: SuccessEvent) -> None:
        self.events.append(event)

    def on_failure(self, event: FailureEvent) -> None:
        self.events.append(event)

    def on_retry(self, event: RetryEvent) -> None:
        self.events.append(event)

    def on_fallback(self, event: FallbackEvent) -> None:
        self.events.append(event)

    def on_cooldown(self, event: CooldownEvent) -> None:
        self.events.append(event)

    def on_recovery(self, event: RecoveryEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[object]) -> list[object]:
        return [e for e in self.events if isinstance(e, kind)]


def make_router(
    transport: InstantTransport,
    clock: FakeClock,
    hooks: Sequence[Hook] = (),
    *,
    groups: Sequence[str] = ("g",),
    per_group: int = 2,
    fallbacks: dict[str, list[str]] | None = None,
    allowed_fails: int = 1,
) -> Router:
    deployments = [
        Deployment(
            group=g,
            model="m",
            provider="fake",
            id=f"{g}-{i}",
            api_key=f"sk-test-{g}-{i}-secret",
            input_cost_per_token=1e-6,
            output_cost_per_token=3e-6,
        )
        for g in groups
        for i in range(per_group)
    ]
    return Router(
        deployments,
        transports={"fake": transport},
        clock=clock,
        seed=3,
        hooks=hooks,
        fallbacks=fallbacks,
        retry={"max_attempts": 3, "max_wait": 0},
        health=HealthPolicy(allowed_fails=allowed_fails, cooldown=30.0, **CLASSIC),
    )
