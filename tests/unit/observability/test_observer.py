"""The Observer's per-request reports (request start, success), what it listens for, and that
its own bugs never hurt a request."""

from __future__ import annotations

import logging

import pytest

from interlock import (
    Hook,
    InternalServerError,
    PrometheusMetrics,
    RequestStartEvent,
    Router,
    SuccessEvent,
)
from interlock.observability import Observer
from interlock.testing import FakeClock, InstantTransport
from interlock.testing.instant import USAGE
from interlock.types import NO_METADATA
from tests.unit.observability.helpers import MSG, Recorder, make_router


async def test_success_event_carries_tokens_cost_and_attempt(
    recorder_router: tuple[Router, Recorder],
) -> None:
    router, rec = recorder_router
    r = await router.acompletion("g", MSG)
    start, ok = rec.events
    assert isinstance(start, RequestStartEvent)
    assert (start.group, start.requested, start.kind, start.stream) == ("g", "g", "chat", False)
    assert isinstance(ok, SuccessEvent)
    assert ok.deployment_id == r.deployment_id
    assert (ok.group, ok.attempt, ok.input_tokens, ok.output_tokens) == ("g", 1, 10, 5)
    assert ok.cost == pytest.approx(10 * 1e-6 + 5 * 3e-6)
    assert ok.cost == router.statistics().spend  # the ledger's price, exactly
    assert ok.ttft is None


async def test_stream_success_reports_ttft(recorder_router: tuple[Router, Recorder]) -> None:
    router, rec = recorder_router
    stream = await router.acompletion("g", MSG, stream=True)
    assert rec.of(SuccessEvent) == []  # a stream succeeds when it ends
    async for _ in stream:
        pass
    (ok,) = rec.of(SuccessEvent)
    assert isinstance(ok, SuccessEvent)
    assert ok.ttft is not None
    assert ok.input_tokens == 10
    assert router.statistics().by_id(ok.deployment_id).ttft_ewma == ok.ttft


async def test_nothing_configured_means_nothing_listening(
    transport: InstantTransport, clock: FakeClock
) -> None:
    router = make_router(transport, clock)
    obs = router.parts.attempts.observer
    assert obs.listening is False
    transport.fail("g-0", InternalServerError("boom", status_code=500), always=True)
    for _ in range(4):
        await router.acompletion("g", MSG)
        if router.statistics().by_id("g-0").ejections:
            break
    # A cooled deployment is watched (to log its recovery) until it recovers.
    assert obs.listening is True
    transport.clear()
    clock.advance(31.0)
    for _ in range(50):
        await router.acompletion("g", MSG)
        if obs.listening is False:
            break
    assert obs.listening is False
    await router.aclose()


async def test_one_sync_hook_is_called_directly_and_its_errors_are_swallowed(
    transport: InstantTransport, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    class Broken(Hook):
        def on_request_start(self, event: RequestStartEvent) -> None:
            calls.append("start")
            raise RuntimeError("start hook bug")

        def on_success(self, event: SuccessEvent) -> None:
            calls.append("success")
            raise RuntimeError("success hook bug")

    router = make_router(transport, clock, [Broken()])
    obs = router.parts.attempts.observer
    # The flattened path: the pipeline calls the single sync callbacks itself.
    assert obs.start_hook is not None
    assert obs.success_hook is not None
    try:
        with caplog.at_level(logging.WARNING, logger="interlock"):
            for _ in range(3):
                r = await router.acompletion("g", MSG)
                assert r.choices[0].message.content == "hi"
        assert calls == ["start", "success"] * 3
        assert obs.runner.errors == 6
        warnings = [r for r in caplog.records if r.name == "interlock.hooks"]
        assert len(warnings) == 2  # one per hook method, rate-limited
        assert {w.hook_event for w in warnings} == {"on_request_start", "on_success"}  # type: ignore[attr-defined]
        assert all(w.exc_info is not None for w in warnings)
        assert router.statistics().in_flight == 0
    finally:
        await router.aclose()


async def test_instrumentation_bug_never_breaks_a_request(
    transport: InstantTransport, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    router = make_router(transport, clock, [rec])
    # A bug in the observer's records: the comparison with a start time raises.
    router.parts.attempts.observer.cooled = dict.fromkeys(router.parts.states, "not a time")  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.ERROR, logger="interlock"):
            await router.acompletion("g", MSG)
        assert len(rec.of(SuccessEvent)) == 1
        assert any(r.getMessage().startswith("interlock observer failed in success")
                   for r in caplog.records)  # fmt: skip
    finally:
        await router.aclose()


async def test_pipeline_reports_a_success_through_the_observer(
    transport: InstantTransport, clock: FakeClock
) -> None:
    # Pipeline.succeeded reports through Observer.success: the event carries the
    # attempt's figures, priced as the ledger prices them, and metrics see it.
    rec = Recorder()
    router = make_router(transport, clock, [rec])
    metrics = PrometheusMetrics()
    router.parts.attempts.observer = obs = Observer(clock, router.parts.states, [rec], metrics)
    state = router.parts.states[0]
    try:
        for usage in (USAGE, None):
            for ttft in (None, 0.25):
                rec.events.clear()
                router.parts.attempts.success(state, 1.0, 1.5, ttft, usage, 2)
                obs.success(state, 1.0, 1.5, ttft, usage, 2)
                via_pipeline, direct = rec.of(SuccessEvent)
                tin = usage.prompt_tokens if usage else None
                tout = usage.completion_tokens if usage else None
                cost = (
                    usage.prompt_tokens * state.input_cost
                    + usage.completion_tokens * state.output_cost
                    if usage
                    else 0.0
                )
                pd = usage.prompt_tokens_details if usage else None
                cd = usage.completion_tokens_details if usage else None
                expected = SuccessEvent(
                    group=state.group,
                    deployment_id=state.id,
                    attempt=2,
                    latency=0.5,
                    ttft=ttft,
                    input_tokens=tin,
                    output_tokens=tout,
                    cached_tokens=pd.cached_tokens if pd else None,
                    reasoning_tokens=cd.reasoning_tokens if cd else None,
                    cost=cost,
                    request_id="",  # no request was given to these direct calls
                    tags=frozenset(),
                    metadata=NO_METADATA,
                    at=1.5,
                )
                assert via_pipeline == direct == expected
                assert type(via_pipeline) is SuccessEvent
        series = metrics.series[state]
        assert series.duration.counts == [0, 0, 0, 0, 0, 8] + [0] * 9
        assert series.ttft.counts[5] == 4  # 0.25 s
    finally:
        await router.aclose()
