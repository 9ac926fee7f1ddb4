"""The OpenAI-compatible transport's bodies and its reading of odd answers.

Shapes from https://platform.openai.com/docs/api-reference/chat/create (requests) and
https://platform.openai.com/docs/api-reference/chat/object; bodies validated by the
openai SDK's request types.
"""

from __future__ import annotations

from typing import Any

import pytest

from interlock import (
    AuthenticationError,
    BadRequestError,
    Deployment,
    InternalServerError,
    RateLimitError,
)
from interlock.presets import PRESETS
from interlock.providers import HttpClient, OpenAITransport
from interlock.providers.openai import error_in_200
from interlock.types import Request
from tests import sdk_contract as sdk

USER = [{"role": "user", "content": "hi"}]
REPLAYED: dict[str, Any] = {
    "role": "assistant",
    "content": "42",
    "reasoning_content": "6*7",
    "reasoning_blocks": [{"type": "thinking", "thinking": "6*7", "signature": "s",
                          "provider": "anthropic"}],
    "annotations": [],
}  # fmt: skip


def deployment(provider: str) -> Deployment:
    return Deployment(group="g", model="m", provider=provider, api_key="k")


def chat_body(provider: str, messages: list[Any], stream: bool = False) -> dict[str, Any]:
    req = Request("chat", "g", messages=messages)
    return OpenAITransport(HttpClient()).chat_body(deployment(provider), req, stream)


def test_stream_usage_only_where_the_preset_accepts_it() -> None:
    # 10: Mistral answers 422 to stream_options.include_usage.
    assert not PRESETS["mistral"].stream_usage
    assert "stream_options" not in chat_body("mistral", USER, stream=True)
    for name in ("openai", "groq", "together", "deepseek", "vllm"):
        body = chat_body(name, USER, stream=True)
        sdk.openai_chat_request(body)
        assert body["stream_options"] == {"include_usage": True}


def test_replayed_assistant_turn_loses_output_only_fields() -> None:
    turns = [*USER, REPLAYED, {"role": "user", "content": "why?"}]
    body = chat_body("openai", turns)
    sdk.openai_chat_request(body)
    assert body["messages"][1] == {"role": "assistant", "content": "42"}
    assert turns[1] is REPLAYED  # the caller's list is left alone
    # DeepSeek's thinking mode takes reasoning_content back.
    assert chat_body("deepseek", turns)["messages"][1] == {
        "role": "assistant",
        "content": "42",
        "reasoning_content": "6*7",
    }
    plain = chat_body("openai", USER)
    assert plain["messages"] is USER  # nothing to strip: no copy


@pytest.mark.parametrize(
    ("error", "cls", "status"),
    [
        # OpenRouter: https://openrouter.ai/docs/api-reference/errors
        ({"code": 429, "message": "Rate limit exceeded"}, RateLimitError, 429),
        ({"code": "401", "message": "No auth credentials found"}, AuthenticationError, 401),
        ({"message": "bad", "type": "invalid_request_error", "code": None}, BadRequestError, 400),
        ({"message": "Upstream error"}, InternalServerError, 500),
    ],
)
def test_error_body_in_http_200_is_mapped(
    error: dict[str, Any], cls: type[Exception], status: int
) -> None:
    err = error_in_200(deployment("openrouter"), {"error": error}, "k")
    assert isinstance(err, cls)
    assert err.status_code == status
    assert error["message"] in str(err)
