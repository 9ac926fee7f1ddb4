"""`Router.health_check()` against real loopback upstreams: every deployment asked at
once (chat or embedding by its `mode`), typed per-deployment results, keys redacted,
and no router state changed.

Bodies: https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/embeddings/create (FakeUpstream);
https://docs.anthropic.com/en/api/messages (FakeAnthropic).
"""

from __future__ import annotations

import time

import pytest

from interlock import (
    Deployment,
    HealthPolicy,
    HealthReport,
    RateLimitError,
    RetryPolicy,
    Router,
    UnknownModelError,
)
from interlock.testing import FakeAnthropic, FakeUpstream, Fault

KEY = "sk-health-check-secret-1"


async def test_every_deployment_is_checked_concurrently_and_typed() -> None:
    async with (
        FakeUpstream(latency=0.3) as slow_ok,
        FakeUpstream(latency=0.3) as broken,
        FakeUpstream() as embed,
        FakeAnthropic() as claude,
    ):
        broken.always(Fault.status(500, f"boom for key {KEY}"))
        router = Router(
            [
                Deployment(group="chat", id="ok", model="m", api_base=slow_ok.url),
                Deployment(group="chat", id="broken", model="m", api_base=broken.url,
                           api_key=KEY),
                Deployment(group="emb", id="e", model="m", api_base=embed.url, mode="embedding"),
                Deployment(group="claude", id="c", provider="anthropic", model="claude-x",
                           api_base=claude.url, api_key="sk-ant-health-0000"),
            ],
        )  # fmt: skip
        async with router:
            started = time.perf_counter()
            report = await router.health_check(timeout=5)
            took = time.perf_counter() - started
            stats = {s.id: s for s in router.statistics().deployments}
    assert isinstance(report, HealthReport)
    # Concurrent: two 0.3 s checks did not add up.
    assert took < 0.55
    by_id = {d.deployment_id: d for d in report.deployments}
    assert [d.deployment_id for d in report.deployments] == ["ok", "broken", "e", "c"]
    assert by_id["ok"].status == "healthy"
    assert by_id["ok"].latency is not None
    assert by_id["ok"].latency >= 0.3
    assert by_id["broken"].status == "unhealthy"
    assert by_id["broken"].error_type == "InternalServerError"
    assert by_id["broken"].status_code == 500
    assert by_id["broken"].error is not None
    assert "boom" in by_id["broken"].error
    assert KEY not in str(report.to_dict())
    assert by_id["e"].ok
    assert by_id["e"].mode == "embedding"
    assert by_id["c"].ok
    assert by_id["c"].provider == "anthropic"
    assert report.ready
    assert not report.healthy
    assert set(report.by_group()) == {"chat", "emb", "claude"}
    # Minimal requests of the right kind.
    bodies = [r.body or {} for r in (slow_ok.received[-1], embed.received[-1], claude.received[-1])]
    assert bodies[0]["max_tokens"] == 1
    assert embed.received[-1].path == "/v1/embeddings"
    assert bodies[1]["input"] == ["ping"]
    assert bodies[2]["max_tokens"] == 1
    # Nothing counted: no failure, no cooldown, no request in the statistics.
    assert stats["broken"].failures == 0
    assert stats["broken"].state == "healthy"
    assert all(s.requests == 0 and s.in_flight == 0 for s in stats.values())


async def test_one_group_or_alias_and_the_timeout() -> None:
    async with FakeUpstream(latency=2.0) as hung, FakeUpstream() as fine:
        router = Router(
            [
                Deployment(group="a", id="hung", model="m", api_base=hung.url),
                Deployment(group="b", id="fine", model="m", api_base=fine.url),
            ],
            aliases={"default": "a"},
        )
        async with router:
            started = time.perf_counter()
            report = await router.health_check("default", timeout=0.2)
            assert time.perf_counter() - started < 1.0
            (only,) = report.deployments
            assert only.deployment_id == "hung"
            assert only.status == "unhealthy"
            assert only.error_type == "APITimeoutError"
            assert not report.ready
            assert [d.deployment_id for d in (await router.health_check("b")).deployments] == [
                "fine"
            ]
            with pytest.raises(UnknownModelError):
                await router.health_check("nope")
            for bad in (0, -1, float("nan"), float("inf"), True, "1"):
                with pytest.raises(ValueError, match="timeout"):
                    await router.health_check(timeout=bad)  # type: ignore[arg-type]


async def test_a_deployment_in_a_retry_after_pause_is_skipped() -> None:
    async with FakeUpstream() as limited:
        limited.push(Fault.rate_limit(30))
        router = Router(
            [Deployment(group="g", id="d", model="m", api_base=limited.url)],
            retry=RetryPolicy(max_attempts=1, max_wait=0),
            health=HealthPolicy(max_ejected_share=1.0, panic_threshold=0.0),
        )
        async with router:
            with pytest.raises(RateLimitError):
                await router.acompletion("g", [{"role": "user", "content": "hi"}])
            sent = limited.request_count
            report = await router.health_check()
        (d,) = report.deployments
        assert d.status == "skipped"
        assert d.latency is None
        assert d.error_type == "RateLimitError"
        assert d.error is not None
        assert "cooling down" in d.error
        assert limited.request_count == sent  # the provider asked for a pause: nothing sent
