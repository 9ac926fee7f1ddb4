"""Pure translation rules of the provider adapters (no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from interlock import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContextWindowExceededError,
    Deployment,
    RateLimitError,
    Router,
    ServiceUnavailableError,
    UnsupportedParamsError,
)
from interlock.providers import AnthropicTransport, GeminiTransport, HttpClient
from interlock.providers.anthropic import anthropic_retry_after
from interlock.providers.anthropic import build_body as anthropic_body
from interlock.providers.gemini import build_body as gemini_body
from interlock.providers.gemini import gemini_error_details
from interlock.providers.params import parse_data_url
from interlock.types import Request

NOW = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
D = Deployment(group="g", model="m", id="g-0", provider="anthropic", api_key="sk-top-secret")
G = Deployment(group="g", model="m", id="g-0", provider="gemini", api_key="sk-top-secret")


def request(messages: list[dict[str, Any]], mode: str = "drop", **params: Any) -> Request:
    return Request("chat", "g", messages=messages, params=params, unsupported_params=mode)  # type: ignore[arg-type]


def test_anthropic_retry_after_reads_exhausted_limit_resets() -> None:
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2025-01-01T00:00:30Z",
        "anthropic-ratelimit-tokens-remaining": "500",
        "anthropic-ratelimit-tokens-reset": "2025-01-01T00:00:05Z",
    }
    assert anthropic_retry_after(headers, now=NOW) == pytest.approx(30)
    del headers["anthropic-ratelimit-requests-remaining"]
    assert anthropic_retry_after(headers, now=NOW) == pytest.approx(5)  # earliest reset
    assert anthropic_retry_after({"retry-after": "9", **headers}, now=NOW) == 9
    assert anthropic_retry_after({}, now=NOW) is None


def test_anthropic_error_mapping() -> None:
    t = AnthropicTransport(HttpClient())
    overloaded = orjson.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    assert isinstance(t._error(D, 529, {}, overloaded, "sk-top-secret"), ServiceUnavailableError)
    too_long = orjson.dumps(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "prompt is too long: 210000 tokens > 200000 maximum",
            },
        }
    )
    assert isinstance(t._error(D, 400, {}, too_long, None), ContextWindowExceededError)
    leaked = orjson.dumps(
        {
            "type": "error",
            "error": {"type": "authentication_error", "message": "bad key sk-top-secret"},
        }
    )
    err = t._error(D, 401, {}, leaked, "sk-top-secret")
    assert isinstance(err, AuthenticationError)
    assert "sk-top-secret" not in str(err)


def test_gemini_error_mapping() -> None:
    t = GeminiTransport(HttpClient())
    body = {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "x.RetryInfo", "retryDelay": "17s"}],
        }
    }
    raw = orjson.dumps(body)
    assert gemini_error_details(raw) == ("RESOURCE_EXHAUSTED", 17.0, "")
    err = t._error(G, 429, {}, raw, None)
    assert isinstance(err, RateLimitError)
    assert err.retry_after == 17.0
    ctx = orjson.dumps(
        {
            "error": {
                "code": 400,
                "status": "INVALID_ARGUMENT",
                "message": "The input token count (3000000) exceeds the maximum number of "
                "tokens allowed (1048576).",
            }
        }
    )
    assert isinstance(t._error(G, 400, {}, ctx, None), ContextWindowExceededError)
    bad_key = orjson.dumps(
        {
            "error": {
                "code": 400,
                "status": "INVALID_ARGUMENT",
                "message": "API key not valid.",
                "details": [{"reason": "API_KEY_INVALID"}],
            }
        }
    )
    assert isinstance(t._error(G, 400, {}, bad_key, None), AuthenticationError)


def test_anthropic_body_merges_turns_and_maps_tool_choice() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    call2 = {**call, "id": "t2"}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "A"},
        {"role": "developer", "content": [{"type": "text", "text": "B"}]},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [call, call2]},
        {"role": "tool", "tool_call_id": "t1", "content": "x"},
        {"role": "tool", "tool_call_id": "t2", "content": "y"},
    ]
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = anthropic_body(
        D,
        request(
            messages,
            tools=tools,
            tool_choice="auto",
            parallel_tool_calls=False,
            max_completion_tokens=9,
        ),
        False,
    )
    assert body["system"] == "A\n\nB"
    assert body["max_tokens"] == 9
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in body["messages"][2]["content"]] == ["t1", "t2"]
    assert body["messages"][1]["content"][0]["input"] == {"a": 1}
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["tools"][0]["input_schema"] == {"type": "object", "properties": {}}


def test_unsupported_rule_per_provider() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    fmt = {"type": "json_object"}
    with pytest.raises(UnsupportedParamsError) as info:
        anthropic_body(D, request(msgs, "raise", seed=3, n=1), False)
    assert info.value.params == ("seed",)
    assert info.value.deployment_id == "g-0"
    assert "seed" not in anthropic_body(D, request(msgs, seed=3), False)
    # A parameter that changes the answer is never dropped, whatever the mode.
    with pytest.raises(UnsupportedParamsError, match="never dropped") as info:
        anthropic_body(D, request(msgs, "drop", n=2, seed=3), False)
    assert info.value.params == ("n",)
    # Gemini has JSON mode and seed, but no user field.
    body = gemini_body(G, request(msgs, "drop", response_format=fmt, seed=4, user="u"))
    assert body["generationConfig"] == {"responseMimeType": "application/json", "seed": 4}
    with pytest.raises(UnsupportedParamsError, match="user"):
        gemini_body(G, request(msgs, "raise", user="u"))


def test_gemini_json_schema_and_images() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    content = [{"type": "image_url", "image_url": {"url": "https://h/p.png?x=1"}}]
    body = gemini_body(
        G,
        request(
            [{"role": "user", "content": content}],
            response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        ),
    )
    assert body["generationConfig"]["responseJsonSchema"] == schema
    assert body["contents"][0]["parts"][0] == {
        "fileData": {"mimeType": "image/png", "fileUri": "https://h/p.png?x=1"}
    }


def test_data_urls() -> None:
    assert parse_data_url("data:image/png;base64,AAAA") == ("image/png", "AAAA")
    assert parse_data_url("https://x/y.png") is None
    with pytest.raises(BadRequestError):
        parse_data_url("data:image/png,AAAA")


def test_presets_and_provider_fields_validate() -> None:
    assert Deployment(group="g", model="m", provider="anthropic").api_base == (
        "https://api.anthropic.com/v1"
    )
    assert Deployment(group="g", model="m", provider="ollama").api_base.endswith(":11434/v1")
    with pytest.raises(ConfigError, match=r"api_base: is required for provider 'azure'"):
        Deployment(group="g", model="m", provider="azure")
    with pytest.raises(ConfigError, match="api_version"):
        Deployment(
            group="g",
            model="m",
            provider="azure",
            api_base="https://r.example",
            api_version="2024-10-21&x=1",
        )
    with pytest.raises(ConfigError, match="max_output_tokens"):
        Deployment(group="g", model="m", max_output_tokens=0)
    with pytest.raises(ConfigError, match="unsupported_params"):
        Router([Deployment(group="g", model="m")], unsupported_params="ignore")  # type: ignore[arg-type]
    router = Router([Deployment(group="g", model="m", provider=p) for p in ("groq", "gemini")])
    assert {d.provider for d in router.deployments} == {"groq", "gemini"}
