"""Status codes and bodies from a real upstream map onto the error tree through the
real OpenAI transport; deployment errors count against the deployment, caller errors
do not and are not retried.

Error bodies follow https://platform.openai.com/docs/guides/error-codes (and, for the
provider wordings, the pages cited in tests/unit/providers/bodies.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest
from aiohttp import web

from interlock import (
    AccountError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    Deployment,
    DeploymentNotFoundError,
    HealthPolicy,
    InterlockError,
    InternalServerError,
    MalformedResponseError,
    NoDeploymentAvailableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    Router,
    ServiceUnavailableError,
)
from interlock.failures import FailureKind
from interlock.limits.diagnose import clock_time
from interlock.testing import FakeAnthropic, FakeAzure, FakeClock, Fault
from tests.integration.loopback import (
    KEY,
    MESSAGES,
    deployment,
    first_candidate,
    router_over,
    upstreams,
)

CALLER = (BadRequestError, NotFoundError)
UNUSABLE = (AccountError, DeploymentNotFoundError)

CASES: list[tuple[str, Fault, type[InterlockError], int | None]] = [
    ("429", Fault.rate_limit(3.0), RateLimitError, 429),
    ("401", Fault.status(401), AuthenticationError, 401),
    ("403", Fault.status(403), PermissionDeniedError, 403),
    ("400", Fault.status(400), BadRequestError, 400),
    ("422", Fault.status(422), BadRequestError, 422),
    ("context", Fault.context_window(), ContextWindowExceededError, 400),
    ("policy", Fault.content_policy(), ContentPolicyViolationError, 400),
    ("404", Fault.status(404), DeploymentNotFoundError, 404),
    # OpenAI's 404 for an object of the caller's that does not exist (Files API wording)
    ("404-caller", Fault.status(404, "No such File object: file-abc123"), NotFoundError, 404),
    ("402", Fault.status(402, "Payment Required"), AccountError, 402),
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
            counted = not issubclass(error, CALLER) or issubclass(error, UNUSABLE)
            assert u0.failures == (1 if counted else 0)
            # the router's model went upstream with the caller's messages
            body = up.received[0].body
            assert body is not None
            assert (body["model"], body["messages"]) == ("gpt-test", MESSAGES)


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(400),
        Fault.status(404, "No such File object: file-abc123"),
        Fault.context_window(),
        Fault.content_policy(),
    ],
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


# --- deployment-scoped 4xx (issue 15, point 4) ---------------------------------------

CALLS = 40

# Anthropic's answer for an account without credit (the Messages API returns it as a
# 400 invalid_request_error; wording as the API sends it, see docs/resilience.md).
CREDIT_TOO_LOW = (
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
    "Billing to upgrade or purchase credits."
)


def _deployment(provider: str, id: str, model: str, url: str) -> Deployment:
    return Deployment(group="g", provider=provider, model=model, id=id, api_base=url, api_key=KEY)


async def _run_calls(router: Router, n: int) -> list[InterlockError | None]:
    """`n` sequential calls; each one's error, or None when it succeeded."""
    outcomes: list[InterlockError | None] = []
    for _ in range(n):
        try:
            await router.acompletion("g", MESSAGES)
        except InterlockError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
    return outcomes


