"""Active probes: a background task that asks ejected deployments whether they are back.

Every `probe_interval` seconds, each deployment ejected for failures (never one whose
429 Retry-After or bad-key cooldown is running: probing it would be the very request
the provider asked us not to send) gets one cheap request, a one-token chat
completion. An answer ends the ejection early and counts as a half-open trial
success. Probes are reserved and settled in the ledger like any request, so
in-flight counts stay exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from interlock.clock import Clock
from interlock.config import HealthPolicy
from interlock.errors import InterlockError
from interlock.health.tracker import HealthTracker
from interlock.limits.ledger import Ledger
from interlock.records.state import OPEN
from interlock.types import Request

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState

__all__ = ["HealthProber", "Probe", "chat_probe", "deployment_probe", "embedding_probe"]

Probe = Callable[["DeploymentState", float], Awaitable[object]]
"""``probe(state, timeout)``: one cheap request; raises an InterlockError on failure."""

_PING = ({"role": "user", "content": "ping"},)


async def chat_probe(state: DeploymentState, timeout: float) -> object:
    """A one-token chat completion through the deployment's own transport."""
    request = Request(
        "chat",
        state.group,
        messages=_PING,
        params={"max_tokens": 1},
        est_input_tokens=1,
        est_output_tokens=1,
        requested=state.group,
    )
    return await state.transport.chat(state.deployment, request, timeout)


async def embedding_probe(state: DeploymentState, timeout: float) -> object:
    """The embedding of one word through the deployment's own transport."""
    request = Request(
        "embedding", state.group, input=["ping"], est_input_tokens=1, requested=state.group
    )
    return await state.transport.embed(state.deployment, request, timeout)


async def deployment_probe(state: DeploymentState, timeout: float) -> object:
    """The probe the deployment's `mode` calls for (chat or embedding)."""
    if state.deployment.mode == "embedding":
        return await embedding_probe(state, timeout)
    return await chat_probe(state, timeout)


class HealthProber:
    """Runs probes while started; `stop()` cancels and awaits everything it started."""

    __slots__ = ("_loop_task", "_probe", "_tasks", "clock", "policy", "probes", "states", "tracker")

    def __init__(
        self,
        states: Sequence[DeploymentState],
        tracker: HealthTracker,
        clock: Clock,
        policy: HealthPolicy,
        probe: Probe = deployment_probe,
    ) -> None:
        self.states = tuple(states)
        self.tracker = tracker
        self.clock = clock
        self.policy = policy
        self._probe = probe
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.probes = 0
        """Probes sent so far."""

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def start(self) -> None:
        """Start probing (a no-op when `probe_interval` is None or already running)."""
        if self.policy.probe_interval is None or self.running:
            return
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        self._loop_task = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _run(self) -> None:
        interval = self.policy.probe_interval
        assert interval is not None
        while True:
            await self.clock.sleep(interval)
            self.probe_once()

    def probe_once(self) -> int:
        """Start a probe of every deployment that is ejected for failures and not
        already being probed; returns how many were started."""
        now = self.clock.now()
        started = 0
        for s in self.states:
            c = s.circuit
            ejected = s.circuit_mode == OPEN and s.cooldown_until > now
            if ejected and c.hard_until <= now and not c.probing:
                c.probing = True
                task = asyncio.get_running_loop().create_task(self._probe_one(s))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                started += 1
        return started

    async def _probe_one(self, s: DeploymentState) -> None:
        clock = self.clock
        reservation = Ledger.reserve(s, 2, clock.now())
        self.probes += 1
        try:
            await self._probe(s, min(self.policy.probe_timeout, s.deployment.timeout))
        except InterlockError:
            Ledger.release(reservation, clock.now())
        except BaseException:
            Ledger.release(reservation, clock.now())
            raise
        else:
            now = clock.now()
            Ledger.settle(reservation, None, now)
            self.tracker.probe_success(s, now)
        finally:
            s.circuit.probing = False

    def __repr__(self) -> str:
        return f"<HealthProber running={self.running} probes={self.probes}>"
