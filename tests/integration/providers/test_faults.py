"""Every class of failure from the transports' dependencies (aiohttp, the socket,
orjson, the providers' bytes) reaches the caller as a typed `InterlockError` with the
deployment's id, and nothing on its exception chain holds what the upstream sent.

Each fault is staged by a loopback server; the marker `KEY` is in every byte the
servers send, so a chain that kept any of it would be caught by `assert_clean`.

Bodies follow https://platform.openai.com/docs/api-reference/chat/object,
https://docs.anthropic.com/en/api/messages and https://ai.google.dev/api/generate-content,
bent where the fault needs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from interlock import (
    APIConnectionError,
    APITimeoutError,
    ChatCompletionChunk,
    Deployment,
    InterlockError,
    MalformedResponseError,
    RetryPolicy,
    Router,
    StreamInterruptedError,
)
from interlock.testing import FakeAnthropic, FakeGemini, Fault
from tests.integration.loopback import KEY, MESSAGES, assert_clean, drain_into
from tests.integration.rawhttp import Conn, chat_body, raw_server, sse_body

ONE_TRY = RetryPolicy(max_attempts=1, max_wait=0)
ECHO = KEY.encode()


def answer(raw: bytes) -> Callable[[Conn], Awaitable[None]]:
    """A server that reads one request and writes `raw` back, then closes."""

    async def script(conn: Conn) -> None:
        if await conn.request() is not None:
            conn.writer.write(raw)
            await conn.writer.drain()
            conn.close()

    return script


async def reset(conn: Conn) -> None:
    await conn.request()
    conn.reset()


async def silent(conn: Conn) -> None:
    await conn.request()
    await conn.reader.read()  # until the client gives up


def http(body: bytes, *headers: str, length: int | None = None) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", *headers]
    if length is not None:
        head.append(f"Content-Length: {length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(*pieces: bytes, end: bytes = b"0\r\n\r\n") -> bytes:
    body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + end
    return http(body, "Transfer-Encoding: chunked")


BODY = chat_body("hi " + KEY)
WRONG = orjson.dumps({"choices": KEY})
CUT = StreamInterruptedError  # a stream's connection failure
NOT_SSE = StreamInterruptedError  # a body with no event in it ends before the first chunk

# fault -> (server, error of a plain call, error of a streamed call)
BEFORE_FIRST_CHUNK: dict[str, tuple[Any, type[InterlockError], type[InterlockError]]] = {
    "reset": (reset, APIConnectionError, APIConnectionError),
    "not-http": (
        answer(b"HELLO " + ECHO + b"\r\n\r\n"),
        MalformedResponseError,
        MalformedResponseError,
    ),
    "huge-header": (
        answer(http(b"{}", "X-Echo: " + KEY * 2000)),
        MalformedResponseError,
        MalformedResponseError,
    ),
    "short-body": (answer(http(BODY[:40], length=len(BODY))), APIConnectionError, CUT),
    "bad-chunking": (
        answer(chunked(BODY[:40], end=b"zz\r\n" + ECHO)),
        MalformedResponseError,
        MalformedResponseError,
    ),
    "bad-gzip": (
        answer(http(ECHO, "Content-Encoding: gzip", length=len(ECHO))),
        APIConnectionError,
        CUT,
    ),
    "not-json": (answer(http(b"{" + ECHO, length=len(ECHO) + 1)), MalformedResponseError, NOT_SSE),
    "not-utf8": (
        answer(http(b'"\xff' + ECHO + b'"', length=len(ECHO) + 3)),
        MalformedResponseError,
        NOT_SSE,
    ),
    "wrong-shape": (answer(http(WRONG, length=len(WRONG))), MalformedResponseError, NOT_SSE),
    "silent": (silent, APITimeoutError, APITimeoutError),
}


def router(url: str) -> Router:
    d = Deployment(group="g", model="m", id="u0", api_base=url, api_key=KEY, timeout=0.5)
    return Router([d], retry=ONE_TRY, seed=1)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault", list(BEFORE_FIRST_CHUNK))
async def test_each_failure_before_the_first_chunk_is_typed_and_clean(
    fault: str, stream: bool
) -> None:
    script, plain, streamed = BEFORE_FIRST_CHUNK[fault]
    async with raw_server(script) as server, router(server.url) as r:
        call = r.acompletion("g", MESSAGES, stream=True) if stream else r.acompletion("g", MESSAGES)
        with pytest.raises(InterlockError) as exc:
            await call
        assert isinstance(exc.value, streamed if stream else plain)
        assert exc.value.deployment_id == "u0"
        assert_clean(exc.value, KEY)
        assert r.statistics().by_id("u0").failures == 1


async def test_a_refused_connection_is_typed_and_clean() -> None:
    async with raw_server(reset) as server:
        url = server.url
    async with router(url) as r:
        with pytest.raises(APIConnectionError) as exc:
            await r.acompletion("g", MESSAGES)
        assert_clean(exc.value, KEY)


FIRST_EVENT = sse_body("hi").split(b"\n\n")[0] + b"\n\n"
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# fault -> (bytes after the first event, the error the caller gets)
AFTER_FIRST_CHUNK: dict[str, tuple[bytes, type[InterlockError]]] = {
    "not-json": (chunk(b"data: {" + ECHO + b"\n\n") + b"0\r\n\r\n", MalformedResponseError),
    "wrong-shape": (
        chunk(b'data: {"choices": "' + ECHO + b'"}\n\n') + b"0\r\n\r\n",
        MalformedResponseError,
    ),
    "error-event": (
        chunk(b'data: {"error": {"message": "boom ' + ECHO + b'"}}\n\n') + b"0\r\n\r\n",
        InterlockError,  # InternalServerError, its message scrubbed of the key
    ),
    "cut-mid-event": (f"{len(ECHO) + 50:x}\r\n".encode() + b"data: {" + ECHO, CUT),
    # aiohttp notices a bad chunk size only at the idle timeout: a stall, typed as a cut
    "bad-chunking": (b"zz\r\n" + ECHO, CUT),
    "cut-at-a-chunk": (b"", CUT),
}


@pytest.mark.parametrize("fault", list(AFTER_FIRST_CHUNK))
async def test_each_failure_after_the_first_chunk_is_typed_and_clean(fault: str) -> None:
    """The server sends the first event, waits until the caller has it, then the fault
    (and closes): the fault reaches the caller from the stream's iterator."""
    tail, expected = AFTER_FIRST_CHUNK[fault]
    first_read = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.request()
        conn.writer.write(SSE_HEAD + chunk(FIRST_EVENT))
        await first_read.wait()
        conn.writer.write(tail)
        await conn.writer.drain()
        conn.close()

    async with raw_server(script) as server, router(server.url) as r:
        stream = await r.acompletion("g", MESSAGES, stream=True)
        got = [await anext(stream)]
        first_read.set()
        with pytest.raises(expected) as exc:
            await drain_into(stream, got)
        assert len(got) == 1
        assert exc.value.deployment_id == "u0"
        assert_clean(exc.value, KEY)
        assert r.statistics().by_id("u0").failures == 1


