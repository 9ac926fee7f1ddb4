"""Every request body the transports build, validated by the official SDK's request
types (anthropic `MessageCreateParams`, openai `CompletionCreateParams` and
`EmbeddingCreateParams`, the `google.genai` types of each generateContent field).

The requests are OpenAI-shaped, as callers send them (chat reference:
https://platform.openai.com/docs/api-reference/chat/create); what each provider
should receive is in its own reference: https://docs.anthropic.com/en/api/messages,
https://ai.google.dev/api/generate-content.
"""

from __future__ import annotations

from typing import Any

import pytest

from interlock import Deployment, UnsupportedParamsError
from interlock.providers import AzureOpenAITransport, HttpClient, OpenAITransport
from interlock.providers.anthropic import build_body as anthropic_body
from interlock.providers.gemini import build_body as gemini_body
from interlock.types import Request
from tests import sdk_contract as sdk

ANTHROPIC = Deployment(group="g", model="claude-sonnet-4-5", provider="anthropic", api_key="k")
GEMINI = Deployment(group="g", model="gemini-2.5-flash", provider="gemini", api_key="k")
OPENAI = Deployment(group="g", model="gpt-4o", api_key="k")
AZURE = Deployment(
    group="g", model="my-gpt4o", provider="azure", api_base="https://r.openai.azure.com"
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
STRICT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": ["string", "null"], "enum": ["C", "F", None]},
        "kind": {"const": "forecast"},
    },
    "required": ["city", "unit", "kind"],
    "additionalProperties": False,
}
STRICT_TOOL = {
    "type": "function",
    "function": {"name": "forecast", "parameters": STRICT_SCHEMA, "strict": True},
}
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
CALLS = [
    {"id": "call_1", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
    {"id": "call_2", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
]  # fmt: skip
TOOL_TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": None, "tool_calls": CALLS},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
]
# An assistant turn as interlock returns it (`message.to_dict()`), replayed.
REPLAYED: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "reasoning_content": "The user wants the weather.",
        "reasoning_blocks": [
            {"type": "thinking", "thinking": "The user wants the weather.",
             "signature": "EqQBCkYIBhgCIkB", "provider": "anthropic"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy", "provider": "anthropic"},
            {"type": "thinking", "thinking": "", "signature": "CiQB0e2KbQ==",
             "provider": "gemini", "tool_call_id": "call_1"},
        ],
        "tool_calls": CALLS[:1],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
]  # fmt: skip
CACHED: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": [
            {"type": "text", "text": "A long manual.", "cache_control": {"type": "ephemeral"}}
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "A long document.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Summarise it."},
        ],
    },
]
USER = [{"role": "user", "content": "hi"}]

# name -> (messages, params, OpenAI-shaped: the OpenAI SDK types accept it as sent)
CASES: dict[str, tuple[list[dict[str, Any]], dict[str, Any], bool]] = {
    "plain": (USER, {}, True),
    "sampling": (
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            *USER,
        ],
        {"temperature": 0.5, "top_p": 0.9, "max_tokens": 100, "stop": ["END"], "user": "u1"},
        True,
    ),
    "images": (
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": PNG}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            }
        ],
        {},
        True,
    ),
    "tool loop": (TOOL_TURNS, {"tools": [WEATHER], "tool_choice": "auto"}, True),
    "tool_choice required": (USER, {"tools": [WEATHER], "tool_choice": "required"}, True),
    "tool_choice function": (
        USER,
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
        True,
    ),
    "tool_choice none, serial": (
        USER,
        {"tools": [WEATHER], "tool_choice": "none", "parallel_tool_calls": False},
        True,
    ),
    "strict tool": (USER, {"tools": [STRICT_TOOL]}, True),
    "json_object": (USER, {"response_format": {"type": "json_object"}}, True),
    "json_schema": (
        USER,
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "forecast", "schema": STRICT_SCHEMA, "strict": True},
            }
        },
        True,
    ),
    "reasoning_effort": (USER, {"reasoning_effort": "low", "max_tokens": 4000}, True),
    "cache_control": (CACHED, {}, False),
    "replayed reasoning": (REPLAYED, {"tools": [WEATHER]}, True),
}