async def test_a_misnamed_azure_deployment_is_routed_around(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="interlock")
    async with FakeAzure(deployments=frozenset({"gpt4o-east"})) as up:
        # the second deployment's name is misspelt
        names = ("gpt4o-east", "gpt4o-esat")
        router = Router(
            [_deployment("azure", name, name, up.url) for name in names], clock=FakeClock(), seed=7
        )
        async with router:
            outcomes = await _run_calls(router, CALLS)
            failed = [e for e in outcomes if e is not None]
            assert not failed, f"{len(failed)}/{CALLS} failed: {failed[0]!r}"
            stats = router.statistics()
            bad = stats.by_id("gpt4o-esat")
            assert bad.requests == 1  # tried once, then out of rotation
            assert (bad.state, bad.failures, bad.ejections) == ("cooling", 1, 1)
            assert bad.last_ejection is not None
            assert (bad.last_ejection.error_type, bad.last_ejection.status_code) == (
                "DeploymentNotFoundError",
                404,
            )
            assert bad.last_ejection.kind is FailureKind.UNUSABLE
            assert stats.by_id("gpt4o-east").successes == CALLS
            assert stats.in_flight == 0
    cooldowns = [r for r in caplog.records if getattr(r, "event", None) == "cooldown"]
    assert [(r.deployment, r.error_type, r.status_code) for r in cooldowns] == [  # type: ignore[attr-defined]
        ("gpt4o-esat", "DeploymentNotFoundError", 404)
    ]
    assert "DeploymentNotFound" in cooldowns[0].getMessage()


async def test_an_anthropic_account_without_credit_is_routed_around() -> None:
    async with FakeAnthropic(name="poor") as poor, FakeAnthropic(name="rich") as rich:
        poor.always(Fault.status(400, CREDIT_TOO_LOW))
        router = Router(
            [_deployment("anthropic", up.name, "claude-x", up.url) for up in (poor, rich)],
            clock=FakeClock(),
            seed=7,
        )
        async with router:
            outcomes = await _run_calls(router, CALLS)
            failed = [e for e in outcomes if e is not None]
            assert not failed, f"{len(failed)}/{CALLS} failed: {failed[0]!r}"
            assert poor.request_count == 1
            s = router.statistics().by_id("poor")
            assert (s.state, s.failures) == ("cooling", 1)
            assert s.last_ejection is not None
            assert (s.last_ejection.error_type, s.last_ejection.status_code) == (
                "AccountError",
                400,
            )


# Caller errors: OpenAI's wording for an out-of-range parameter and an invalid
# structured-output schema (Chat Completions API, 400 invalid_request_error), and a
# 422 as OpenAI-compatible servers built on FastAPI send it.
CALLER_FAULTS = [
    Fault.status(
        400,
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but "
        "got 3 instead.",
        error_code="decimal_above_max_value",
    ),
    Fault.status(
        400,
        "Invalid schema for response_format 'answer': In context=(), 'additionalProperties' "
        "is required to be supplied and to be false.",
        error_code="invalid_json_schema",
    ),
    Fault.status(422, "Unprocessable Entity"),
]


@pytest.mark.parametrize("fault", CALLER_FAULTS, ids=["param", "schema", "422"])
async def test_a_request_error_is_raised_at_once_with_one_upstream_call(fault: Fault) -> None:
    async with upstreams(3) as ups, router_over(ups, clock=FakeClock()) as router:
        for up in ups:
            up.push(fault)
        with pytest.raises(BadRequestError) as exc:
            await router.acompletion("g", MESSAGES)
        assert type(exc.value) is BadRequestError
        assert sum(u.request_count for u in ups) == 1
        assert router.statistics().failures == 0


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.status(401), AuthenticationError),
        (Fault.status(403), PermissionDeniedError),
        (Fault.status(402, "Payment Required"), AccountError),
        (Fault.status(404), DeploymentNotFoundError),
    ],
    ids=["401", "403", "402", "404"],
)
async def test_a_deployment_scoped_4xx_moves_on_and_takes_the_deployment_out(
    fault: Fault, error: type[InterlockError]
) -> None:
    async with (
        upstreams(2) as ups,
        router_over(ups, strategy=first_candidate, clock=FakeClock()) as router,
    ):
        ups[0].always(fault)
        for _ in range(5):
            r = await router.acompletion("g", MESSAGES)
            assert r.deployment_id == "u1"
        assert [u.request_count for u in ups] == [1, 5]
        u0 = router.statistics().by_id("u0")
        assert (u0.state, u0.failures) == ("cooling", 1)
        assert u0.last_ejection is not None
        assert u0.last_ejection.error_type == error.__name__


