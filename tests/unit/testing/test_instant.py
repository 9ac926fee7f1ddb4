"""The public in-memory transport: counting, its log, and its two ways to suspend."""

from __future__ import annotations

import asyncio

import pytest

from interlock import Deployment, Router
from interlock.testing import InstantTransport
from interlock.types import Request

MESSAGES = [{"role": "user", "content": "hi"}]


def _router(transport: InstantTransport) -> Router:
    return Router(
        [Deployment(group="g", model="m", provider="instant", id=f"g-{i}") for i in range(2)],
        transports={"instant": transport},
        seed=1,
    )


async def test_counts_attempts_and_logs_only_when_asked() -> None:
    logged, silent = InstantTransport(), InstantTransport(log=False)
    for t in (logged, silent):
        async with _router(t) as router:
            for _ in range(3):
                await router.acompletion("g", MESSAGES)
    assert logged.attempts == silent.attempts == 3
    assert len(logged.calls or ()) == 3
    assert set(logged.calls or ()) <= {"g-0", "g-1"}
    assert silent.calls is None


def test_never_suspends_by_default_and_yields_once_when_asked() -> None:
    deployment = Deployment(group="g", model="m", provider="instant", id="g-0")
    req = Request("chat", "g", MESSAGES)
    plain = InstantTransport().chat(deployment, req, 1.0)
    with pytest.raises(StopIteration) as done:
        plain.send(None)  # answered without suspending
    assert done.value.value.deployment_id == "g-0"
    yielding = InstantTransport(yield_every_call=True).chat(deployment, req, 1.0)
    yielding.send(None)  # suspends once...
    with pytest.raises(StopIteration):
        yielding.send(None)  # ...then finishes


async def test_gate_holds_requests_in_flight_until_set() -> None:
    gate = asyncio.Event()
    transport = InstantTransport(log=False, gate=gate)
    async with _router(transport) as router:
        tasks = [asyncio.create_task(router.acompletion("g", MESSAGES)) for _ in range(5)]
        for _ in range(100):  # bounded: each task reaches the gate within a few passes
            if transport.attempts == 5:
                break
            await asyncio.sleep(0)
        assert transport.attempts == 5
        assert router.statistics().in_flight == 5
        assert not any(t.done() for t in tasks)
        gate.set()
        await asyncio.gather(*tasks)
        assert router.statistics().in_flight == 0