async def test_a_stream_that_stalls_past_the_deployment_timeout_is_interrupted() -> None:
    async def stall(conn: Conn) -> None:
        await conn.request()
        conn.writer.write(SSE_HEAD + chunk(FIRST_EVENT))
        await conn.reader.read()

    async with raw_server(stall) as server, router(server.url) as r:
        stream = await r.acompletion("g", MESSAGES, stream=True)
        with pytest.raises(StreamInterruptedError) as exc:
            await drain_into(stream, [])
        assert "no chunk for 0.5 s after 1 chunk(s)" in str(exc.value)
        assert_clean(exc.value, KEY)


# --- Anthropic and Gemini: the same guarantees through their transports ---------------


def anthropic_message(usage: dict[str, Any]) -> bytes:
    """A Messages API response (docs.anthropic.com/en/api/messages, "Response")."""
    return orjson.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
    )


def gemini_response(usage: dict[str, Any]) -> bytes:
    """A generateContent response
    (ai.google.dev/api/generate-content#v1beta.GenerateContentResponse)."""
    return orjson.dumps(
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}
            ],
            "usageMetadata": usage,
            "modelVersion": "gemini-test",
        }
    )


def native_router(provider: str, url: str) -> Router:
    d = Deployment(
        group="g",
        provider=provider,
        model="claude-test" if provider == "anthropic" else "gemini-test",
        id="u0",
        api_base=url,
        api_key=KEY,
        input_cost_per_token=0.01,
        output_cost_per_token=0.01,
    )
    return Router([d], retry=ONE_TRY, seed=1)


NATIVE_BODIES: dict[str, bytes] = {
    "anthropic-not-json": b'{"id": "' + ECHO,
    "anthropic-wrong-shape": orjson.dumps({"content": [{"type": "text", "text": 1}], "k": KEY}),
    "anthropic-negative-usage": anthropic_message({"input_tokens": -5, "output_tokens": 1}),
    "anthropic-string-usage": anthropic_message({"input_tokens": KEY, "output_tokens": 1}),
    "gemini-not-json": b'{"candidates": "' + ECHO,
    "gemini-wrong-shape": orjson.dumps(
        {"candidates": [{"content": {"parts": [{"text": 5}]}, "echo": KEY}]}
    ),
    "gemini-negative-usage": gemini_response({"promptTokenCount": 3, "totalTokenCount": -1}),
    "gemini-fractional-usage": gemini_response({"promptTokenCount": 2.5}),
}


@pytest.mark.parametrize("case", list(NATIVE_BODIES))
async def test_native_malformed_bodies_are_typed_clean_and_never_accounted(case: str) -> None:
    provider = case.split("-")[0]
    fake = FakeAnthropic if provider == "anthropic" else FakeGemini
    async with fake(api_key=KEY) as up, native_router(provider, up.url) as r:
        up.push(Fault.malformed(NATIVE_BODIES[case]))
        with pytest.raises(MalformedResponseError) as exc:
            await r.acompletion("g", MESSAGES)
        assert exc.value.deployment_id == "u0"
        assert_clean(exc.value, KEY)
        u0 = r.statistics().by_id("u0")
        assert (u0.failures, u0.spend, u0.input_tokens, u0.output_tokens) == (1, 0.0, 0, 0)


class EndsEarly(FakeAnthropic):
    """Ends its streams cleanly after their first `keep` events (negative: all but the
    last ones), whatever comes after them."""

    keep = -1

    async def _stream(self, request: Any, record: Any, frames: list[bytes]) -> Any:
        return await super()._stream(request, record, frames[: self.keep])


async def test_an_anthropic_stream_without_message_stop_after_its_stop_reason_is_complete() -> None:
    async with EndsEarly(api_key=KEY, reply="one two") as up:
        async with native_router("anthropic", up.url) as r:
            stream = await r.acompletion("g", MESSAGES, stream=True)
            got: list[ChatCompletionChunk] = []
            await drain_into(stream, got)  # every event but message_stop
            assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "one two"
            assert r.statistics().by_id("u0").successes == 1
        # message_start, ping, content_block_start, one text delta: no stop reason yet
        up.keep = 4
        async with native_router("anthropic", up.url) as r:
            stream = await r.acompletion("g", MESSAGES, stream=True)
            with pytest.raises(StreamInterruptedError, match="before the message was complete"):
                await drain_into(stream, [])
            assert r.statistics().by_id("u0").failures == 1
