"""Every provider adapter through a real Router over loopback sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from interlock import (
    AuthenticationError,
    BadRequestError,
    ChatCompletion,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    Deployment,
    InternalServerError,
    RateLimitError,
    RetryPolicy,
    Router,
    ServiceUnavailableError,
    StreamInterruptedError,
    UnsupportedParamsError,
)
from interlock.testing import FakeAnthropic, FakeAzure, FakeGemini, FakeUpstream, Fault
from tests import sdk_contract as sdk

KEY = "sk-secret-key-123456"
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


def weather_calls(body: dict[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [("get_weather", {"city": "Paris"})] if body.get("tools") else []


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=KEY, tool_calls=weather_calls) as up:
        yield up


@pytest.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(api_key=KEY, tool_calls=weather_calls) as up:
        yield up


@pytest.fixture
async def azure() -> AsyncIterator[FakeAzure]:
    async with FakeAzure(api_key=KEY, deployments=frozenset({"my-gpt4o"})) as up:
        yield up


def router_for(provider: str, url: str, model: str, **kw: Any) -> Router:
    d = Deployment(group="g", provider=provider, model=model, api_base=url, api_key=KEY)
    return Router([d], retry=kw.pop("retry", ONE_TRY), seed=1, **kw)


async def collect(stream: Any) -> tuple[str, list[Any]]:
    text, chunks = [], []
    async for chunk in stream:
        chunks.append(chunk)
        for c in chunk.choices:
            text.append(c.delta.content or "")
    return "".join(text), chunks


def stream_tool_calls(chunks: list[Any]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for c in chunk.choices:
            for tc in c.delta.tool_calls or ():
                entry = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
                entry["id"] = tc.get("id") or entry["id"]
                fn = tc.get("function") or {}
                entry["name"] = fn.get("name") or entry["name"]
                entry["arguments"] += fn.get("arguments") or ""
    return calls


# --- Anthropic --------------------------------------------------------------------


async def test_anthropic_plain_round_trip(anthropic: FakeAnthropic) -> None:
    async with router_for("anthropic", anthropic.url, "claude-x") as router:
        messages = [{"role": "system", "content": "Be brief."}, *USER]
        r = await router.acompletion(model="g", messages=messages, temperature=0.5, stop="END")
    assert r.choices[0].message.content == "Hello from FakeUpstream."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.total_tokens == r.usage.prompt_tokens + 6
    seen = anthropic.received[-1]
    assert seen.path == "/v1/messages"
    assert seen.api_key == KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in seen.headers
    assert seen.body is not None
    assert seen.body["system"] == "Be brief."
    assert seen.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": USER[0]["content"]}]}
    ]
    assert seen.body["max_tokens"] == 4096
    assert seen.body["stop_sequences"] == ["END"]
    assert seen.body["temperature"] == 0.5


async def test_anthropic_stream_round_trip(anthropic: FakeAnthropic) -> None:
    async with router_for("anthropic", anthropic.url, "claude-x") as router:
        stream = await router.acompletion(model="g", messages=USER, stream=True, max_tokens=50)
        text, chunks = await collect(stream)
    assert text == "Hello from FakeUpstream."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert stream.usage is not None
    assert stream.usage.completion_tokens == 6
    body = anthropic.received[-1].body
    assert body is not None
    assert body["stream"] is True
    assert body["max_tokens"] == 50


async def test_anthropic_tool_calls_plain_and_stream(anthropic: FakeAnthropic) -> None:
    async with router_for("anthropic", anthropic.url, "claude-x") as router:
        r = await router.acompletion(
            model="g", messages=USER, tools=[WEATHER_TOOL], tool_choice="required"
        )
        calls = r.choices[0].message.tool_calls
        assert calls is not None
        assert r.choices[0].finish_reason == "tool_calls"
        assert calls[0]["function"]["name"] == "get_weather"
        assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
        sent = anthropic.received[-1].body
        assert sent is not None
        assert sent["tool_choice"] == {"type": "any"}
        assert sent["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]  # type: ignore[index]

        # The tool's answer goes back as a tool_result block after the tool_use.
        follow_up: list[dict[str, Any]] = [
            *USER,
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
        ]
        r2 = await router.acompletion(model="g", messages=follow_up)
        assert r2.choices[0].message.content == "Hello from FakeUpstream."
        sent = anthropic.received[-1].body
        assert sent is not None
        assert sent["messages"][1]["content"][0]["type"] == "tool_use"
        assert sent["messages"][2]["content"][0] == {
            "type": "tool_result",
            "tool_use_id": calls[0]["id"],
            "content": "sunny",
        }

        stream = await router.acompletion(
            model="g", messages=USER, tools=[WEATHER_TOOL], stream=True
        )
        _, chunks = await collect(stream)
    streamed = stream_tool_calls(chunks)
    assert streamed[0]["name"] == "get_weather"
    assert streamed[0]["id"].startswith("toolu_")
    assert json.loads(streamed[0]["arguments"]) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


async def test_anthropic_image_parts(anthropic: FakeAnthropic) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    async with router_for("anthropic", anthropic.url, "claude-x") as router:
        await router.acompletion(model="g", messages=[{"role": "user", "content": content}])
    body = anthropic.received[-1].body
    assert body is not None
    blocks = body["messages"][0]["content"]
    assert blocks[1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "iVBORw0KGgo=",
    }
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.status(529), ServiceUnavailableError),
        (Fault.status(500), InternalServerError),
        (Fault.rate_limit(7), RateLimitError),
        (Fault.context_window(limit=200000, requested=200001), ContextWindowExceededError),
        (Fault.content_policy(), ContentPolicyViolationError),
    ],
)
async def test_anthropic_errors_map(
    anthropic: FakeAnthropic, fault: Fault, expected: type[Exception]
) -> None:
    anthropic.always(fault)
    async with router_for("anthropic", anthropic.url, "claude-x") as router:
        with pytest.raises(expected) as info:
            await router.acompletion(model="g", messages=USER)
    assert type(info.value) is expected
    assert KEY not in str(info.value)
    if fault.kind == "rate_limit":
        assert info.value.retry_after == pytest.approx(7)  # type: ignore[attr-defined]
    if fault.http_status == 529:
        assert info.value.status_code == 529  # type: ignore[attr-defined]


async def test_anthropic_bad_key() -> None:
    async with FakeAnthropic(api_key="other") as up:
        async with router_for("anthropic", up.url, "claude-x") as router:
            with pytest.raises(AuthenticationError) as info:
                await router.acompletion(model="g", messages=USER)
        assert "invalid x-api-key" in str(info.value)
        assert KEY not in str(info.value)
        assert KEY not in repr(info.value)
        assert up.received[-1].status == 401


async def test_anthropic_stream_cut_and_error_event(anthropic: FakeAnthropic) -> None:
    async with router_for("anthropic", anthropic.url, "claude-x") as router:
        anthropic.push(Fault.cut_stream(3))
        stream = await router.acompletion(model="g", messages=USER, stream=True)
        with pytest.raises(StreamInterruptedError):
            await collect(stream)
        overloaded = (
            b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
            b'"message": "Overloaded"}}\n\n'
        )
        anthropic.push(Fault.malformed(overloaded, content_type="text/event-stream"))
        with pytest.raises(ServiceUnavailableError, match="Overloaded"):
            await router.acompletion(model="g", messages=USER, stream=True)


async def test_anthropic_unsupported_params_drop_or_raise(anthropic: FakeAnthropic) -> None:
    async with router_for("anthropic", anthropic.url, "claude-x") as router:
        with pytest.raises(UnsupportedParamsError) as info:
            await router.acompletion(
                model="g", messages=USER, seed=3, logit_bias={"1": 2}, unsupported_params="raise"
            )
        assert info.value.params == ("logit_bias", "seed")
        assert anthropic.request_count == 0  # rejected before anything was sent
        await router.acompletion(
            model="g", messages=USER, seed=3, user="u-1", extra_body={"top_k": 5}
        )
    body = anthropic.received[-1].body
    assert body is not None
    assert "seed" not in body
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["top_k"] == 5


async def test_router_level_raise_rule(anthropic: FakeAnthropic) -> None:
    async with router_for("anthropic", anthropic.url, "c", unsupported_params="raise") as router:
        with pytest.raises(UnsupportedParamsError, match="seed"):
            await router.acompletion(model="g", messages=USER, seed=3)
        r = await router.acompletion(model="g", messages=USER, seed=3, unsupported_params="drop")
    assert r.choices[0].message.content


# --- Gemini -----------------------------------------------------------------------


async def test_gemini_plain_round_trip(gemini: FakeGemini) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        *USER,
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "Sure?"},
    ]
    async with router_for("gemini", gemini.url, "gemini-2.0-flash") as router:
        r = await router.acompletion(model="g", messages=messages, max_tokens=20, top_p=0.9, n=2)
    assert [c.message.content for c in r.choices] == ["Hello from FakeUpstream."] * 2
    assert r.model == "gemini-2.0-flash"
    assert r.usage is not None
    assert r.usage.completion_tokens == 12
    seen = gemini.received[-1]
    assert seen.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == KEY
    assert KEY not in str(seen.headers.get("Host"))
    body = seen.body
    assert body is not None
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["generationConfig"] == {"maxOutputTokens": 20, "topP": 0.9, "candidateCount": 2}


async def test_gemini_stream_round_trip(gemini: FakeGemini) -> None:
    async with router_for("gemini", gemini.url, "gemini-2.0-flash") as router:
        stream = await router.acompletion(model="g", messages=USER, stream=True)
        text, chunks = await collect(stream)
    assert text == "Hello from FakeUpstream."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert stream.usage is not None
    assert stream.usage.completion_tokens == 6
    assert gemini.received[-1].path.endswith(":streamGenerateContent")


async def test_gemini_tool_calls(gemini: FakeGemini) -> None:
    async with router_for("gemini", gemini.url, "gemini-x") as router:
        tool_choice = {"type": "function", "function": {"name": "get_weather"}}
        r = await router.acompletion(
            model="g", messages=USER, tools=[WEATHER_TOOL], tool_choice=tool_choice
        )
        calls = r.choices[0].message.tool_calls
        assert calls is not None
        assert r.choices[0].finish_reason == "tool_calls"
        assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
        sent = gemini.received[-1].body
        assert sent is not None
        assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
        assert sent["toolConfig"] == {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        }
        # The assistant turn goes back as it came (to_dict), thought signature included.
        follow_up: list[dict[str, Any]] = [
            *USER,
            r.choices[0].message.to_dict(),
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp": 21}'},
        ]
        await router.acompletion(model="g", messages=follow_up)
        sent = gemini.received[-1].body
        assert sent is not None
        part = sent["contents"][1]["parts"][0]
        assert part["functionCall"]["name"] == "get_weather"
        assert part["functionCall"]["id"] == calls[0]["id"]
        assert part["thoughtSignature"]
        assert sent["contents"][2]["parts"][0]["functionResponse"] == {
            "id": calls[0]["id"],
            "name": "get_weather",
            "response": {"temp": 21},
        }
        # Without the signature Gemini 3 refuses the turn (so does the fake).
        bare: list[dict[str, Any]] = [
            *USER,
            {"role": "assistant", "content": None, "tool_calls": calls},
            follow_up[2],
        ]
        with pytest.raises(BadRequestError, match="thought_signature"):
            await router.acompletion(model="g", messages=bare)
        stream = await router.acompletion(
            model="g", messages=USER, tools=[WEATHER_TOOL], stream=True
        )
        _, chunks = await collect(stream)
    streamed = stream_tool_calls(chunks)
    assert streamed[0]["name"] == "get_weather"
    assert json.loads(streamed[0]["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.rate_limit(12), RateLimitError),
        (Fault.status(503), ServiceUnavailableError),
        (Fault.status(500), InternalServerError),
        (Fault.context_window(limit=1048576, requested=2000000), ContextWindowExceededError),
        (Fault.content_policy(), ContentPolicyViolationError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_errors_map(
    gemini: FakeGemini, fault: Fault, expected: type[Exception], stream: bool
) -> None:
    gemini.always(fault)
    async with router_for("gemini", gemini.url, "gemini-x") as router:
        with pytest.raises(expected) as info:
            await router.acompletion(model="g", messages=USER, stream=stream)  # type: ignore[call-overload]
    assert type(info.value) is expected
    if fault.kind == "rate_limit":
        assert info.value.retry_after == pytest.approx(12)  # type: ignore[attr-defined]


async def test_gemini_bad_key_never_leaks() -> None:
    async with (
        FakeGemini(api_key="the-right-one") as up,
        router_for("gemini", up.url, "gemini-x") as router,
    ):
        with pytest.raises(AuthenticationError) as info:
            await router.acompletion(model="g", messages=USER)
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)
    assert "API key not valid" in str(info.value)


async def test_gemini_embeddings_and_extra_body(gemini: FakeGemini) -> None:
    async with router_for("gemini", gemini.url, "text-embedding-004") as router:
        e = await router.aembedding(model="g", input=["a", "b"], dimensions=4)
        assert [len(x.embedding) for x in e.data] == [4, 4]
        await router.acompletion(
            model="g", messages=USER, temperature=0.2, extra_body={"generationConfig": {"topK": 3}}
        )
    body = gemini.received[-1].body
    assert body is not None
    assert body["generationConfig"] == {"temperature": 0.2, "topK": 3}
    assert gemini.received[0].path == "/v1beta/models/text-embedding-004:batchEmbedContents"


async def test_gemini_stream_cut(gemini: FakeGemini) -> None:
    gemini.push(Fault.cut_stream(1))
    async with router_for("gemini", gemini.url, "gemini-x") as router:
        stream = await router.acompletion(model="g", messages=USER, stream=True)
        with pytest.raises(StreamInterruptedError):
            await collect(stream)


# --- Azure and the OpenAI-compatible family -----------------------------------------


async def test_azure_round_trips(azure: FakeAzure) -> None:
    async with router_for("azure", azure.url, "my-gpt4o") as router:
        r = await router.acompletion(model="g", messages=USER)
        stream = await router.acompletion(model="g", messages=USER, stream=True)
        text, _ = await collect(stream)
        e = await router.aembedding(model="g", input="hi")
    assert r.choices[0].message.content == text == "Hello from FakeUpstream."
    assert len(e.data) == 1
    seen = azure.received[0]
    assert seen.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert seen.headers["api-key"] == KEY
    assert "Authorization" not in seen.headers
    assert seen.body is not None
    assert "model" not in seen.body


async def test_azure_content_filter_results_survive(azure: FakeAzure) -> None:
    # Azure adds content filtering results to every completion (prompt_filter_results
    # and per-choice content_filter_results; Azure OpenAI REST reference, "Chat
    # completions"): a result keeps them in `to_dict()`, and the openai SDK's type still
    # accepts it.
    async with router_for("azure", azure.url, "my-gpt4o") as router:
        r = await router.acompletion(model="g", messages=USER)
    wire = r.to_dict()
    [prompt] = wire["prompt_filter_results"]
    assert prompt["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
    assert wire["choices"][0]["content_filter_results"]["violence"]["severity"] == "safe"
    assert sdk.openai_chat(wire).choices[0].message.content == r.choices[0].message.content


async def test_azure_errors(azure: FakeAzure) -> None:
    azure.always(Fault.content_policy())
    async with router_for("azure", azure.url, "my-gpt4o") as router:
        with pytest.raises(ContentPolicyViolationError):
            await router.acompletion(model="g", messages=USER)
        azure.always(Fault.rate_limit(2.5, header="ms"))
        with pytest.raises(RateLimitError) as info:
            await router.acompletion(model="g", messages=USER)
    assert info.value.retry_after == pytest.approx(2.5)


async def test_openai_compatible_preset_uses_bearer_auth() -> None:
    assert Deployment(group="g", model="m", provider="groq").api_base == (
        "https://api.groq.com/openai/v1"
    )
    async with FakeUpstream(api_key=KEY) as up:
        async with router_for("groq", up.url, "llama-3.1-8b") as router:
            r = await router.acompletion(model="g", messages=USER, extra_body={"service_tier": "x"})
        assert r.choices[0].message.content
        assert up.received[-1].api_key == KEY
        assert up.received[-1].body is not None
        assert up.received[-1].body["service_tier"] == "x"


# --- cross-provider fallback --------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_down_falls_back_to_anthropic(anthropic: FakeAnthropic, stream: bool) -> None:
    async with FakeUpstream(api_key=KEY) as openai:
        openai.always(Fault.status(503))
        deployments = [
            Deployment(
                group="gpt-4o", provider="openai", model="gpt-4o", api_base=openai.url, api_key=KEY
            ),
            Deployment(
                group="claude",
                provider="anthropic",
                model="claude-sonnet",
                api_base=anthropic.url,
                api_key=KEY,
            ),
        ]
        async with Router(deployments, fallbacks={"gpt-4o": ["claude"]}, seed=1) as router:
            if stream:
                s = await router.acompletion(model="gpt-4o", messages=USER, stream=True, seed=7)
                text, chunks = await collect(s)
                assert s.group == "claude"
                assert chunks[0].object == "chat.completion.chunk"
            else:
                r = await router.acompletion(model="gpt-4o", messages=USER, seed=7)
                assert isinstance(r, ChatCompletion)
                assert r.group == "claude"
                assert r.object == "chat.completion"
                assert r.to_dict()["choices"][0]["message"]["role"] == "assistant"
                text = r.choices[0].message.content or ""
        assert text == "Hello from FakeUpstream."
        assert openai.request_count >= 1
        assert anthropic.request_count == 1
        stats = {s.id: s for s in router.statistics().deployments}
        assert stats["gpt-4o-0"].failures >= 1
        assert stats["claude-0"].successes == 1


# --- issue 16: reasoning round trip, caching, server-side errors --------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_thinking_tool_loop_round_trip(
    anthropic: FakeAnthropic, stream: bool
) -> None:
    # With thinking on, the turn after a tool call must carry that call's thinking
    # block back, signed (the fake refuses it otherwise, as the API does).
    params: dict[str, Any] = {"tools": [WEATHER_TOOL], "reasoning_effort": "low"}
    async with router_for("anthropic", anthropic.url, "claude-x") as router:
        if stream:
            s = await router.acompletion(model="g", messages=USER, stream=True, **params)
            _, chunks = await collect(s)
            deltas = [c.choices[0].delta for c in chunks if c.choices]
            calls = stream_tool_calls(chunks)
            assistant: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "reasoning_content": "".join(d.reasoning_content or "" for d in deltas),
                "reasoning_blocks": [b for d in deltas for b in d.reasoning_blocks or ()],
                "tool_calls": [
                    {"id": c["id"], "type": "function",
                     "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in calls.values()
                ],
            }  # fmt: skip
        else:
            r = await router.acompletion(model="g", messages=USER, **params)
            assistant = r.choices[0].message.to_dict()
        assert assistant["reasoning_content"] == "Thinking it over."
        call_id = assistant["tool_calls"][0]["id"]
        turns = [*USER, assistant, {"role": "tool", "tool_call_id": call_id, "content": "21C"}]
        follow = await router.acompletion(model="g", messages=turns, **params)
        assert follow.choices[0].finish_reason == "tool_calls"
        # Dropping the reasoning is what the API refuses.
        bare = {k: v for k, v in assistant.items() if not k.startswith("reasoning")}
        with pytest.raises(BadRequestError, match="thinking"):
            await router.acompletion(
                model="g",
                messages=[*USER, bare, {"role": "tool", "tool_call_id": call_id, "content": "x"}],
                **params,
            )


async def test_anthropic_prompt_cache_usage_and_spend(anthropic: FakeAnthropic) -> None:
    d = Deployment(
        group="g", provider="anthropic", model="claude-x", api_base=anthropic.url, api_key=KEY,
        input_cost_per_token=3e-6, output_cost_per_token=15e-6,
        cache_read_cost_per_token=0.3e-6, cache_write_cost_per_token=3.75e-6,
    )  # fmt: skip
    manual = "A long manual. " * 400
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [
            {"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}}]},
        *USER,
    ]  # fmt: skip
    async with Router([d], retry=ONE_TRY, seed=1) as router:
        first = await router.acompletion(model="g", messages=messages)
        second = await router.acompletion(model="g", messages=messages)
        spend = router.statistics().deployments[0]
    assert first.usage is not None
    assert second.usage is not None
    assert first.usage.cache_creation_tokens > 0
    assert second.usage.cached_tokens == first.usage.cache_creation_tokens
    assert second.usage.prompt_tokens == first.usage.prompt_tokens
    sent = anthropic.received[-1].body
    assert sent is not None
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    u = second.usage
    cheap = (u.prompt_tokens - u.cached_tokens) * 3e-6 + u.cached_tokens * 0.3e-6
    assert cheap < u.prompt_tokens * 3e-6 / 5  # the cache-heavy call costs far less
    assert spend.spend == pytest.approx(
        (first.usage.prompt_tokens - first.usage.cache_creation_tokens) * 3e-6
        + first.usage.cache_creation_tokens * 3.75e-6
        + cheap
        + (first.usage.completion_tokens + u.completion_tokens) * 15e-6
    )


@pytest.mark.parametrize("provider", ["openai", "azure"])
async def test_base64_embeddings_are_decoded_to_floats(azure: FakeAzure, provider: str) -> None:
    # https://platform.openai.com/docs/api-reference/embeddings/create#encoding_format
    async with FakeUpstream(api_key=KEY) as up:
        url, model = (up.url, "text-embedding-3-small") if provider == "openai" else (
            azure.url, "my-gpt4o")  # fmt: skip
        async with router_for(provider, url, model) as router:
            floats = await router.aembedding(model="g", input=["a", "b"])
            packed = await router.aembedding(model="g", input=["a", "b"], encoding_format="base64")
    for got, want in zip(packed.data, floats.data, strict=True):
        assert got.embedding == pytest.approx(want.embedding, abs=1e-6)
    assert all(isinstance(v, float) for v in packed.data[0].embedding)
    assert len(packed.data[0].embedding) == 8


async def test_openai_compatible_error_with_http_200() -> None:
    # Some compatible servers and gateways answer 200 with an error object.
    async with FakeUpstream(api_key=KEY) as up:
        body = b'{"error": {"code": 429, "message": "Rate limit exceeded: free-models-per-min"}}'
        up.push(Fault.malformed(body))
        async with router_for("openrouter", up.url, "m") as router:
            with pytest.raises(RateLimitError, match="free-models-per-min"):
                await router.acompletion(model="g", messages=USER)


# --- issue 16: extra headers, per deployment and per call -----------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_deployment_and_call_headers_reach_every_provider(
    anthropic: FakeAnthropic, gemini: FakeGemini, azure: FakeAzure, stream: bool
) -> None:
    async with FakeUpstream(api_key=KEY) as openai:
        fakes: list[tuple[str, FakeUpstream, str]] = [
            ("openai", openai, "gpt-4o"), ("azure", azure, "my-gpt4o"),
            ("anthropic", anthropic, "claude-x"), ("gemini", gemini, "gemini-x"),
        ]  # fmt: skip
        for provider, fake, model in fakes:
            d = Deployment(
                group="g", provider=provider, model=model, api_base=fake.url, api_key=KEY,
                headers={"x-portkey-provider": "openai", "anthropic-beta": "b1"},
            )  # fmt: skip
            assert "portkey" not in repr(d)
            async with Router([d], retry=ONE_TRY, seed=1) as router:
                extra = {"anthropic-beta": "b2", "X-Title": "app"}
                if stream:
                    s = await router.acompletion(
                        model="g", messages=USER, stream=True, extra_headers=extra
                    )
                    await collect(s)
                else:
                    await router.acompletion(model="g", messages=USER, extra_headers=extra)
            seen = fake.received[-1]
            assert seen.headers["x-portkey-provider"] == "openai"
            assert seen.headers["anthropic-beta"] == "b2"  # the call's wins
            assert seen.headers["X-Title"] == "app"
            assert seen.body is not None
            assert "extra_headers" not in seen.body
