"""statistics() snapshots and the one-line repr."""

from __future__ import annotations

import dataclasses

import pytest

from interlock import Deployment, HealthPolicy, InternalServerError, Router
from interlock.failures import FailureKind
from interlock.records.state import Ejection
from interlock.testing import FakeClock, InstantTransport

MSG = [{"role": "user", "content": "hi"}]

# These tests are about events and metrics, not panic mode or the ejection cap
# (docs/resilience.md): with one-deployment pools those would keep a down deployment
# in rotation. Keep the plain "N failures cool it" behaviour.
CLASSIC: dict[str, float] = {"panic_threshold": 0.0, "max_ejected_share": 1.0}


def make(clock: FakeClock, transport: InstantTransport) -> Router:
    return Router(
        [
            Deployment(
                group="g",
                model="m",
                provider="instant",
                id="g-0",
                rpm=100,
                tpm=10_000,
                api_key="sk-stats-secret-0",
            ),
            Deployment(group="g", model="m", provider="instant", id="g-1", api_key="sk-stats-1"),
        ],
        transports={"instant": transport},
        clock=clock,
        seed=2,
        retry={"max_attempts": 2, "max_wait": 0},
        health=HealthPolicy(allowed_fails=1, cooldown=30.0, **CLASSIC),
    )


async def test_snapshot_is_frozen_and_reports_live_state() -> None:
    clock, transport = FakeClock(), InstantTransport()
    router = make(clock, transport)
    try:
        transport.fail("g-0", InternalServerError("boom", status_code=500), always=True)
        for _ in range(20):
            await router.acompletion("g", MSG)
            if router.statistics().by_id("g-0").failures:
                break
        stream = await router.acompletion("g", MSG, stream=True)
        async for _ in stream:
            pass
        stats = router.statistics()
        g0, g1 = stats.by_id("g-0"), stats.by_id("g-1")
        assert (g0.state, g0.failures, g0.ejections) == ("cooling", 1, 1)
        assert g0.cooldown_until == pytest.approx(clock.now() + 30.0)
        assert g0.cooldown_remaining == pytest.approx(30.0)
        assert g0.rpm_used == g0.requests  # every attempt counts against rpm
        assert g0.tpm_used == 0  # a failed attempt gives its tokens back
        assert g1.rpm_used is None  # no rpm limit configured
        assert g1.state == "healthy"
        assert g1.ttft_ewma is not None  # the stream went to g-1
        assert g1.latency_ewma is not None
        assert g0.ttft_ewma is None
        # the error that took g-0 out: class, status, kind and when; no message
        assert g0.last_ejection == Ejection(
            "InternalServerError", 500, FailureKind.SERVER_ERROR, clock.now(), clock.now() + 30
        )
        assert g1.last_ejection is None
        assert g1.spend == 0.0  # filled by the spend ledger once it tracks spend
        assert stats.in_flight == 0
        assert stats.requests == g0.requests + g1.requests
        assert stats.failures == 1
        assert stats.cooling == ("g-0",)
        assert [d.id for d in stats.by_group("g")] == ["g-0", "g-1"]
        with pytest.raises(dataclasses.FrozenInstanceError):
            g0.requests = 0  # type: ignore[misc]
        # Later activity does not change a snapshot already taken.
        await router.acompletion("g", MSG)
        assert router.statistics().by_id("g-1").requests == g1.requests + 1
        assert stats.by_id("g-1").requests == g1.requests
        with pytest.raises(KeyError, match="nope"):
            stats.by_id("nope")
    finally:
        await router.aclose()


async def test_repr_is_one_line_live_summary_without_keys() -> None:
    clock, transport = FakeClock(), InstantTransport()
    router = make(clock, transport)
    text = repr(router)
    assert "\n" not in text
    assert "requests=0 failures=0" in text
    assert "in_flight=0 cooling=0" in text
    transport.fail("g-0", InternalServerError("boom", status_code=500), always=True)
    for _ in range(20):
        await router.acompletion("g", MSG)
        if router.statistics().by_id("g-0").failures:
            break
    text = repr(router)
    assert "cooling=1" in text
    assert "failures=1" in text
    assert "sk-stats" not in text
    await router.aclose()
    assert repr(router).endswith(" closed>")


async def test_the_last_ejection_outlives_the_cooldown_and_holds_no_key() -> None:
    clock, transport = FakeClock(), InstantTransport()
    router = make(clock, transport)
    try:
        boom = InternalServerError("upstream said sk-stats-secret-0", status_code=500)
        transport.fail("g-0", boom, always=True)
        for _ in range(20):
            await router.acompletion("g", MSG)
            if router.statistics().by_id("g-0").failures:
                break
        transport.clear()
        clock.advance(31)
        g0 = router.statistics().by_id("g-0")
        assert g0.state == "half_open"
        assert g0.last_ejection is not None
        assert g0.last_ejection.describe() == "InternalServerError (500)"
        assert "sk-stats" not in repr(g0)
    finally:
        await router.aclose()
