"""Faults and bad input end to end (issue 15, point 8): each fault staged by a loopback
server speaking the provider's wire format, each seen through a real Router.

Bodies follow https://platform.openai.com/docs/api-reference/chat/object (SSE:
https://platform.openai.com/docs/api-reference/chat-streaming), bent where the fault needs it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from interlock import (
    APIConnectionError,
    ChatCompletionChunk,
    ChatStream,
    ConfigError,
    DeadlineExceededError,
    Deployment,
    MalformedResponseError,
    RetryPolicy,
    Router,
    StreamInterruptedError,
)
from interlock.testing import FakeClock, FakeUpstream, Fault
from tests.integration.loopback import (
    KEY,
    MESSAGES,
    assert_clean,
    deployment,
    drain_into,
    first_candidate,
    router_over,
    upstreams,
)
from tests.integration.rawhttp import Conn, chat_body, raw_server, sse_body

ONE_TRY = RetryPolicy(max_attempts=1, max_wait=0)


# --- a stale keep-alive connection ---------------------------------------------------


def keepalive_then(action: str) -> Any:
    """Answer each connection's first request, then close (FIN) or reset (RST) it when
    the client sends another one on it: a pooled connection the server has just
    closed, as the client reuses it."""

    async def script(conn: Conn) -> None:
        while (body := await conn.request()) is not None:
            if conn.requests > 1:
                conn.close() if action == "close" else conn.reset()
                return
            stream = orjson.loads(body).get("stream") is True
            if stream:
                await conn.send(sse_body("hi"), content_type="text/event-stream")
            else:
                await conn.send(chat_body("hi"))

    return script


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("action", ["close", "reset"])
async def test_a_stale_keep_alive_connection_is_retried_once_on_a_fresh_one(
    action: str, stream: bool
) -> None:
    async with raw_server(keepalive_then(action)) as server:
        d = Deployment(group="g", model="m", id="u0", api_base=server.url, api_key=KEY)
        async with Router([d], seed=1) as router:
            for _ in range(4):
                if stream:
                    s = await router.acompletion("g", MESSAGES, stream=True)
                    got: list[ChatCompletionChunk] = []
                    await drain_into(s, got)
                    assert "".join(c.choices[0].delta.content or "" for c in got) == "hi"
                else:
                    r = await router.acompletion("g", MESSAGES)
                    assert r.choices[0].message.content == "hi"
            u0 = router.statistics().by_id("u0")
            assert (u0.requests, u0.successes, u0.failures, u0.in_flight) == (4, 4, 0, 0)
            assert u0.state == "healthy"  # one attempt per call: no retry, no failure
        # Calls 2 and 4 met the connection the call before had left in the pool (the
        # server closed it on them) and went through on a new one: 1 + 2 + 1 + 2.
        assert server.requests == 6


async def test_a_new_connection_dropped_is_the_deployments_failure_and_is_not_resent() -> None:
    async def drop_everything(conn: Conn) -> None:
        await conn.request()
        conn.close()

    async with raw_server(drop_everything) as server:
        d = Deployment(group="g", model="m", id="u0", api_base=server.url, api_key=KEY)
        async with Router([d], retry=ONE_TRY, seed=1) as router:
            with pytest.raises(APIConnectionError) as exc:
                await router.acompletion("g", MESSAGES)
            assert exc.value.deployment_id == "u0"
            assert router.statistics().by_id("u0").failures == 1
        assert server.requests == 1


async def test_a_stale_connection_resent_and_dropped_again_fails_once() -> None:
    """The first connection answers once and is closed when reused; every later
    connection is dropped: the reused one is resent once, on a new connection, and
    that failure is the deployment's (one attempt, one failure, no third request)."""

    async def first_then_drop(conn: Conn) -> None:
        while await conn.request() is not None:
            if conn.server.connections > 1 or conn.requests > 1:
                conn.close()
                return
            await conn.send(chat_body("hi"))

    async with raw_server(first_then_drop) as server:
        d = Deployment(group="g", model="m", id="u0", api_base=server.url, api_key=KEY)
        async with Router([d], retry=ONE_TRY, seed=1) as router:
            await router.acompletion("g", MESSAGES)
            with pytest.raises(APIConnectionError):
                await router.acompletion("g", MESSAGES)
            u0 = router.statistics().by_id("u0")
            assert (u0.requests, u0.failures, u0.in_flight) == (2, 1, 0)
        assert (server.connections, server.requests) == (2, 3)


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


# --- a stream whose final chunk carries finish_reason, and no [DONE] follows ---------


class NoDoneUpstream(FakeUpstream):
    """An OpenAI-compatible server that ends its streams without ``data: [DONE]``."""

    _stream_end = ()


@pytest.mark.parametrize("usage", [True, False], ids=["with-usage", "without-usage"])
async def test_a_stream_ending_after_its_finish_reason_without_done_is_complete(
    usage: bool,
) -> None:
    async with NoDoneUpstream(name="u0", reply="one two three", stream_chunks=3) as up:
        d = deployment(up, stream_usage=usage)
        async with Router([d], retry=ONE_TRY, seed=1) as router:
            stream = await router.acompletion("g", MESSAGES, stream=True)
            got: list[ChatCompletionChunk] = []
            await drain_into(stream, got)
            text = "".join(c.choices[0].delta.content or "" for c in got if c.choices)
            assert text == "one two three"
            assert [c.choices[0].finish_reason for c in got if c.choices][-1] == "stop"
            assert isinstance(stream, ChatStream)
            assert (stream.usage is not None) is usage
            u0 = router.statistics().by_id("u0")
            assert (u0.in_flight, u0.successes, u0.failures) == (0, 1, 0)


async def test_a_stream_ending_cleanly_before_its_finish_reason_is_still_interrupted() -> None:
    """The body ends cleanly (its whole Content-Length sent) after a content chunk,
    before any finish_reason: a cut, not an answer."""
    unfinished = sse_body("one two", done=False).rsplit(b"data: ", 1)[0]  # no finish chunk

    async def script(conn: Conn) -> None:
        while await conn.request() is not None:
            await conn.send(unfinished, content_type="text/event-stream")

    async with raw_server(script) as server:
        d = Deployment(group="g", model="m", id="u0", api_base=server.url, api_key=KEY)
        async with Router([d], retry=ONE_TRY, seed=1) as router:
            stream = await router.acompletion("g", MESSAGES, stream=True)
            got: list[ChatCompletionChunk] = []
            with pytest.raises(StreamInterruptedError, match=r"without \[DONE\]"):
                await drain_into(stream, got)
            assert [c.choices[0].delta.content for c in got] == ["", "one two"]
            assert router.statistics().by_id("u0").failures == 1


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
