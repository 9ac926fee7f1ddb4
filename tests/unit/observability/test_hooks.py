"""Hooks: which events arrive, with what, and that a broken hook never hurts a request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import pytest

from interlock import (
    APIConnectionError,
    CooldownEvent,
    Deployment,
    FailureEvent,
    FallbackEvent,
    HealthPolicy,
    Hook,
    InternalServerError,
    NoDeploymentAvailableError,
    PrometheusMetrics,
    RateLimitError,
    RecoveryEvent,
    RequestStartEvent,
    RetryEvent,
    Router,
    SuccessEvent,
)
from interlock.observability import Observer
from interlock.testing import FakeClock, InstantTransport
from interlock.testing.instant import USAGE
from interlock.types import NO_METADATA

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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport() -> InstantTransport:
    return InstantTransport()


@pytest.fixture
async def recorder_router(
    transport: InstantTransport, clock: FakeClock
) -> AsyncIterator[tuple[Router, Recorder]]:
    rec = Recorder()
    router = make_router(transport, clock, [rec])
    yield router, rec
    await router.aclose()


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


async def test_failure_retry_and_cooldown_events(
    recorder_router: tuple[Router, Recorder], transport: InstantTransport
) -> None:
    router, rec = recorder_router
    transport.fail("g-0", RateLimitError("slow down", deployment_id="g-0", retry_after=7.0))
    transport.fail("g-1", RateLimitError("slow down", deployment_id="g-1", retry_after=7.0))
    # Whichever deployment goes first fails; the retry goes to the other, which fails
    # too; the third attempt finds both cooling and the group has no fallback.
    with pytest.raises(RateLimitError):
        await router.acompletion("g", MSG)
    failures = rec.of(FailureEvent)
    assert [f.attempt for f in failures] == [1, 2]  # type: ignore[attr-defined]
    f1 = failures[0]
    assert isinstance(f1, FailureEvent)
    assert (f1.kind, f1.counted, f1.cooldown, f1.status_code) == ("rate_limited", True, 7.0, 429)
    assert f1.error_type == "RateLimitError"
    (retry,) = rec.of(RetryEvent)
    assert isinstance(retry, RetryEvent)
    assert retry.attempt == 2
    assert retry.deployment_id != f1.deployment_id
    assert retry.error is f1.error
    cooldowns = rec.of(CooldownEvent)
    assert sorted(c.deployment_id for c in cooldowns) == ["g-0", "g-1"]  # type: ignore[attr-defined]
    c0 = cooldowns[0]
    assert isinstance(c0, CooldownEvent)
    assert (c0.seconds, c0.ejections) == (7.0, 1)
    assert c0.until == pytest.approx(c0.at + 7.0)


async def test_caller_errors_are_not_counted(
    recorder_router: tuple[Router, Recorder], transport: InstantTransport
) -> None:
    from interlock import BadRequestError

    router, rec = recorder_router
    transport.fail("g-0", BadRequestError("bad", status_code=400), always=True)
    transport.fail("g-1", BadRequestError("bad", status_code=400), always=True)
    with pytest.raises(BadRequestError):
        await router.acompletion("g", MSG)
    (f,) = rec.of(FailureEvent)
    assert isinstance(f, FailureEvent)
    assert (f.kind, f.counted, f.cooldown) == ("caller", False, 0.0)
    assert rec.of(RetryEvent) == []


async def test_recovery_after_cooldown(
    recorder_router: tuple[Router, Recorder], transport: InstantTransport, clock: FakeClock
) -> None:
    router, rec = recorder_router
    transport.fail("g-0", InternalServerError("boom", status_code=500), always=True)
    for _ in range(4):  # until g-0 has been tried and cooled
        await router.acompletion("g", MSG)
        if rec.of(CooldownEvent):
            break
    (cool,) = rec.of(CooldownEvent)
    assert isinstance(cool, CooldownEvent)
    assert cool.deployment_id == "g-0"
    assert rec.of(RecoveryEvent) == []
    transport.clear()
    clock.advance(31.0)
    for _ in range(50):  # until the strategy picks g-0 again (weighted random, seeded)
        await router.acompletion("g", MSG)
        if rec.of(RecoveryEvent):
            break
    (rec_ev,) = rec.of(RecoveryEvent)
    assert isinstance(rec_ev, RecoveryEvent)
    assert rec_ev.deployment_id == "g-0"
    assert rec_ev.down_for == pytest.approx(31.0)
    # Once nothing waits for recovery the hot path goes quiet again (hooks still on).
    assert router.parts.attempts.observer.listening is True


async def test_fallback_and_refusal_events(transport: InstantTransport, clock: FakeClock) -> None:
    rec = Recorder()
    router = make_router(
        transport, clock, [rec], groups=("a", "b"), per_group=1, fallbacks={"a": ["b"]}
    )
    try:
        transport.fail("a-0", APIConnectionError("refused"), always=True)
        r = await router.acompletion("a", MSG)
        assert r.deployment_id == "b-0"
        (fb,) = rec.of(FallbackEvent)
        assert isinstance(fb, FallbackEvent)
        assert (fb.group, fb.to_group, fb.attempt) == ("a", "b", 1)
        assert isinstance(fb.error, APIConnectionError)
        (ok,) = rec.of(SuccessEvent)
        assert isinstance(ok, SuccessEvent)
        assert ok.attempt == 2
        # Now a-0 is cooling; b-0 fails too and cools: nothing is left.
        transport.fail("b-0", APIConnectionError("refused"), always=True)
        rec.events.clear()
        with pytest.raises(APIConnectionError):
            await router.acompletion("a", MSG)
        rec.events.clear()
        with pytest.raises(NoDeploymentAvailableError):
            await router.acompletion("a", MSG)
        refused = [e for e in rec.of(FailureEvent) if e.deployment_id is None]  # type: ignore[attr-defined]
        (ref,) = refused
        assert isinstance(ref, FailureEvent)
        assert (ref.group, ref.kind, ref.counted) == ("a", "refused", False)
        assert isinstance(ref.error, NoDeploymentAvailableError)
    finally:
        await router.aclose()


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
