"""OpenTelemetry spans of real calls to FakeUpstream servers on 127.0.0.1, read back
through the OpenTelemetry SDK's in-memory exporter.

What the spans must say follows the GenAI semantic conventions
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/); the upstreams
answer in OpenAI's chat completions shape
(https://platform.openai.com/docs/api-reference/chat/object).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from interlock import (
    BadRequestError,
    ConfigError,
    HedgePolicy,
    InternalServerError,
    ResponseResult,
    ResponseStream,
    Router,
    StreamInterruptedError,
    Tracing,
)
from interlock.testing import FakeUpstream, Fault
from tests.integration.loopback import KEY, MESSAGES, deployment, first_candidate, upstreams


class Open(SpanProcessor):
    """Counts spans started and not ended: none may be left open."""

    def __init__(self) -> None:
        self.open: set[int] = set()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.open.add(span.context.span_id)

    def on_end(self, span: ReadableSpan) -> None:
        self.open.discard(span.context.span_id)


class Traces:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.open = Open()
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.open)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def call_span(self) -> ReadableSpan:
        (call,) = [s for s in self.spans if s.kind is SpanKind.INTERNAL]
        return call

    def attempts(self) -> list[ReadableSpan]:
        out = [s for s in self.spans if s.kind is SpanKind.CLIENT]
        return sorted(out, key=lambda s: s.start_time or 0)


@pytest.fixture
def traces() -> Iterator[Traces]:
    t = Traces()
    yield t
    t.provider.shutdown()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def router(ups: list[FakeUpstream], traces: Traces, **options: Any) -> Router:
    options.setdefault("seed", 7)
    options.setdefault("strategy", first_candidate)
    options.setdefault("tracing", traces.provider)
    groups = options.pop("groups", None)
    deps = (
        [deployment(up, group=g) for up, g in zip(ups, groups, strict=True)]
        if groups
        else [deployment(up) for up in ups]
    )
    return Router(deps, **options)


async def test_a_retried_call_is_one_call_span_over_two_attempt_spans(traces: Traces) -> None:
    async with upstreams(2) as ups:
        ups[0].push(Fault.status(500))
        async with router(ups, traces) as r:
            result = await r.acompletion("g", MESSAGES, temperature=0.2, max_tokens=64)
    call = traces.call_span()
    first, second = traces.attempts()
    assert call.name == "chat g"
    a = attrs(call)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "g"
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["interlock.request.id"] == result.request_id
    assert a["gen_ai.response.model"] == result.model
    assert a["gen_ai.response.id"] == result.id
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert result.usage is not None
    assert a["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert call.status.status_code is StatusCode.UNSET
    assert "gen_ai.input.messages" not in a
    assert "gen_ai.output.messages" not in a
    for span, number, dep in ((first, 1, "u0"), (second, 2, "u1")):
        assert span.parent is not None
        assert span.parent.span_id == call.context.span_id
        assert span.name == "chat gpt-test"  # the deployment's own model
        s = attrs(span)
        assert s["gen_ai.provider.name"] == "openai"
        assert s["gen_ai.operation.name"] == "chat"
        assert s["server.address"] == "127.0.0.1"
        assert s["server.port"] == ups[number - 1].port
        assert s["interlock.attempt"] == number
        assert s["interlock.deployment.id"] == dep
        assert s["interlock.group"] == "g"
        assert s["interlock.request.id"] == result.request_id
    f = attrs(first)
    assert first.status.status_code is StatusCode.ERROR
    assert f["error.type"] == "InternalServerError"
    assert f["http.response.status_code"] == 500
    assert "gen_ai.usage.input_tokens" not in f
    s2 = attrs(second)
    assert second.status.status_code is StatusCode.UNSET
    assert s2["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert s2["gen_ai.response.id"] == result.id
    assert not traces.open.open


async def test_a_fallback_shows_attempts_in_both_groups(traces: Traces) -> None:
    async with upstreams(2) as ups:
        ups[0].always(Fault.status(503))
        async with router(ups, traces, groups=["g", "h"], fallbacks={"g": ["h"]}) as r:
            result = await r.acompletion("g", MESSAGES)
    assert result.group == "h"
    groups = [attrs(s)["interlock.group"] for s in traces.attempts()]
    assert groups[-1] == "h"
    assert set(groups) == {"g", "h"}
    call = attrs(traces.call_span())
    assert call["gen_ai.request.model"] == "g"
    assert call["interlock.deployment.id"] == "u1"
    assert not traces.open.open


async def test_a_hedge_is_a_second_attempt_span_and_the_loser_is_cancelled(
    traces: Traces,
) -> None:
    async with upstreams(2) as ups:
        ups[0].push(Fault.delay(30.0))
        async with router(ups, traces, hedging={"g": HedgePolicy(delay=0.05)}) as r:
            result = await r.acompletion("g", MESSAGES)
    assert result.deployment_id == "u1"
    slow, hedge = traces.attempts()
    assert attrs(slow)["interlock.outcome"] == "cancelled"
    assert slow.status.status_code is StatusCode.UNSET
    h = attrs(hedge)
    assert h["interlock.hedge"] is True
    assert h["interlock.attempt"] == 2
    assert h["interlock.deployment.id"] == "u1"
    assert "gen_ai.usage.input_tokens" in h
    assert not traces.open.open


async def test_a_stream_call_span_ends_when_the_stream_does(traces: Traces) -> None:
    async with upstreams(1, stream_chunks=3) as ups, router(ups, traces) as r:
        stream = await r.acompletion("g", MESSAGES, stream=True)
        assert traces.spans == ()  # open while the caller reads
        async for _ in stream:
            pass
        call = traces.call_span()
        (attempt,) = traces.attempts()
        assert call.name == "chat g"
        assert attrs(call)["interlock.stream"] is True
        assert attrs(call)["interlock.request.id"] == stream.request_id
        assert stream.usage is not None
        assert attrs(attempt)["gen_ai.usage.output_tokens"] == stream.usage.completion_tokens
        assert attrs(call)["gen_ai.usage.input_tokens"] == stream.usage.prompt_tokens
        assert (call.end_time or 0) >= (attempt.end_time or 0)
        # closed early: both spans end, saying so
        traces.exporter.clear()
        early = await r.acompletion("g", MESSAGES, stream=True)
        await early.__anext__()
        await early.aclose()
        assert attrs(traces.call_span())["interlock.outcome"] == "closed"
        assert attrs(traces.attempts()[0])["interlock.outcome"] == "closed"
        # dropped without closing: no span left open either
        traces.exporter.clear()
        dropped = await r.acompletion("g", MESSAGES, stream=True)
        del dropped
        assert len(traces.spans) == 2
    assert not traces.open.open


async def test_a_stream_cut_midway_ends_its_spans_with_the_error(traces: Traces) -> None:
    async with upstreams(1, stream_chunks=6) as ups, router(ups, traces) as r:
        ups[0].push(Fault.cut_stream(after_chunks=2))
        stream = await r.acompletion("g", MESSAGES, stream=True)
        with pytest.raises(StreamInterruptedError) as info:
            async for _ in stream:
                pass
    call = traces.call_span()
    assert call.status.status_code is StatusCode.ERROR
    assert attrs(call)["error.type"] == type(info.value).__name__
    assert traces.attempts()[0].status.status_code is StatusCode.ERROR
    assert not traces.open.open


async def test_a_failed_call_has_error_status_and_type(traces: Traces) -> None:
    async with upstreams(2) as ups:
        for up in ups:
            up.always(Fault.status(400, message="bad 'temperature'"))
        async with router(ups, traces) as r:
            with pytest.raises(BadRequestError) as info:
                await r.acompletion("g", MESSAGES, request_id="caller-1")
    call = traces.call_span()
    assert call.status.status_code is StatusCode.ERROR
    assert attrs(call)["error.type"] == "BadRequestError"
    assert attrs(call)["interlock.request.id"] == info.value.request_id == "caller-1"
    (attempt,) = traces.attempts()  # a caller's error is not retried
    assert attrs(attempt)["error.type"] == "BadRequestError"
    assert attrs(attempt)["interlock.failure.kind"] == "caller"
    assert not traces.open.open


async def test_a_cancelled_call_leaves_no_span_open(traces: Traces) -> None:
    async with upstreams(1) as ups:
        ups[0].push(Fault.hang())
        async with router(ups, traces) as r:
            task = asyncio.create_task(r.acompletion("g", MESSAGES))
            while not ups[0].in_flight:  # noqa: ASYNC110 - waits on the server's side
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert attrs(traces.call_span())["interlock.outcome"] == "cancelled"
    assert attrs(traces.attempts()[0])["interlock.outcome"] == "cancelled"
    assert not traces.open.open


async def test_content_is_recorded_only_when_asked(traces: Traces) -> None:
    tracing = Tracing(traces.provider, capture_content=True)
    async with upstreams(1, reply="Hi there.") as ups, router(ups, traces, tracing=tracing) as r:
        await r.acompletion("g", MESSAGES)
    a = attrs(traces.call_span())
    # https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-input-messages.json
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": MESSAGES[0]["content"]}]}
    ]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hi there."}],
            "finish_reason": "stop",
        }
    ]
    for span in traces.attempts():
        assert "gen_ai.input.messages" not in attrs(span)


async def test_embeddings_and_routed_calls(traces: Traces) -> None:
    async with upstreams(1) as ups, router(ups, traces) as r:
        e = await r.aembedding("g", ["a", "b"])
        emb = traces.call_span()
        assert emb.name == "embeddings g"
        assert attrs(emb)["gen_ai.operation.name"] == "embeddings"
        assert attrs(emb)["interlock.request.id"] == e.request_id
        assert traces.attempts()[0].name == "embeddings gpt-test"
        traces.exporter.clear()

        async def fn(d: object) -> int:
            raise InternalServerError("down", status_code=503)

        with pytest.raises(InternalServerError):
            await r.call("g", fn, request_id="job-9")
        call = traces.call_span()
        assert call.name == "interlock.call g"
        assert "gen_ai.operation.name" not in attrs(call)
        assert attrs(call)["error.type"] == "InternalServerError"
        assert attrs(traces.attempts()[0])["interlock.request.id"] == "job-9"
    assert not traces.open.open


async def test_from_config_takes_tracing_too(traces: Traces) -> None:
    async with upstreams(1) as ups:
        cfg = {
            "deployments": [
                {"group": "g", "model": "gpt-test", "api_base": ups[0].url, "api_key": KEY}
            ]
        }
        async with Router.from_config(cfg, tracing=traces.provider) as r:
            await r.acompletion("g", MESSAGES)
    assert traces.call_span().name == "chat g"


def test_a_bad_tracing_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tracing"):
        Router([{"group": "g", "model": "m", "api_key": KEY}], tracing="yes")


async def test_no_spans_without_tracing(traces: Traces) -> None:
    async with upstreams(1) as ups, router(ups, traces, tracing=None) as r:
        result = await r.acompletion("g", MESSAGES)
        assert r.parts.tracing is None
        assert r.parts.entry is r.parts.pipeline
    assert result.request_id
    assert traces.spans == ()


# --- the Responses API and the other endpoints ---------------------------------------
# Responses bodies: https://platform.openai.com/docs/api-reference/responses/create;
# images: https://platform.openai.com/docs/api-reference/images/create; speech:
# https://platform.openai.com/docs/api-reference/audio/createSpeech.


@pytest.mark.parametrize("stream", [False, True])
async def test_a_responses_call_is_a_chat_span(traces: Traces, stream: bool) -> None:
    async with upstreams(2, reply="Paris.", stream_chunks=3) as ups:
        ups[0].push(Fault.status(500))
        async with router(ups, traces) as r:
            mode: dict[str, Any] = {"stream": stream}
            got: ResponseResult | ResponseStream = await r.aresponses(
                "g", "Capital of France?", max_output_tokens=32, request_id="rs-1", **mode
            )
            if isinstance(got, ResponseStream):
                # The call span ends with the stream (the failed attempt's has ended).
                assert [s.kind for s in traces.spans] == [SpanKind.CLIENT]
                _ = [event async for event in got]
                assert got.response is not None
                result = got.response
            else:
                result = got
    call = traces.call_span()
    first, second = traces.attempts()
    assert call.name == "chat g"
    a = attrs(call)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "g"
    assert a["interlock.request.id"] == result.request_id == "rs-1"
    assert result.usage is not None
    assert a["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    assert a["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    if not stream:
        assert a["gen_ai.response.id"] == result.id
    assert (first.name, second.name) == ("chat gpt-test", "chat gpt-test")
    assert first.status.status_code is StatusCode.ERROR
    assert attrs(second)["interlock.deployment.id"] == "u1"
    assert attrs(second)["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    for span in (first, second):
        assert span.parent is not None
        assert span.parent.span_id == call.context.span_id
    assert not traces.open.open


async def test_a_responses_follow_up_that_searches_is_one_call_span(traces: Traces) -> None:
    async with upstreams(2, reply="hi") as ups:
        async with router(ups, traces) as first:
            r = await first.aresponses("g", "hi")  # stored on u0's account
        traces.exporter.clear()
        # Another router (a restart) does not know where r lives: u1 answers "not found"
        # (the fake's answer for a response it does not hold), then u0 serves it.
        later = Router([deployment(ups[1]), deployment(ups[0])], strategy=first_candidate,
                       tracing=traces.provider)  # fmt: skip
        async with later:
            nxt = await later.aresponses("g", "more", previous_response_id=r.id)
    assert nxt.deployment_id == "u0"
    call = traces.call_span()
    assert [attrs(s)["interlock.deployment.id"] for s in traces.attempts()] == ["u1", "u0"]
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id
               for s in traces.attempts())  # fmt: skip
    assert call.status.status_code is StatusCode.UNSET
    assert not traces.open.open


async def test_endpoint_calls_are_interlock_spans(traces: Traces) -> None:
    async with upstreams(1, stream_chunks=3) as ups, router(ups, traces) as r:
        images = await r.aimage_generation("g", "a red fox", request_id="img-1")
        call = traces.call_span()
        assert call.name == "interlock.images g"
        a = attrs(call)
        assert "gen_ai.operation.name" not in a  # the conventions define none for it
        assert a["interlock.operation"] == "images"
        assert a["interlock.request.id"] == images.request_id == "img-1"
        assert images.usage is not None
        assert a["gen_ai.usage.output_tokens"] == images.usage.completion_tokens
        (attempt,) = traces.attempts()
        assert attempt.name == "interlock.attempt g"
        assert attrs(attempt)["gen_ai.provider.name"] == "openai"
        traces.exporter.clear()

        speech = await r.aspeech("g", "Hello", "alloy")
        assert traces.spans == ()  # ends with the body
        await speech.read()
        call = traces.call_span()
        assert call.name == "interlock.speech g"
        assert attrs(call)["interlock.request.id"] == speech.request_id
        assert attrs(call)["interlock.stream"] is True
        assert call.status.status_code is StatusCode.UNSET
        assert len(traces.attempts()) == 1
        traces.exporter.clear()

        ups[0].push(Fault.cut_stream(1))
        cut = await r.aspeech("g", "Hello", "alloy")
        with pytest.raises(StreamInterruptedError):
            await cut.read()
        call = traces.call_span()
        assert attrs(call)["error.type"] == "StreamInterruptedError"
        assert attrs(traces.attempts()[0])["error.type"] == "StreamInterruptedError"
        traces.exporter.clear()

        async with await r.aspeech("g", "Hello", "alloy") as closed:
            await closed.__anext__()
        assert attrs(traces.call_span())["interlock.outcome"] == "closed"
        assert attrs(traces.attempts()[0])["interlock.outcome"] == "closed"
    assert not traces.open.open
