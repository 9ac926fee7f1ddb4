"""`Router.health_check()`: ask every deployment (of one group, or all) for a minimal
answer at once, for readiness probes and dashboards.

Each deployment gets one request through its own transport, chosen by its `mode`: a
one-token chat completion, or the embedding of one word. The strategy is bypassed
(every deployment is asked, whatever its weight or state), and so is the router's
bookkeeping: a check never cools a deployment down or brings it back, never feeds a
strategy's latency estimate, is not counted in `statistics()`, metrics or hooks, and
takes no rate-limit headroom (one tiny request per deployment; probe every 30 s or
more). A deployment whose provider asked for a pause (a 429's Retry-After) or refused
its key is not sent a request while that cooldown runs: it is reported ``skipped``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from interlock.errors import InterlockError
from interlock.health.probe import deployment_probe
from interlock.records.state import DeploymentState
from interlock.router.calls import group_of

if TYPE_CHECKING:
    from interlock.router.wiring import RouterParts

__all__ = ["DeploymentHealth", "HealthCheckMixin", "HealthReport", "check_deployments"]

HealthStatus = Literal["healthy", "unhealthy", "skipped"]


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """One deployment's answer to a health check."""

    deployment_id: str
    group: str
    provider: str
    model: str
    mode: Literal["chat", "embedding"]
    status: HealthStatus
    """``healthy`` (it answered), ``unhealthy`` (it failed; see `error`) or ``skipped``
    (not asked: it is in a Retry-After or bad-credentials cooldown)."""
    latency: float | None
    """Seconds the request took (None when skipped)."""
    error_type: str | None
    """The error's class name (``"APITimeoutError"``, ``"AuthenticationError"``, ...)."""
    error: str | None
    """The error's message, with every configured key removed."""
    status_code: int | None

    @property
    def ok(self) -> bool:
        return self.status == "healthy"

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "group": self.group,
            "provider": self.provider,
            "model": self.model,
            "mode": self.mode,
            "status": self.status,
            "latency": self.latency,
            "error_type": self.error_type,
            "error": self.error,
            "status_code": self.status_code,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The result of `Router.health_check()`: one entry per deployment, in the order of
    the configuration."""

    deployments: tuple[DeploymentHealth, ...]
    elapsed: float
    """Seconds the whole check took."""

    @property
    def healthy(self) -> bool:
        """Every deployment answered."""
        return all(d.ok for d in self.deployments)

    @property
    def ready(self) -> bool:
        """Every group checked has at least one deployment that answered: the router
        can serve each of them (what a readiness probe usually wants)."""
        return all(any(d.ok for d in ds) for ds in self.by_group().values())

    def by_group(self) -> dict[str, tuple[DeploymentHealth, ...]]:
        out: dict[str, list[DeploymentHealth]] = {}
        for d in self.deployments:
            out.setdefault(d.group, []).append(d)
        return {g: tuple(ds) for g, ds in out.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, e.g. for a readiness endpoint's body."""
        return {
            "healthy": self.healthy,
            "ready": self.ready,
            "elapsed": self.elapsed,
            "deployments": [d.to_dict() for d in self.deployments],
        }


def _entry(
    s: DeploymentState,
    status: HealthStatus,
    latency: float | None,
    error: BaseException | None = None,
    text: str | None = None,
) -> DeploymentHealth:
    d = s.deployment
    code = error.status_code if isinstance(error, InterlockError) else None
    return DeploymentHealth(
        s.id, s.group, d.provider, d.model, d.mode, status, latency,
        type(error).__name__ if error is not None else None, text, code,
    )  # fmt: skip


async def _check_one(
    s: DeploymentState, timeout: float, now: float, redact: Any
) -> DeploymentHealth:
    hard = s.circuit.hard_until - now
    if hard > 0:
        e = s.ejected_by
        cause = e.describe() if e is not None else "a cooldown"
        text = redact(f"not checked: cooling down for {hard:.3g} s after {cause}")
        d = s.deployment
        return DeploymentHealth(
            s.id, s.group, d.provider, d.model, d.mode, "skipped", None,
            e.error_type if e is not None else None, text,
            e.status_code if e is not None else None,
        )  # fmt: skip
    started = time.perf_counter()
    try:
        # A transport honours `timeout` itself; this bounds a custom one that does not.
        async with asyncio.timeout(timeout + 1.0):
            await deployment_probe(s, timeout)
    except (InterlockError, TimeoutError) as exc:
        latency = time.perf_counter() - started
        message = str(exc) if isinstance(exc, InterlockError) else f"no answer within {timeout:g} s"
        return _entry(s, "unhealthy", latency, exc, redact(message))
    except Exception as exc:  # a custom transport's bug: its class only (text may hold data)
        latency = time.perf_counter() - started
        return _entry(s, "unhealthy", latency, exc, f"unexpected {type(exc).__name__}")
    return _entry(s, "healthy", time.perf_counter() - started)


async def check_deployments(
    states: Sequence[DeploymentState], timeout: float, now: float, redact: Any
) -> HealthReport:
    """Check `states` concurrently; see the module docstring."""
    started = time.perf_counter()
    results = await asyncio.gather(*(_check_one(s, timeout, now, redact) for s in states))
    return HealthReport(tuple(results), time.perf_counter() - started)


class HealthCheckMixin:
    """`health_check()` for `Router` (a mixin so that router.py stays small)."""

    __slots__ = ()

    parts: RouterParts

    async def health_check(
        self, group: str | None = None, *, timeout: float = 10.0
    ) -> HealthReport:
        """Send a minimal request to every deployment of `group` (a group or an alias;
        all groups when None) at once, each within `timeout` seconds, and report each
        one's status, latency and error. Changes no router state (see
        docs/operations.md, "Health checks")."""
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        parts = self.parts
        states: Sequence[DeploymentState] = parts.states
        if group is not None:
            resolved = group_of(parts.names, group)
            states = [s for s in states if s.group == resolved]
        redact = parts.attempts.observer.redact
        return await check_deployments(states, float(timeout), parts.clock.now(), redact)
