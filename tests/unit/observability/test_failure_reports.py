"""The Observer's reports off the hot path: failure, retry, cooldown, recovery, fallback and
refusal events."""

from __future__ import annotations

import pytest

from interlock import (
    APIConnectionError,
    CooldownEvent,
    FailureEvent,
    FallbackEvent,
    InternalServerError,
    NoDeploymentAvailableError,
    RateLimitError,
    RecoveryEvent,
    RetryEvent,
    Router,
    SuccessEvent,
)
from interlock.testing import FakeClock, InstantTransport
from tests.unit.observability.helpers import MSG, Recorder, make_router


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
