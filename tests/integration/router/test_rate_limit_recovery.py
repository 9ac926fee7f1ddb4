"""Issue 15, point 3: rate limits are not ill health.

A deployment that answered 429 cools for its Retry-After and then takes its full
share at once; half-open trials stay for health failures. FakeUpstreams on
127.0.0.1, the public `Router` API, the default strategy, the real clock (the
Retry-After is a few hundred milliseconds, waited for in real time, so that the
strategy sees real latencies as it would in production; the upstreams answer after
1 ms, so that a loaded test machine's scheduling jitter is not most of a latency).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from itertools import pairwise

from interlock import HealthPolicy, Router
from interlock.testing import Fault
from tests.integration.loopback import MESSAGES, eventually, router_over, upstreams

RETRY_AFTER = 0.3  # seconds, sent as `retry-after-ms: 300`
CALLS = 300
TOLERANCE = 0.15
"""u0's share of the sequential calls after its Retry-After: its third, +-15 points
(binomial sd at 300 calls: 2.7 points)."""


async def _sequential(router: Router, calls: int) -> Counter[str]:
    served: Counter[str] = Counter()
    for _ in range(calls):
        r = await router.acompletion("g", MESSAGES)
        assert r.deployment_id is not None
        served[r.deployment_id] += 1
    return served


async def _concurrent(router: Router, calls: int) -> None:
    """`calls` at once, spread by `least-busy` (so that only health can keep one
    deployment to a single request at a time, not the noise of latency estimates)."""
    await asyncio.gather(
        *(router.acompletion("g", MESSAGES, strategy="least-busy") for _ in range(calls))
    )


async def test_after_its_retry_after_a_429_deployment_takes_its_full_share_at_once() -> None:
    # Before: after a 429 with `Retry-After: 2` the deployment sat in half_open and
    # received 0 of the next 60 sequential calls and 42 of the next 300 (of three
    # deployments). Router seed 2024.
    async with upstreams(3, latency=0.001) as ups:
        async with router_over(ups) as router:
            await _sequential(router, 30)
            ups[0].push(Fault.rate_limit(RETRY_AFTER, header="ms"))
            limited_at = asyncio.get_running_loop().time()
            while ups[0].pending_faults:
                await router.acompletion("g", MESSAGES)
            assert router.statistics().by_id("u0").state == "cooling"
            # Nothing reaches it before its Retry-After...
            await _sequential(router, 20)
            assert [e.status for e in ups[0].received[-1:]] == [429]
            await asyncio.sleep(RETRY_AFTER - (asyncio.get_running_loop().time() - limited_at))
            await eventually(lambda: router.statistics().by_id("u0").state != "cooling")
            # ...and afterwards it is back in rotation, not on trial: it is reached
            # within the first few calls and takes its share of them.
            assert router.statistics().by_id("u0").state == "healthy"
            first = await _sequential(router, 10)
            served = first + await _sequential(router, CALLS - 10)
            assert first["u0"] >= 1, first
            assert abs(served["u0"] / CALLS - 1 / 3) <= TOLERANCE, served
            # Under concurrency it takes several requests at once: no single trial slot.
            ups[0].reset_log()
            for up in ups:
                up.always(Fault.delay(0.02))
            await _concurrent(router, 30)
            assert router.statistics().in_flight == 0
        assert ups[0].max_in_flight >= 2


async def test_half_open_trials_stay_for_health_failures() -> None:
    # A deployment ejected for 5xx comes back through trial requests: while half-open
    # it takes one request at a time (half_open_max_trials=1), and five successful
    # trials (more than a burst of 30 lets it have) close it.
    health = HealthPolicy(
        allowed_fails=1,
        cooldown=RETRY_AFTER,
        failure_rate_threshold=None,
        half_open_successes=5,
    )
    async with upstreams(3) as ups:
        router = Router(
            [
                {"group": "g", "model": "m", "id": up.name, "api_base": up.url, "api_key": "k"}
                for up in ups
            ],
            health=health,
            seed=2024,
        )
        async with router:
            ups[0].always(Fault.status(500))
            while router.statistics().by_id("u0").state != "cooling":
                await router.acompletion("g", MESSAGES)
            ups[0].clear()
            await eventually(lambda: router.statistics().by_id("u0").state == "half_open")
            before = ups[0].request_count
            for up in ups:
                up.always(Fault.delay(0.02))
            await _concurrent(router, 30)
            during = ups[0].received[before:]
            assert during, "the half-open deployment got a trial"
            assert router.statistics().by_id("u0").state == "half_open"
            # One trial at a time: no two of its requests overlapped.
            spans = sorted((e.at, e.finished_at or e.at) for e in during)
            assert all(b[0] >= a[1] for a, b in pairwise(spans)), spans
            for up in ups:
                up.clear()
            for _ in range(100):
                if router.statistics().by_id("u0").state == "healthy":
                    break
                await router.acompletion("g", MESSAGES)
            assert router.statistics().by_id("u0").state == "healthy"