# Before issue 16 the SDKs rejected five of these (tool_choice none with parallel calls
# off for anthropic; strict schemas for gemini, as tools and as response_format;
# replayed reasoning for openai and azure). Each is fixed; none is expected to fail.


def request(messages: list[dict[str, Any]], params: dict[str, Any]) -> Request:
    return Request("chat", "g", messages=messages, params=dict(params))


def body_for(provider: str, req: Request, stream: bool) -> dict[str, Any]:
    if provider == "anthropic":
        return anthropic_body(ANTHROPIC, req, stream)
    if provider == "gemini":
        return gemini_body(GEMINI, req)
    if provider == "azure":
        return AzureOpenAITransport(HttpClient()).chat_body(AZURE, req, stream)
    return OpenAITransport(HttpClient()).chat_body(OPENAI, req, stream)


def azure_request(body: dict[str, Any]) -> None:
    # Azure takes the model from the deployment in the URL; the SDK's type requires one.
    assert "model" not in body
    sdk.openai_chat_request({**body, "model": AZURE.model})


VALIDATE = {
    "anthropic": sdk.anthropic_request,
    "gemini": sdk.gemini_request,
    "openai": sdk.openai_chat_request,
    "azure": azure_request,
}


def _params() -> list[Any]:
    out = []
    for name, (_, _, openai_shaped) in CASES.items():
        for provider in VALIDATE:
            if provider in ("openai", "azure") and not openai_shaped:
                continue
            for stream in (False, True):
                tag = f"{name}-{provider}-{'stream' if stream else 'plain'}"
                out.append(pytest.param(name, provider, stream, id=tag))
    return out


@pytest.mark.parametrize(("case", "provider", "stream"), _params())
def test_request_body_validates_against_sdk(case: str, provider: str, stream: bool) -> None:
    messages, params, _ = CASES[case]
    try:
        body = body_for(provider, request(messages, params), stream)
    except UnsupportedParamsError:
        pytest.fail(f"{provider} refused {case} under unsupported_params='drop'")
    VALIDATE[provider](body)


def test_openai_embedding_bodies_validate() -> None:
    t = OpenAITransport(HttpClient())
    for params in ({}, {"dimensions": 8, "encoding_format": "float", "user": "u"}):
        for given in ("hi", ["a", "b"], [1, 2, 3]):
            req = Request("embedding", "g", input=given, params=dict(params))
            sdk.openai_embedding_request(t.embedding_body(OPENAI, req))
            body = AzureOpenAITransport(HttpClient()).embedding_body(AZURE, req)
            assert "model" not in body
            sdk.openai_embedding_request({**body, "model": AZURE.model})


def test_contract_counts() -> None:
    # The harness itself: a body with an unknown field fails; good ones are counted.
    before = sum(sdk.COUNTS.values())
    sdk.anthropic_request({"model": "m", "max_tokens": 1, "messages": USER})
    with pytest.raises(ValueError, match="Extra inputs"):
        sdk.anthropic_request({"model": "m", "max_tokens": 1, "messages": USER, "n": 1})
    bogus = [{"role": "user", "content": [{"type": "text", "text": "x", "cache": 1}]}]
    with pytest.raises(AssertionError, match="response model"):
        sdk.anthropic_request({"model": "m", "max_tokens": 1, "messages": bogus})
    with pytest.raises(ValueError, match="Extra inputs"):
        sdk.openai_chat_request({"model": "m", "messages": USER, "bogus": 1})
    with pytest.raises(AssertionError, match="does not define"):
        sdk.gemini_request({"contents": [], "bogus": 1})
    assert sum(sdk.COUNTS.values()) == before + 1