# --- context-window wording (issue 15, point 5) ---------------------------------------

# Anthropic's current wording (Messages API, 400 invalid_request_error).
ANTHROPIC_OVER_LIMIT = (
    "input length and `max_tokens` exceed context limit: 197626 + 8192 > 200000, decrease "
    "input length or `max_tokens` and try again"
)
# sglang's OpenAI server (srt/managers/tokenizer_manager.py), in its ErrorResponse shape.
SGLANG_OVER_LIMIT = orjson.dumps(
    {
        "object": "error",
        "message": "The input (43028 tokens) is longer than the model's context length "
        "(40960 tokens).",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
)


@asynccontextmanager
async def answering(status: int, body: bytes) -> AsyncIterator[str]:
    """A server on loopback answering every chat completion with `status` and `body`
    (the exact bytes a server sends); yields its ``/v1`` URL."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}/v1"
    finally:
        await runner.cleanup()


async def test_current_context_window_wording_takes_the_context_window_fallbacks() -> None:
    async with (
        FakeAnthropic(name="claude") as claude,
        answering(400, SGLANG_OVER_LIMIT) as sglang_url,
        upstreams(1) as (big,),
    ):
        claude.always(Fault.status(400, ANTHROPIC_OVER_LIMIT))
        sglang = Deployment(
            group="qwen", model="qwen-32b", id="sglang", api_base=sglang_url, api_key=KEY
        )
        router = Router(
            [
                Deployment(
                    group="claude",
                    provider="anthropic",
                    model="claude-x",
                    id="claude",
                    api_base=claude.url,
                    api_key=KEY,
                ),
                sglang,
                deployment(big, group="big"),
            ],
            context_window_fallbacks={"claude": ["big"], "qwen": ["big"]},
            clock=FakeClock(),
        )
        async with router:
            for group in ("claude", "qwen"):
                r = await router.acompletion(group, MESSAGES)
                assert r.deployment_id == "u0", group
            stats = router.statistics()
            assert (stats.by_id("claude").requests, stats.by_id("sglang").requests) == (1, 1)
            assert stats.failures == 0  # the prompt's size is no fault of theirs
        # without a bigger model to go to, the caller gets the typed error
        alone = Router([sglang], clock=FakeClock())
        async with alone:
            with pytest.raises(ContextWindowExceededError) as exc:
                await alone.acompletion("qwen", MESSAGES)
            assert exc.value.deployment_id == "sglang"


# --- errors that say why (issue 15, point 6) -------------------------------------------


async def test_after_a_401_the_next_call_says_which_error_when_and_until_when() -> None:
    clock = FakeClock()
    async with upstreams(1) as (up,):
        up.always(Fault.status(401))
        router = Router(
            [Deployment(group="g", model="gpt-test", id="d1", api_base=up.url, api_key=KEY)],
            clock=clock,
            health=HealthPolicy(auth_cooldown=60.0),
        )
        async with router:
            with pytest.raises(AuthenticationError):
                await router.acompletion("g", MESSAGES)
            clock.advance(20.0)
            before = time.time()
            with pytest.raises(NoDeploymentAvailableError) as exc:
                await router.acompletion("g", MESSAGES)
            after = time.time()
    assert up.request_count == 1
    text = exc.value.message
    found = re.fullmatch(
        r"no deployment can serve 'g': group 'g': d1: cooling until (\S+) UTC \(in 40\.0 s\) "
        r"after AuthenticationError \(401\) at (\S+) UTC; the first may be usable at \1 UTC "
        r"\(in 40\.0 s\)",
        text,
    )
    assert found is not None, text
    # wall-clock times: the message's moment plus the seconds left on the router's clock
    assert found.group(1) in {clock_time(t)[:8] for t in (before + 40, after + 40)}
    assert found.group(2) in {clock_time(t)[:8] for t in (before - 20, after - 20)}
    assert exc.value.retry_after == 40.0
