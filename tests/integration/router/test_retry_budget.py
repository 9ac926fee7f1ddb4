"""Issue 15, point 2: retries that protect upstreams without failing servable calls.

Bursts of concurrent calls through the public `Router` API against FakeUpstreams on
127.0.0.1, with the default strategy and default retry and health policies, unless a
test says otherwise. Upstream calls are counted where they land, at the upstreams.
The figures are quoted in docs/resilience.md ("The retry budget").
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest
from prometheus_client import generate_latest

from interlock import InterlockError, RetryPolicy, Router
from interlock.observability import PrometheusMetrics
from interlock.testing import FakeUpstream, Fault
from tests.integration.loopback import MESSAGES, deployment, upstreams

BURST = 200


async def _burst(router: Router, calls: int) -> tuple[Counter[str], list[InterlockError]]:
    """`calls` concurrent calls: who served them ("failed" for an error), the errors."""
    served: Counter[str] = Counter()
    errors: list[InterlockError] = []

    async def one() -> None:
        try:
            r = await router.acompletion("g", MESSAGES)
        except InterlockError as exc:
            served["failed"] += 1
            errors.append(exc)
        else:
            assert r.deployment_id is not None
            served[r.deployment_id] += 1

    await asyncio.gather(*(one() for _ in range(calls)))
    return served, errors


def _router(ups: list[FakeUpstream], **options: Any) -> Router:
    return Router([deployment(up) for up in ups], seed=15, **options)


@pytest.mark.parametrize("fault", ["500", "refused"])
async def test_one_faulty_deployment_of_three_fails_no_call_of_a_burst(fault: str) -> None:
    # Before: 200 concurrent calls, u0 answering 500: 183 / 200 succeeded, 17 failed
    # with `InternalServerError ... attempts=1`, their retry refused by a budget of
    # 10 + 0.2 x 200 = 50 for about 67 first attempts that failed. Now the first
    # retry of each call goes to a healthy deployment, free: 200 / 200.
    async with upstreams(3) as ups:
        if fault == "500":
            ups[0].always(Fault.status(500))
        else:
            await ups[0].stop()  # connection refused
        async with _router(ups) as router:
            served, errors = await _burst(router, BURST)
            budget = router.parts.pipeline.retry_budget("g")
            assert router.statistics().in_flight == 0
        upstream_calls = sum(up.request_count for up in ups)
    assert served["failed"] == 0, errors[:1]
    assert sum(served.values()) == BURST
    assert budget.denied == 0
    # Every failed first attempt cost one retry, sent to u1 or u2: the 500s were
    # answered (counted at u0), refused connections never reached it.
    assert budget.free >= 1
    assert upstream_calls <= BURST + budget.free + 10


async def test_a_burst_with_a_dead_deployment_and_a_fallback_group() -> None:
    # Before: 40 concurrent calls to a group of two, one answering 503, with a
    # fallback group: 2 calls failed with the 503 (20 retries needed, 10 + 0.2 x 40 = 18
    # in the budget). Now 40 / 40.
    async with upstreams(3) as ups:
        ups[0].always(Fault.status(503))
        router = Router(
            [deployment(ups[0]), deployment(ups[1]), deployment(ups[2], group="fb")],
            fallbacks={"g": ["fb"]},
            seed=15,
        )
        async with router:
            served, errors = await _burst(router, 40)
    assert served["failed"] == 0, errors[:1]
    assert served["u0"] == 0


async def test_with_every_deployment_failing_upstream_calls_stay_within_the_bound() -> None:
    # A burst of 200 against three deployments that all answer 500: the budget's bound
    # (1 + 0.2) x 200 + 10 = 250 upstream calls holds. Free retries go only to a
    # deployment with no failure counted since its latest success; they count against
    # the budget, so at the start of an outage they use up the floor, not more.
    async with upstreams(3) as ups:
        for up in ups:
            up.always(Fault.status(500))
        async with _router(ups) as router:
            served, errors = await _burst(router, BURST)
            budget = router.parts.pipeline.retry_budget("g")
        upstream_calls = sum(up.request_count for up in ups)
    assert served["failed"] == BURST
    assert BURST < upstream_calls <= 1.2 * BURST + 10
    # Each call whose retry was refused says so (one refusal per call at most).
    assert budget.denied > 0
    assert sum("refused by the retry budget" in str(e) for e in errors) == budget.denied


async def test_a_refused_retry_is_said_in_the_error_a_warning_and_a_metric(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A budget that pays for nothing (ratio 0, floor 0), three failing deployments and
    # five sequential calls: a retry is free only to a deployment nothing is known
    # against yet (at most two of them), every other retry is refused.
    metrics = PrometheusMetrics()
    async with upstreams(3) as ups:
        for up in ups:
            up.always(Fault.status(500))
        router = _router(ups, retry=RetryPolicy(budget_ratio=0.0, budget_floor=0), metrics=metrics)
        async with router:
            with caplog.at_level(logging.WARNING, logger="interlock.router"):
                errors = []
                for _ in range(5):
                    with pytest.raises(InterlockError) as info:
                        await router.acompletion("g", MESSAGES)
                    errors.append(info.value)
        upstream_calls = sum(up.request_count for up in ups)
    assert len(errors) == 5
    refused = [e for e in errors if "refused by the retry budget" in str(e)]
    assert len(refused) == 5
    for e in refused:
        last = e.attempts[-1]
        assert last.duration == 0.0
        assert last.error.startswith("a retry was refused by the retry budget of group 'g'")
        assert "calls allow 0)" in str(e)
    lines = [r for r in caplog.records if getattr(r, "event", None) == "retry_refused"]
    assert len(lines) == 5
    assert all(r.levelno == logging.WARNING for r in lines)
    text = generate_latest(metrics.registry).decode()
    assert 'interlock_retries_refused_total{group="g"} 5.0' in text
    assert upstream_calls <= 5 + 2  # first attempts, and at most one free retry each
