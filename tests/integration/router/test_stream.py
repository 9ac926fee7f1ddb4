"""Streaming through the real OpenAI transport from FakeUpstream's SSE: every chunk
in order, usage accounted, cuts reported and counted, abandoned streams settled."""

from __future__ import annotations

import asyncio
import gc

import pytest

from interlock import (
    ChatCompletionChunk,
    ChatParams,
    ChatStream,
    RetryPolicy,
    Router,
    StreamInterruptedError,
    Usage,
)
from interlock.limits import estimate_input_tokens
from interlock.testing import FakeClock, Fault
from tests.integration.loopback import (
    MESSAGES,
    deployment,
    drain_into,
    eventually,
    first_candidate,
    router_over,
    upstreams,
)

REPLY = "The quick brown fox jumps over the lazy dog."


def text_of(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [c.choices[0].delta.content or "" for c in chunks if c.choices]


async def test_stream_yields_every_chunk_in_order_and_accounts_usage() -> None:
    async with (
        upstreams(1, reply=REPLY, stream_chunks=5) as ups,
        router_over(ups, deployment={"tpm": 100_000}) as router,
    ):
        stream = await router.acompletion("g", MESSAGES, stream=True)
        assert isinstance(stream, ChatStream)
        assert stream.deployment_id == "u0"
        chunks = [c async for c in stream]
        pieces = text_of(chunks)
        # role frame, 5 content pieces, finish frame; then the usage chunk
        assert pieces[0] == ""
        assert chunks[0].choices[0].delta.role == "assistant"
        assert len([p for p in pieces if p]) == 5
        assert "".join(pieces) == REPLY
        assert chunks[-2].choices[0].finish_reason == "stop"
        assert chunks[-1].choices == []
        assert len({c.id for c in chunks}) == 1
        assert all(c.deployment_id == "u0" for c in chunks)
        prompt = 5  # ceil(len("Say hello, please.") / 4)
        completion = 11  # ceil(len(REPLY) / 4)
        assert stream.usage == Usage(prompt, completion, prompt + completion)
        u0 = router.statistics().by_id("u0")
        assert (u0.in_flight, u0.successes, u0.failures) == (0, 1, 0)
        assert u0.tpm_used == prompt + completion
        body = ups[0].received[0].body
        assert body is not None
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}


async def test_stream_cut_after_k_chunks_reaches_the_caller_and_counts() -> None:
    async with upstreams(2, reply=REPLY, stream_chunks=5) as ups:
        ups[0].push(Fault.cut_stream(3))
        async with router_over(ups, strategy=first_candidate, clock=FakeClock()) as router:
            stream = await router.acompletion("g", MESSAGES, stream=True)
            assert stream.deployment_id == "u0"
            got: list[ChatCompletionChunk] = []
            with pytest.raises(StreamInterruptedError) as exc:
                await drain_into(stream, got)
            assert len(got) == 3
            assert REPLY.startswith("".join(text_of(got)))
            assert exc.value.deployment_id == "u0"
            u0 = router.statistics().by_id("u0")
            assert (u0.in_flight, u0.failures, u0.consecutive_failures, u0.successes) == (
                0,
                1,
                1,
                0,
            )
            assert ups[1].request_count == 0


async def test_stream_cut_before_its_first_chunk_is_retried_elsewhere() -> None:
    async with upstreams(2, reply=REPLY) as ups:
        ups[0].push(Fault.cut_stream(0))
        async with router_over(ups, strategy=first_candidate, clock=FakeClock()) as router:
            stream = await router.acompletion("g", MESSAGES, stream=True)
            assert stream.deployment_id == "u1"
            assert "".join(text_of([c async for c in stream])) == REPLY
            assert router.statistics().by_id("u0").failures == 1
            assert router.statistics().in_flight == 0


async def test_stream_that_stalls_mid_way_is_cut_at_the_deployment_timeout() -> None:
    """Frames 1 s apart, deployment timeout 0.2 s: the first chunk arrives at once, the
    next never in time; the stall becomes StreamInterruptedError (no timing asserted)."""
    async with (
        upstreams(1, chunk_interval=1.0) as ups,
        router_over(ups, deployment={"timeout": 0.2}) as router,
    ):
        stream = await router.acompletion("g", MESSAGES, stream=True)
        with pytest.raises(StreamInterruptedError):
            await drain_into(stream, [])
        assert stream.chunks == 1
        u0 = router.statistics().by_id("u0")
        assert (u0.in_flight, u0.failures) == (0, 1)


async def test_stream_without_usage_settles_an_estimate_with_max_tokens() -> None:
    """A deployment that does not ask for stream usage: the reservation is reconciled
    with an estimate (prompt + streamed text), whether or not `max_tokens` was set."""
    async with upstreams(1, reply=REPLY) as ups:
        router = Router([deployment(ups[0], tpm=100_000, stream_usage=False)], clock=FakeClock())
        async with router:
            prompt = estimate_input_tokens(MESSAGES)
            used = 0
            cases: list[ChatParams] = [{}, {"max_tokens": 50}]
            for params in cases:
                stream = await router.acompletion("g", MESSAGES, stream=True, **params)
                async for _ in stream:
                    pass
                assert stream.usage is None
                assert "stream_options" not in (ups[0].received[-1].body or {})
                before, used = used, router.statistics().by_id("u0").tpm_used or 0
                # this stream added at least its prompt, at most prompt + reply length
                assert prompt < used - before <= prompt + len(REPLY), params


async def test_stream_abandoned_by_break_settles_and_releases_the_connection() -> None:
    async with (
        upstreams(1, reply=REPLY, chunk_interval=0.05) as ups,
        router_over(ups) as router,
    ):
        async for _ in await router.acompletion("g", MESSAGES, stream=True):
            break
        assert router.statistics().by_id("u0").in_flight == 0
        await eventually(lambda: ups[0].in_flight == 0)


async def test_stream_abandoned_by_aclose_settles_and_releases_the_connection() -> None:
    async with (
        upstreams(1, reply=REPLY, chunk_interval=0.05) as ups,
        router_over(ups) as router,
    ):
        stream = await router.acompletion("g", MESSAGES, stream=True)
        await anext(stream)
        assert router.statistics().by_id("u0").in_flight == 1
        await stream.aclose()
        assert router.statistics().by_id("u0").in_flight == 0
        await eventually(lambda: ups[0].in_flight == 0)


async def test_stream_dropped_settles_and_releases_the_connection() -> None:
    async with (
        upstreams(1, reply=REPLY, chunk_interval=0.05) as ups,
        router_over(ups) as router,
    ):
        stream = await router.acompletion("g", MESSAGES, stream=True)
        assert router.statistics().by_id("u0").in_flight == 1
        del stream
        gc.collect()
        assert router.statistics().by_id("u0").in_flight == 0
        await eventually(lambda: ups[0].in_flight == 0)


async def test_stream_consumer_cancelled_settles_in_flight() -> None:
    async with (
        upstreams(1, reply=REPLY, chunk_interval=5.0) as ups,
        router_over(ups, retry=RetryPolicy(max_attempts=1)) as router,
    ):
        stream = await router.acompletion("g", MESSAGES, stream=True)

        async def consume() -> int:
            return len([c async for c in stream])

        task = asyncio.create_task(consume())
        await eventually(lambda: stream.chunks == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        u0 = router.statistics().by_id("u0")
        assert (u0.in_flight, u0.failures) == (0, 0)
        await eventually(lambda: ups[0].in_flight == 0)
