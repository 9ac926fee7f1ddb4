"""Hooks: how callbacks are found and run, and that a broken hook never hurts a request."""

from __future__ import annotations

import asyncio
import logging

import pytest

from interlock import Hook, RequestStartEvent, RetryEvent, SuccessEvent
from interlock.observability import Observer
from interlock.testing import FakeClock, InstantTransport
from tests.unit.observability.helpers import MSG, Recorder, make_router


async def test_raising_sync_hook_never_breaks_a_request(
    transport: InstantTransport, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Hook):
        def on_success(self, event: SuccessEvent) -> None:
            raise RuntimeError("hook bug")

    rec = Recorder()
    router = make_router(transport, clock, [Broken(), rec])
    try:
        with caplog.at_level(logging.WARNING, logger="interlock"):
            for _ in range(3):
                await router.acompletion("g", MSG)
        assert len(rec.of(SuccessEvent)) == 3  # the hook after the broken one still runs
        warnings = [r for r in caplog.records if r.name == "interlock.hooks"]
        assert len(warnings) == 1  # rate-limited: one line, three errors counted
        assert warnings[0].exc_info is not None
        assert warnings[0].levelno == logging.WARNING
        assert router.parts.attempts.observer.runner.errors == 3
    finally:
        await router.aclose()


async def test_async_hooks_run_off_the_hot_path_and_are_flushed_on_close(
    transport: InstantTransport, clock: FakeClock
) -> None:
    seen: list[SuccessEvent] = []

    class Async(Hook):
        async def on_success(self, event: SuccessEvent) -> None:
            await asyncio.sleep(0)
            seen.append(event)

    router = make_router(transport, clock, [Async()])
    for _ in range(5):
        await router.acompletion("g", MSG)
    # The instant transport never yields to the loop, so no hook has run yet: they
    # were queued, not called inline.
    assert seen == []
    assert router.parts.attempts.observer.runner.pending == 5
    await router.aclose()
    assert len(seen) == 5
    assert [e.attempt for e in seen] == [1] * 5


async def test_full_queue_drops_and_counts_instead_of_blocking(
    transport: InstantTransport, clock: FakeClock
) -> None:
    gate = asyncio.Event()
    delivered: list[SuccessEvent] = []

    class Stuck(Hook):
        async def on_success(self, event: SuccessEvent) -> None:
            await gate.wait()
            delivered.append(event)

    router = make_router(transport, clock)
    router.parts.attempts.observer = obs = Observer(
        clock, router.parts.states, [Stuck()], hook_queue_size=2
    )
    for _ in range(10):
        await router.acompletion("g", MSG)  # never waits for the stuck hook
    await asyncio.sleep(0)
    # The drainer holds at most one event; the queue two; the rest are dropped.
    assert obs.runner.dropped >= 7
    gate.set()
    await router.aclose()
    assert len(delivered) + obs.runner.dropped == 10


async def test_raising_async_hook_is_logged(
    transport: InstantTransport, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Bad(Hook):
        async def on_request_start(self, event: RequestStartEvent) -> None:
            raise ValueError("async hook bug")

    router = make_router(transport, clock, [Bad()])
    with caplog.at_level(logging.WARNING, logger="interlock"):
        await router.acompletion("g", MSG)
        await router.aclose()
    assert router.parts.attempts.observer.runner.errors == 1
    assert any("on_request_start" in r.getMessage() for r in caplog.records)


def test_hook_objects_only_need_the_methods_they_use() -> None:
    class OnlyRetry:
        def __init__(self) -> None:
            self.n = 0

        def on_retry(self, event: RetryEvent) -> None:
            self.n += 1

    obs = Observer(FakeClock(), (), [OnlyRetry()])
    assert obs.listening is False  # retries are not on the hot path
    assert "callbacks=1" in repr(obs)


def test_non_callable_hook_attribute_is_rejected() -> None:
    class Weird:
        on_success = 3

    with pytest.raises(TypeError, match=r"Weird\.on_success is not callable"):
        Observer(FakeClock(), (), [Weird()])
