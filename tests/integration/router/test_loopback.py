"""The Router end to end over real sockets: FakeUpstream servers on 127.0.0.1 and the
real OpenAI transport. Cooldown durations are checked on a FakeClock given to the
router; per-attempt timeouts run on the real loop clock."""

from __future__ import annotations

import asyncio
import logging
import math
import traceback
from collections import Counter

import pytest

from interlock import (
    APIConnectionError,
    APITimeoutError,
    DeadlineExceededError,
    HealthPolicy,
    InterlockError,
    NoDeploymentAvailableError,
    RateLimitError,
    RetryPolicy,
    Router,
    ServiceUnavailableError,
)
from interlock.testing import FakeClock, Fault, RetryAfterFormat
from tests.integration.loopback import (
    KEY,
    MESSAGES,
    deployment,
    eventually,
    first_candidate,
    router_over,
    upstreams,
)

START = 1000.0


async def test_requests_spread_across_deployments() -> None:
    """300 requests (10 waves of 30 concurrent) over 3 upstreams with the weighted
    strategy, seed=2024: each upstream serves 100 ± 30 (sd ~8, so ±30 is ~3.7 sd), and
    each result names the upstream that really served it."""
    async with upstreams(3) as ups, router_over(ups, seed=2024) as router:
        counts: Counter[str] = Counter()
        for _ in range(10):
            results = await asyncio.gather(*(router.acompletion("g", MESSAGES) for _ in range(30)))
            for r in results:
                counts[r.deployment_id] += 1
                assert r.id.startswith(f"chatcmpl-{r.deployment_id}-")
        assert [counts[u.name] for u in ups] == [u.request_count for u in ups]
        for u in ups:
            assert abs(counts[u.name] - 100) <= 30, counts
        assert router.statistics().in_flight == 0


async def test_failing_deployment_is_skipped_and_every_request_succeeds() -> None:
    async with upstreams(3) as ups:
        ups[0].always(Fault.status(503))
        clock = FakeClock()
        router = router_over(ups, clock=clock, health=HealthPolicy(allowed_fails=2, cooldown=30))
        async with router:
            for _ in range(40):
                r = await router.acompletion("g", MESSAGES)
                assert r.deployment_id in {"u1", "u2"}
            u0 = router.statistics().by_id("u0")
            assert u0.failures == 2  # then it was cooled and no longer tried
            assert u0.state == "cooling"
            assert u0.cooldown_until == START + 30
            assert ups[0].request_count == 2


@pytest.mark.parametrize(
    ("header", "sent", "low", "high"),
    [
        ("seconds", 2.5, 2.5, 2.5),
        ("ms", 2.5, 2.5, 2.5),
        # an HTTP-date has whole seconds and is rounded up by the server
        ("http-date", 30.0, 28.0, 31.0),
    ],
)
async def test_retry_after_cools_exactly_that_deployment_for_exactly_that_long(
    header: RetryAfterFormat, sent: float, low: float, high: float
) -> None:
    async with upstreams(2) as ups:
        clock = FakeClock()
        async with router_over(ups, clock=clock, strategy=first_candidate) as router:
            ups[0].push(Fault.rate_limit(sent, header=header))
            r = await router.acompletion("g", MESSAGES)
            assert r.deployment_id == "u1"
            stats = router.statistics()
            u0, u1 = stats.by_id("u0"), stats.by_id("u1")
            assert u1.state == "healthy"
            assert u0.state == "cooling"
            cooled = u0.cooldown_remaining
            assert low <= cooled <= high
            assert u0.cooldown_until == START + cooled

            clock.advance(cooled - 0.01)
            assert (await router.acompletion("g", MESSAGES)).deployment_id == "u1"
            assert ups[0].request_count == 1
            clock.advance(u0.cooldown_until - clock.now())  # exactly to the end
            assert (await router.acompletion("g", MESSAGES)).deployment_id == "u0"
            assert ups[0].request_count == 2


