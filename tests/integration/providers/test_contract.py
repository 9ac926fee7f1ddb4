"""What the fakes answer, and what interlock returns, validated by the official SDKs'
response types over real loopback sockets.

(b) Every fake's responses: `FakeUpstream`/`FakeAzure` as openai `ChatCompletion`,
`ChatCompletionChunk`, `CreateEmbeddingResponse`; `FakeAnthropic` as anthropic
`Message` and stream events; `FakeGemini` as google-genai `GenerateContentResponse`
and `EmbedContentResponse`. (c) Every interlock result's `to_dict()`, whichever
provider served it, as the openai types (the shape interlock promises).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import orjson
import pytest

from interlock import Deployment, Router
from interlock.testing import FakeAnthropic, FakeAzure, FakeGemini, FakeUpstream
from tests import sdk_contract as sdk

KEY = "sk-contract-test-0001"
USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def weather_calls(body: dict[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    if not body.get("tools"):
        return []
    return [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]


Fakes = dict[str, FakeUpstream]


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with AsyncExitStack() as stack:
        yield {
            "openai": await stack.enter_async_context(FakeUpstream(api_key=KEY)),
            "azure": await stack.enter_async_context(FakeAzure(api_key=KEY)),
            "anthropic": await stack.enter_async_context(
                FakeAnthropic(api_key=KEY, tool_calls=weather_calls)
            ),
            "gemini": await stack.enter_async_context(
                FakeGemini(api_key=KEY, tool_calls=weather_calls)
            ),
        }


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> bytes:
    async with session.post(url, data=orjson.dumps(body), headers=headers) as r:
        raw = await r.read()
        assert r.status == 200, raw
        return raw


# --- (b) the fakes' own responses -------------------------------------------------


@pytest.mark.parametrize("n", [1, 2])
async def test_fake_openai_and_azure_responses(
    fakes: Fakes, session: aiohttp.ClientSession, n: int
) -> None:
    # https://platform.openai.com/docs/api-reference/chat/object and /chat/streaming
    bearer = {"Authorization": f"Bearer {KEY}"}
    azure = {"api-key": KEY}
    targets = [
        (fakes["openai"].url, bearer, {"model": "gpt-4o"}),
        (f"{fakes['azure'].url}/openai/deployments/d", azure, {}),
    ]
    for base, headers, model in targets:
        query = "" if model else "?api-version=2024-10-21"
        body = {**model, "messages": USER, "n": n}
        sdk.openai_chat(await post(session, f"{base}/chat/completions{query}", body, headers))
        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        raw = await post(session, f"{base}/chat/completions{query}", streamed, headers)
        for data in sdk.sse_data(raw):
            sdk.openai_chunk(data)
        embed = {**model, "input": ["a", "b"], "encoding_format": "float"}
        sdk.openai_embedding(await post(session, f"{base}/embeddings{query}", embed, headers))


@pytest.mark.parametrize("tools", [False, True])
async def test_fake_anthropic_responses(
    fakes: Fakes, session: aiohttp.ClientSession, tools: bool
) -> None:
    # https://docs.anthropic.com/en/api/messages and /en/docs/build-with-claude/streaming
    url = f"{fakes['anthropic'].url}/messages"
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body: dict[str, Any] = {"model": "claude-x", "max_tokens": 100, "messages": USER}
    if tools:
        body["tools"] = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    message = sdk.anthropic_message(await post(session, url, body, headers))
    assert (message.stop_reason == "tool_use") is tools
    raw = await post(session, url, {**body, "stream": True}, headers)
    kinds = [sdk.anthropic_event(data) for data in sdk.sse_data(raw)]
    assert kinds


@pytest.mark.parametrize(("tools", "n"), [(False, 1), (False, 2), (True, 1)])
async def test_fake_gemini_responses(
    fakes: Fakes, session: aiohttp.ClientSession, tools: bool, n: int
) -> None:
    # https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse
    base = f"{fakes['gemini'].url}/models/gemini-2.5-flash"
    headers = {"x-goog-api-key": KEY}
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"candidateCount": n},
    }
    if tools:
        body["tools"] = [{"functionDeclarations": [{"name": "get_weather"}]}]
    sdk.gemini_response(await post(session, f"{base}:generateContent", body, headers))
    raw = await post(session, f"{base}:streamGenerateContent?alt=sse", body, headers)
    for data in sdk.sse_data(raw):
        sdk.gemini_response(data)
    # https://ai.google.dev/api/embeddings#method:-models.batchembedcontents
    requests = {"requests": [{"model": "models/e", "content": {"parts": [{"text": "a"}]}}]}
    sdk.gemini_embed_response(await post(session, f"{base}:batchEmbedContents", requests, headers))


# --- (c) interlock's results, whichever provider served them ------------------------


def router_for(fakes: Fakes, provider: str) -> Router:
    model = {"azure": "my-gpt4o", "anthropic": "claude-x", "gemini": "gemini-2.5-flash"}
    d = Deployment(
        group="g",
        provider=provider,
        model=model.get(provider, "gpt-4o"),
        api_base=fakes[provider].url,
        api_key=KEY,
    )
    return Router([d], seed=1)


PROVIDERS = ["openai", "azure", "anthropic", "gemini"]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("tools", [False, True])
async def test_chat_results_to_dict(fakes: Fakes, provider: str, tools: bool) -> None:
    params: dict[str, Any] = {"tools": [WEATHER]} if tools else {}
    async with router_for(fakes, provider) as router:
        r = await router.acompletion(model="g", messages=USER, **params)
    sdk.openai_chat(r.to_dict())


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("tools", [False, True])
async def test_stream_chunks_to_dict(fakes: Fakes, provider: str, tools: bool) -> None:
    params: dict[str, Any] = {"tools": [WEATHER]} if tools else {}
    async with router_for(fakes, provider) as router:
        stream = await router.acompletion(model="g", messages=USER, stream=True, **params)
        chunks = [chunk async for chunk in stream]
    assert chunks
    for chunk in chunks:
        sdk.openai_chunk(chunk.to_dict())


@pytest.mark.parametrize("provider", ["openai", "azure", "gemini"])
async def test_embedding_results_to_dict(fakes: Fakes, provider: str) -> None:
    async with router_for(fakes, provider) as router:
        e = await router.aembedding(model="g", input=["a", "b"])
    sdk.openai_embedding(e.to_dict())
