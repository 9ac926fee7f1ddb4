"""Faults and bad input end to end (issue 15, point 8): each fault staged by a loopback
server speaking the provider's wire format, each seen through a real Router."""

from __future__ import annotations

from typing import Any

import pytest

from interlock import (
    ChatCompletionChunk,
    ConfigError,
    DeadlineExceededError,
    Deployment,
    MalformedResponseError,
    RetryPolicy,
    Router,
)
from interlock.testing import FakeClock, Fault
from tests.integration.loopback import (
    KEY,
    MESSAGES,
    assert_clean,
    drain_into,
    first_candidate,
    router_over,
    upstreams,
)
from tests.integration.rawhttp import chat_body

ONE_TRY = RetryPolicy(max_attempts=1, max_wait=0)


# --- a stream that stalls after its first chunk ------------------------------------


async def test_a_stream_stalled_after_its_first_chunk_ends_at_the_calls_deadline() -> None:
    """The deployment allows 60 s between chunks; the call has 0.3 s. The upstream
    sends its first chunk and then nothing for a minute: the call's deadline ends the
    stream, and the stall is not held against the deployment (as for any attempt cut
    by the call's own deadline). No timing is asserted: without the fix the read
    outlives drain_into's 10 s guard and the test fails."""
    async with (
        upstreams(1, chunk_interval=60.0) as ups,
        router_over(ups, timeout=0.3) as router,
    ):
        stream = await router.acompletion("g", MESSAGES, stream=True)
        got: list[ChatCompletionChunk] = []
        with pytest.raises(DeadlineExceededError) as exc:
            await drain_into(stream, got)
        assert len(got) == 1
        assert exc.value.deployment_id == "u0"
        u0 = router.statistics().by_id("u0")
        assert (u0.in_flight, u0.failures, u0.successes, u0.state) == (0, 0, 0, "healthy")


# --- bad numbers from an upstream ------------------------------------------------------


def completion_with(usage: Any) -> bytes:
    return chat_body("hi", usage=usage)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "10", "completion_tokens": "5", "total_tokens": "15"},
        {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": "15"},
        {"prompt_tokens": -1000, "completion_tokens": -24_000, "total_tokens": -25_000},
        {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": -1},
        {"prompt_tokens": 1.5, "completion_tokens": 5},
        {"prompt_tokens": True, "completion_tokens": 5},
    ],
    ids=["strings", "string-total", "negative", "negative-total", "float", "bool"],
)
async def test_bad_usage_numbers_are_malformed_and_leave_accounting_untouched(
    usage: dict[str, Any],
) -> None:
    cost = {"input_cost_per_token": 0.01, "output_cost_per_token": 0.01, "tpm": 100_000}
    async with upstreams(2) as ups:
        ups[0].push(Fault.malformed(completion_with(usage)))
        async with router_over(
            ups, strategy=first_candidate, deployment=cost, clock=FakeClock()
        ) as router:
            r = await router.acompletion("g", MESSAGES)
            assert r.deployment_id == "u1"
            u0 = router.statistics().by_id("u0")
            assert (u0.failures, u0.in_flight, u0.spend, u0.tpm_used) == (1, 0, 0.0, 0)
            assert (u0.input_tokens, u0.output_tokens) == (0, 0)
            assert router.statistics().by_id("u1").spend > 0


async def test_an_sse_line_longer_than_the_read_limit_is_a_typed_error() -> None:
    reply = "x" * 600_000  # one SSE data line of ~600 KB, past the 512 KiB limit
    async with (
        upstreams(1, reply=reply, stream_chunks=1) as ups,
        router_over(ups, retry=ONE_TRY) as router,
    ):
        stream = await router.acompletion("g", MESSAGES, stream=True)
        with pytest.raises(MalformedResponseError) as exc:
            await drain_into(stream, [])
        assert exc.value.deployment_id == "u0"
        assert_clean(exc.value, "x" * 100)
        u0 = router.statistics().by_id("u0")
        assert (u0.in_flight, u0.failures) == (0, 1)


# --- the upstream's body on the exception chain ----------------------------------------


ECHO = b'{"id": "chatcmpl-1", "echo": "Bearer ' + KEY.encode() + b'", "choices": [{'


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_malformed_body_leaves_nothing_of_itself_on_the_exception_chain(
    stream: bool,
) -> None:
    async with upstreams(1) as ups:
        body = b"data: " + ECHO + b"\n\n" if stream else ECHO
        ctype = "text/event-stream" if stream else "application/json"
        ups[0].push(Fault.malformed(body, content_type=ctype))
        async with router_over(ups, retry=ONE_TRY) as router:
            call = (
                router.acompletion("g", MESSAGES, stream=True)
                if stream
                else router.acompletion("g", MESSAGES)
            )
            with pytest.raises(MalformedResponseError) as exc:
                await call
            assert_clean(exc.value, KEY, "chatcmpl-1")


# --- configuration that is wrong in shape ----------------------------------------------


async def test_an_infinite_timeout_is_refused_when_the_router_is_built() -> None:
    """It used to be accepted, and then every call failed with a bare ValueError."""
    async with upstreams(1) as ups:
        with pytest.raises(ConfigError) as exc:
            router_over(ups, timeout=float("inf"))
        assert exc.value.problems == ("timeout: input should be a finite number",)
        async with router_over(ups, timeout=5) as router:
            with pytest.raises(ValueError, match="finite"):
                await router.acompletion("g", MESSAGES, timeout=float("inf"))
            assert (await router.acompletion("g", MESSAGES)).deployment_id == "u0"


@pytest.mark.parametrize(
    "settings",
    [
        {"fallbacks": [{}]},
        {"fallbacks": {"g": None}},
        {"budgets": 5},
    ],
    ids=["fallbacks-list", "fallbacks-none", "budgets-int"],
)
async def test_config_of_the_wrong_shape_is_a_config_error(settings: dict[str, Any]) -> None:
    async with upstreams(1) as ups:
        with pytest.raises(ConfigError):
            router_over(ups, **settings)
        doc: dict[Any, Any] = {"deployments": [{"group": "g", "model": "m"}], 1: "x"}
        with pytest.raises(ConfigError):
            Router.from_config(doc)


@pytest.mark.parametrize("cycle", [False, True], ids=["chain", "cycle"])
async def test_a_thousand_group_fallback_chain_is_built_or_refused_without_recursion(
    cycle: bool,
) -> None:
    n = 1000
    async with upstreams(1) as ups:
        url = ups[0].url
        ds = [Deployment(group=f"g{i}", model="m", id=f"d{i}", api_base=url) for i in range(n)]
        chains = {f"g{i}": [f"g{i + 1}"] for i in range(n - 1)}
        if cycle:
            chains[f"g{n - 1}"] = ["g0"]
            with pytest.raises(ConfigError) as exc:
                Router(ds, fallbacks=chains, max_fallback_depth=n)
            assert exc.value.problems[0].startswith("fallbacks: cycle g0 -> g1 -> g2")
            assert exc.value.problems[0].endswith(f"g{n - 1} -> g0")
            return
        async with Router(ds, fallbacks=chains, max_fallback_depth=n, seed=1) as router:
            assert router.fallback_chain("g0") == tuple(f"g{i}" for i in range(n))
            assert router.fallback_chain("g998") == ("g998", "g999")
            r = await router.acompletion("g0", MESSAGES)
            assert r.deployment_id == "d0"