async def test_hung_upstream_is_cut_at_its_timeout_and_the_request_succeeds_elsewhere() -> None:
    async with upstreams(2) as ups:
        ups[0].always(Fault.hang())
        router = Router(
            [deployment(ups[0], timeout=0.2), deployment(ups[1])],
            strategy=first_candidate,
            clock=FakeClock(),
        )
        async with router:
            async with asyncio.timeout(10):
                r = await router.acompletion("g", MESSAGES, timeout=60)
            assert r.deployment_id == "u1"
            u0 = router.statistics().by_id("u0")
            assert (u0.failures, u0.in_flight) == (1, 0)
            assert ups[0].received[0].fault == Fault.hang()
            # the abandoned request is released on the server too
            await eventually(lambda: ups[0].in_flight == 0)


async def test_every_deployment_hung_hits_the_deadline_not_a_hang() -> None:
    """The call's deadline (0.3 s, real clock) bounds every attempt together."""
    async with upstreams(2) as ups:
        for u in ups:
            u.always(Fault.hang())
        async with router_over(ups) as router:
            with pytest.raises((DeadlineExceededError, APITimeoutError)) as exc:
                async with asyncio.timeout(10):
                    await router.acompletion("g", MESSAGES, timeout=0.3)
            assert len(exc.value.attempts) >= 1
            stats = router.statistics()
            assert stats.in_flight == 0
            # cut by the call's own deadline: says nothing about the deployments
            assert sum(d.failures for d in stats.deployments) == 0


async def test_every_deployment_down_gives_a_typed_error_fast() -> None:
    async with upstreams(3) as ups:
        for u in ups:
            u.always(Fault.rate_limit(120))
        clock = FakeClock()
        async with router_over(ups, clock=clock) as router:
            with pytest.raises(RateLimitError) as first:
                await router.acompletion("g", MESSAGES)
            assert len(first.value.attempts) == 3
            assert sorted(a.deployment_id for a in first.value.attempts) == ["u0", "u1", "u2"]
            with pytest.raises(NoDeploymentAvailableError) as exc:
                await router.acompletion("g", MESSAGES)
            assert exc.value.retry_after == 120.0
            for u in ups:
                assert f"{u.name}: cooling until " in str(exc.value)
                assert "(in 120.0 s) after RateLimitError (429)" in str(exc.value)
            assert sum(u.request_count for u in ups) == 3  # the second call sent nothing


async def test_every_deployment_refusing_connections_fails_fast() -> None:
    """Real clock: after both are tried, a short jittered backoff, then the last try."""
    async with upstreams(2) as ups:
        for u in ups:
            await u.stop()
        async with router_over(ups) as router:
            with pytest.raises(InterlockError) as exc:
                async with asyncio.timeout(10):
                    await router.acompletion("g", MESSAGES)
            assert type(exc.value) is APIConnectionError
            assert len(exc.value.attempts) == 3
            assert router.statistics().in_flight == 0


async def test_pool_exhausted_falls_back_to_the_next_group() -> None:
    async with upstreams(3) as ups:
        ups[0].always(Fault.status(500))
        ups[1].always(Fault.status(503))
        router = Router(
            [deployment(ups[0], "big"), deployment(ups[1], "big"), deployment(ups[2], "small")],
            fallbacks={"big": ["small"]},
            aliases={"best": "big"},
            clock=FakeClock(),
        )
        async with router:
            r = await router.acompletion("best", MESSAGES)
            assert (r.group, r.deployment_id) == ("small", "u2")
            assert [u.request_count for u in ups] == [1, 1, 1]


# --- in-flight after each outcome ------------------------------------------------------


async def test_in_flight_is_zero_after_success() -> None:
    async with upstreams(1) as ups, router_over(ups) as router:
        await router.acompletion("g", MESSAGES)
        assert router.statistics().by_id("u0").in_flight == 0


async def test_in_flight_is_zero_after_error() -> None:
    async with upstreams(1) as ups, router_over(ups, retry=RetryPolicy(max_attempts=1)) as router:
        ups[0].push(Fault.status(503))
        with pytest.raises(ServiceUnavailableError):
            await router.acompletion("g", MESSAGES)
        assert router.statistics().by_id("u0").in_flight == 0


