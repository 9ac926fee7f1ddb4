"""Status codes and bodies from a real upstream map onto the error tree through the
real OpenAI transport; deployment errors count against the deployment, caller errors
do not and are not retried."""

from __future__ import annotations

import asyncio

import pytest

from interlock import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    InterlockError,
    InternalServerError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    Router,
    ServiceUnavailableError,
)
from interlock.testing import FakeClock, Fault
from tests.integration.loopback import MESSAGES, deployment, first_candidate, router_over, upstreams

CALLER = (BadRequestError, NotFoundError)

CASES: list[tuple[str, Fault, type[InterlockError], int | None]] = [
    ("429", Fault.rate_limit(3.0), RateLimitError, 429),
    ("401", Fault.status(401), AuthenticationError, 401),
    ("403", Fault.status(403), PermissionDeniedError, 403),
    ("400", Fault.status(400), BadRequestError, 400),
    ("422", Fault.status(422), BadRequestError, 422),
    ("context", Fault.context_window(), ContextWindowExceededError, 400),
    ("policy", Fault.content_policy(), ContentPolicyViolationError, 400),
    ("404", Fault.status(404), NotFoundError, 404),
    ("500", Fault.status(500), InternalServerError, 500),
    ("502", Fault.status(502), ServiceUnavailableError, 502),
    ("503", Fault.status(503), ServiceUnavailableError, 503),
    ("malformed", Fault.malformed(), MalformedResponseError, None),
    (
        "malformed-shape",
        Fault.malformed(b'{"id": "x", "choices": 3}'),
        MalformedResponseError,
        None,
    ),
    ("drop", Fault.drop(), APIConnectionError, None),
    ("hang", Fault.hang(), APITimeoutError, None),
]


@pytest.mark.parametrize(
    ("fault", "error", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_status_and_body_map_to_typed_errors(
    fault: Fault, error: type[InterlockError], status: int | None
) -> None:
    async with upstreams(1) as (up,):
        router = router_over(
            [up],
            clock=FakeClock(),
            retry=RetryPolicy(max_attempts=1),
            deployment={"timeout": 0.2},
        )
        async with router:
            up.push(fault)
            with pytest.raises(InterlockError) as exc:
                async with asyncio.timeout(10):
                    await router.acompletion("g", MESSAGES)
            assert type(exc.value) is error, repr(exc.value)
            assert exc.value.deployment_id == "u0"
            if status is not None:
                assert exc.value.status_code == status
            if error is RateLimitError:
                assert exc.value.retry_after == 3.0
            u0 = router.statistics().by_id("u0")
            assert u0.in_flight == 0
            counted = not issubclass(error, CALLER)
            assert u0.failures == (1 if counted else 0)
            # the router's model went upstream with the caller's messages
            body = up.received[0].body
            assert body is not None
            assert (body["model"], body["messages"]) == ("gpt-test", MESSAGES)


@pytest.mark.parametrize(
    "fault",
    [Fault.status(400), Fault.status(404), Fault.context_window(), Fault.content_policy()],
    ids=["400", "404", "context", "policy"],
)
async def test_caller_errors_are_not_retried_anywhere(fault: Fault) -> None:
    async with (
        upstreams(3) as ups,
        router_over(ups, strategy=first_candidate, clock=FakeClock()) as router,
    ):
        ups[0].push(fault)
        with pytest.raises(BadRequestError if fault.http_status == 400 else NotFoundError):
            await router.acompletion("g", MESSAGES)
        assert [u.request_count for u in ups] == [1, 0, 0]
        assert router.statistics().by_id("u0").failures == 0


@pytest.mark.parametrize(
    "fault",
    [Fault.status(500), Fault.status(503), Fault.rate_limit(1.0), Fault.drop(), Fault.malformed()],
    ids=["500", "503", "429", "drop", "malformed"],
)
async def test_deployment_errors_move_on_and_the_request_succeeds(fault: Fault) -> None:
    async with (
        upstreams(2) as ups,
        router_over(ups, strategy=first_candidate, clock=FakeClock()) as router,
    ):
        ups[0].push(fault)
        r = await router.acompletion("g", MESSAGES)
        assert r.deployment_id == "u1"
        assert r.choices[0].message.content == "Hello from FakeUpstream."
        assert [u.request_count for u in ups] == [1, 1]
        stats = router.statistics()
        assert stats.by_id("u0").failures == 1
        assert stats.in_flight == 0


async def test_refused_connection_is_a_connection_error() -> None:
    async with upstreams(2) as ups:
        await ups[0].stop()
        async with router_over(ups, strategy=first_candidate, clock=FakeClock()) as router:
            r = await router.acompletion("g", MESSAGES)
            assert r.deployment_id == "u1"
            assert router.statistics().by_id("u0").failures == 1
        await ups[1].stop()
        single = router_over(ups[1:], clock=FakeClock(), retry=RetryPolicy(max_attempts=1))
        async with single:
            with pytest.raises(APIConnectionError) as exc:
                await single.acompletion("g", MESSAGES)
            assert exc.value.deployment_id == "u1"
            assert single.statistics().in_flight == 0


async def test_wrong_key_is_an_authentication_error_and_moves_on() -> None:
    async with upstreams(2, api_key="right-key") as ups:
        router = Router(
            [deployment(ups[0], api_key="wrong-key"), deployment(ups[1], api_key="right-key")],
            strategy=first_candidate,
            clock=FakeClock(),
        )
        async with router:
            r = await router.acompletion("g", MESSAGES)
            assert r.deployment_id == "u1"
            u0 = router.statistics().by_id("u0")
            assert (u0.failures, u0.state) == (1, "cooling")
            assert ups[0].received[0].status == 401
