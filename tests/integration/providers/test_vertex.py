"""Vertex AI (Gemini and Claude) through a real Router, with google-auth fetching tokens
from FakeVertex's token endpoint with a throwaway service-account key.

Wire shapes: Gemini on Vertex https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference,
Claude on Vertex https://docs.anthropic.com/en/api/claude-on-vertex-ai, the OAuth token
exchange https://developers.google.com/identity/protocols/oauth2/service-account.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from interlock import (
    AuthenticationError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    Deployment,
    InterlockError,
    RateLimitError,
    RetryPolicy,
    Router,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from interlock.testing import FakeVertex, Fault

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ONE_TRY = RetryPolicy(max_attempts=1, max_wait=0)
GEMINI = "gemini-2.0-flash"
CLAUDE = "claude-sonnet-4@20250514"


def weather_calls(body: dict[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [("get_weather", {"city": "Paris"})] if body.get("tools") else []


@pytest.fixture
async def vertex() -> AsyncIterator[FakeVertex]:
    async with FakeVertex(tool_calls=weather_calls) as up:
        yield up


@pytest.fixture
def key_file(vertex: FakeVertex, tmp_path: Path) -> Path:
    return vertex.service_account(tmp_path / "sa.json")


def dep(vertex: FakeVertex, key_file: Path | str, model: str, **kw: Any) -> Deployment:
    return Deployment(
        group=kw.pop("group", "g"), provider="vertex", model=model, api_base=vertex.url,
        vertex_project="my-proj", vertex_location="us-east5",
        vertex_credentials=str(key_file), **kw,
    )  # fmt: skip


async def collect(stream: Any) -> tuple[str, list[Any]]:
    text, chunks = [], []
    async for chunk in stream:
        chunks.append(chunk)
        for c in chunk.choices:
            text.append(c.delta.content or "")
    return "".join(text), chunks


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
async def test_chat_and_stream_round_trip(vertex: FakeVertex, key_file: Path, model: str) -> None:
    async with Router([dep(vertex, key_file, model)], retry=ONE_TRY) as router:
        messages = [{"role": "system", "content": "Be brief."}, *USER]
        r = await router.acompletion(model="g", messages=messages, max_tokens=50)
        stream = await router.acompletion(model="g", messages=USER, stream=True)
        text, chunks = await collect(stream)
    assert r.choices[0].message.content == text == "Hello from FakeUpstream."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert stream.usage is not None
    assert chunks[0].choices[0].delta.role == "assistant"
    plain, streamed = vertex.received[-2:]
    publisher = "anthropic" if model == CLAUDE else "google"
    base = f"/v1/projects/my-proj/locations/us-east5/publishers/{publisher}/models/{model}"
    if model == CLAUDE:
        assert plain.path == f"{base}:rawPredict"
        assert streamed.path == f"{base}:streamRawPredict"
        assert plain.body is not None
        assert plain.body["anthropic_version"] == "vertex-2023-10-16"
        assert "model" not in plain.body
        assert plain.body["system"] == "Be brief."
        assert plain.body["max_tokens"] == 50
    else:
        assert plain.path == f"{base}:generateContent"
        assert streamed.path == f"{base}:streamGenerateContent"
        assert plain.body is not None
        assert plain.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert plain.headers["Authorization"].startswith("Bearer ya29.fake-vertex-")
    assert vertex.tokens_issued == 1  # one token for both calls
    assert vertex.tokens_rejected == 0


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
async def test_tools_plain_and_stream(vertex: FakeVertex, key_file: Path, model: str) -> None:
    async with Router([dep(vertex, key_file, model)], retry=ONE_TRY) as router:
        r = await router.acompletion(model="g", messages=USER, tools=[WEATHER_TOOL])
        call = (r.choices[0].message.tool_calls or [])[0]
        assert r.choices[0].finish_reason == "tool_calls"
        assert call["function"]["name"] == "get_weather"
        follow: list[dict[str, Any]] = [
            *USER,
            # The whole assistant turn goes back: Gemini needs its thought signatures.
            r.choices[0].message.to_dict(),
            {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21}'},
        ]
        stream = await router.acompletion(
            model="g", messages=follow, tools=[WEATHER_TOOL], stream=True
        )
        _, chunks = await collect(stream)
    names = [
        tc["function"].get("name")
        for c in chunks
        for ch in c.choices
        for tc in ch.delta.tool_calls or ()
        if tc.get("function", {}).get("name")
    ]
    assert names == ["get_weather"]
    body = vertex.received[-1].body
    assert body is not None
    if model == CLAUDE:
        assert body["messages"][-1]["content"][0]["type"] == "tool_result"
    else:
        assert "functionResponse" in body["contents"][-1]["parts"][0]


async def test_gemini_embeddings(vertex: FakeVertex, key_file: Path) -> None:
    embed = dep(vertex, key_file, "text-embedding-005")
    async with Router([embed], retry=ONE_TRY) as router:
        e = await router.aembedding(model="g", input=["a", "bb"], dimensions=4)
    assert [len(x.embedding) for x in e.data] == [4, 4]
    assert e.usage is not None
    assert e.usage.prompt_tokens == 2
    assert vertex.received[-1].path.endswith("/models/text-embedding-005:predict")


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.rate_limit(3), RateLimitError),
        (Fault.context_window(limit=100, requested=200), ContextWindowExceededError),
        (Fault.content_policy(), ContentPolicyViolationError),
        (Fault.status(503), ServiceUnavailableError),
        (Fault.status(529), ServiceUnavailableError),
    ],
)
@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
@pytest.mark.parametrize("stream", [False, True])
async def test_errors_map(
    vertex: FakeVertex,
    key_file: Path,
    model: str,
    fault: Fault,
    expected: type[InterlockError],
    stream: bool,
) -> None:
    vertex.always(fault)
    async with Router([dep(vertex, key_file, model)], retry=ONE_TRY) as router:
        with pytest.raises(expected) as info:
            await router.acompletion(model="g", messages=USER, stream=stream)  # type: ignore[call-overload]
    assert type(info.value) is expected
    assert info.value.deployment_id == "g-0"
    if fault.kind == "rate_limit":
        assert info.value.retry_after == pytest.approx(3)
    if fault.kind == "status":
        assert "vertex returned" in str(info.value)


async def test_stream_cut(vertex: FakeVertex, key_file: Path) -> None:
    async with Router([dep(vertex, key_file, CLAUDE)], retry=ONE_TRY) as router:
        vertex.push(Fault.cut_stream(4))
        stream = await router.acompletion(model="g", messages=USER, stream=True)
        with pytest.raises(StreamInterruptedError):
            await collect(stream)


async def test_an_expired_or_unknown_token_is_refused(vertex: FakeVertex) -> None:
    # A deployment whose credentials cannot be loaded at all: a typed error, no leak of
    # google-auth's exception, and the fake never saw a request.
    d = dep(vertex, "/nonexistent/sa.json", GEMINI)
    async with Router([d], retry=ONE_TRY) as router:
        with pytest.raises(AuthenticationError) as info:
            await router.acompletion(model="g", messages=USER)
    assert "vertex credentials (/nonexistent/sa.json) could not be loaded" in str(info.value)
    assert vertex.request_count == 0


async def test_token_endpoint_failure_is_an_authentication_error_and_routed_around(
    vertex: FakeVertex, key_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    other = vertex.service_account(tmp_path / "other.json")
    vertex.token_faults.push(Fault.status(401))
    deployments = [dep(vertex, key_file, GEMINI, id="a"), dep(vertex, other, GEMINI, id="b")]
    async with Router(deployments, retry=RetryPolicy(max_attempts=2), seed=3) as router:
        results = [await router.acompletion(model="g", messages=USER) for _ in range(3)]
        stats = {s.id: s for s in router.statistics().deployments}
    assert all(r.choices[0].message.content for r in results)
    assert stats["a"].failures + stats["b"].failures == 1  # the one whose token failed
    issued = [t for t in vertex.received if t.path == "/token"]
    assert [t.status for t in issued][:1] == [401]
    for rec in caplog.records:
        assert "ya29." not in rec.getMessage()


async def test_tokens_never_leak(
    vertex: FakeVertex, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with Router([dep(vertex, key_file, GEMINI)], retry=ONE_TRY) as router:
        await router.acompletion(model="g", messages=USER)
        token = vertex.received[-1].headers["Authorization"].removeprefix("Bearer ")
        vertex.push(Fault.status(500, f"internal error for token {token}"))
        with pytest.raises(InterlockError) as info:
            await router.acompletion(model="g", messages=USER)
        texts = [str(info.value), repr(info.value), "".join(
            traceback.format_exception(info.value))]  # fmt: skip
        texts += [repr(router), repr(router.parts.transports["vertex"]), repr(router.statistics())]
    assert "[redacted]" in str(info.value)
    texts += [rec.getMessage() for rec in caplog.records]
    for text in texts:
        assert token not in text


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
async def test_deployment_and_call_headers_are_sent(
    vertex: FakeVertex, key_file: Path, model: str
) -> None:
    d = dep(vertex, key_file, model, headers={"x-goog-user-project": "billing-p", "x-team": "a"})
    async with Router([d], retry=ONE_TRY) as router:
        await router.acompletion(model="g", messages=USER, extra_headers={"x-team": "b"})
        stream = await router.acompletion(
            model="g", messages=USER, stream=True, extra_headers={"X-Title": "app"}
        )
        await collect(stream)
    plain, streamed = vertex.received[-2], vertex.received[-1]
    assert plain.headers["x-goog-user-project"] == "billing-p"
    assert plain.headers["x-team"] == "b"  # the call's wins
    assert streamed.headers["x-team"] == "a"
    assert streamed.headers["X-Title"] == "app"
    assert plain.headers["Authorization"].startswith("Bearer ")