async def test_in_flight_is_zero_after_timeout() -> None:
    async with upstreams(1) as ups:
        ups[0].push(Fault.hang())
        router = router_over(ups, retry=RetryPolicy(max_attempts=1), deployment={"timeout": 0.2})
        async with router:
            with pytest.raises(APITimeoutError):
                async with asyncio.timeout(10):
                    await router.acompletion("g", MESSAGES)
            assert router.statistics().by_id("u0").in_flight == 0


async def test_in_flight_is_zero_after_cancellation() -> None:
    async with upstreams(1) as ups:
        ups[0].push(Fault.hang())
        async with router_over(ups) as router:
            task = asyncio.create_task(router.acompletion("g", MESSAGES))
            await eventually(lambda: ups[0].in_flight == 1)
            assert router.statistics().by_id("u0").in_flight == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            u0 = router.statistics().by_id("u0")
            assert (u0.in_flight, u0.failures) == (0, 0)
            await eventually(lambda: ups[0].in_flight == 0)  # the connection was let go
            # and the router still works
            assert (await router.acompletion("g", MESSAGES)).deployment_id == "u0"


# --- embeddings, lifecycle -----------------------------------------------------------


async def test_embeddings_over_loopback() -> None:
    async with upstreams(2, embedding_dim=6) as ups:
        ups[0].push(Fault.status(500))
        router = Router(
            [deployment(ups[0], "embed"), deployment(ups[1], "embed")],
            strategy=first_candidate,
            clock=FakeClock(),
        )
        async with router:
            e = await router.aembedding("embed", ["alpha", "beta"])
            assert e.deployment_id == "u1"
            assert [x.index for x in e.data] == [0, 1]
            for x in e.data:
                assert len(x.embedding) == 6
                assert math.isclose(sum(v * v for v in x.embedding), 1.0, rel_tol=1e-6)
            assert e.usage is not None
            assert e.usage.prompt_tokens == 3  # ceil(5/4) + ceil(4/4)
            again = await router.aembedding("embed", "alpha", dimensions=6)
            assert again.data[0].embedding == e.data[0].embedding
            body = ups[0].received[-1].body
            assert body is not None
            assert body["input"] == "alpha"
            assert body["dimensions"] == 6


async def test_async_with_closes_the_http_session() -> None:
    async with upstreams(1) as ups:
        router = router_over(ups)
        async with router:
            await router.acompletion("g", MESSAGES)
            assert router.parts.http.is_open
        assert not router.parts.http.is_open
        assert "closed" in repr(router)


# --- the key never leaks ------------------------------------------------------------------


async def test_key_is_sent_but_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with upstreams(3, api_key=KEY) as ups:
        await ups[2].stop()  # a refused connection, too
        ups[0].always(Fault.status(500, f"internal error; your key {KEY} is fine"))
        ups[1].always(
            Fault.malformed(
                f'data: {{"error": {{"message": "key {KEY} rejected"}}}}\n\n'.encode(),
                content_type="text/event-stream",
            )
        )
        router = router_over(ups, clock=FakeClock(), retry=RetryPolicy(max_attempts=3))
        texts: list[str] = [repr(router), repr(router.deployments), repr(router.config)]
        async with router:
            for stream in (False, True):
                with pytest.raises(InterlockError) as exc:
                    await router.acompletion("g", MESSAGES, stream=stream)
                err = exc.value
                texts += [str(err), repr(err), "".join(traceback.format_exception(err))]
                texts += [repr(a) for a in err.attempts]
                clock_reset = router.statistics()
                texts.append(repr(clock_reset))
            ups[0].clear()
            r = await router.acompletion("g", MESSAGES)
            assert r.deployment_id == "u0"
            texts += [repr(r), repr(router), repr(router.statistics())]
        assert ups[0].received[-1].api_key == KEY  # the key did reach the upstream
        assert any("[redacted]" in t for t in texts)  # and was scrubbed from its echo
        texts += [rec.getMessage() for rec in caplog.records]
        texts.append(caplog.text)
        for text in texts:
            assert KEY not in text
