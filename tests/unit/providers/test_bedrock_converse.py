"""OpenAI-shaped requests to Converse bodies and Converse responses back."""

from __future__ import annotations

from typing import Any

import pytest

from interlock import Deployment
from interlock.errors import (
    BadRequestError,
    ContentPolicyViolationError,
    MalformedResponseError,
    UnsupportedParamsError,
)
from interlock.providers.bedrock_converse import build_converse, parse_converse
from interlock.providers.params import MEANINGFUL_PARAMS
from interlock.types import Request

D = Deployment(group="g", id="b-0", provider="bedrock", model="m", aws_region="us-east-1")
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def req(messages: list[dict[str, Any]], mode: str = "drop", **params: Any) -> Request:
    return Request(kind="chat", group="g", messages=messages, params=params,
                   unsupported_params=mode)  # type: ignore[arg-type]  # fmt: skip


def test_messages_merge_and_map() -> None:
    body = build_converse(D, req([
        {"role": "system", "content": "a"},
        {"role": "developer", "content": "b"},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
            {"id": "t2", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "one"},
        {"role": "tool", "tool_call_id": "t2", "content": "two"},
    ], tools=[TOOL], tool_choice={"type": "function", "function": {"name": "f"}}))  # fmt: skip
    assert body["system"] == [{"text": "a"}, {"text": "b"}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == [{"text": "hi"}, {"text": "there"}]
    assert body["messages"][1]["content"][0] == {
        "toolUse": {"toolUseId": "t1", "name": "f", "input": {"x": 1}}
    }
    assert len(body["messages"][2]["content"]) == 2
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "f"}}


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"tool_choice": "none", "tools": [TOOL]}, ["tool_choice"]),
        ({"response_format": {"type": "json_object"}}, ["response_format"]),
        ({"seed": 1, "presence_penalty": 0.5, "n": 2}, ["n", "presence_penalty", "seed"]),
        ({"parallel_tool_calls": False}, ["parallel_tool_calls"]),
    ],
)
def test_unsupported_params_drop_or_raise(params: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(UnsupportedParamsError) as info:
        build_converse(D, req([{"role": "user", "content": "x"}], "raise", **params))
    assert sorted(info.value.params) == names
    meaningful = MEANINGFUL_PARAMS.intersection(names)
    if meaningful:
        # A parameter that changes the answer is never dropped, whatever the mode.
        with pytest.raises(UnsupportedParamsError) as info:
            build_converse(D, req([{"role": "user", "content": "x"}], "drop", **params))
        assert sorted(info.value.params) == sorted(meaningful)
    else:
        body = build_converse(D, req([{"role": "user", "content": "x"}], "drop", **params))
        assert "seed" not in body
    ok = req([{"role": "user", "content": "x"}], "raise", n=1, response_format={"type": "text"},
             parallel_tool_calls=True, stream_options={"include_usage": True})  # fmt: skip
    build_converse(D, ok)


def test_images_and_max_output_tokens() -> None:
    d = D.model_copy(update={"max_output_tokens": 123})
    s3 = {"type": "image_url", "image_url": {"url": "s3://bucket/cat.webp"}}
    body = build_converse(d, req([{"role": "user", "content": [s3]}]))
    assert body["messages"][0]["content"][0] == {
        "image": {"format": "webp", "source": {"s3Location": {"uri": "s3://bucket/cat.webp"}}}
    }
    assert body["inferenceConfig"] == {"maxTokens": 123}
    web = {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}
    with pytest.raises(BadRequestError, match="not http"):
        build_converse(D, req([{"role": "user", "content": [web]}]))
    tiff = {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}
    with pytest.raises(BadRequestError, match="tiff"):
        build_converse(D, req([{"role": "user", "content": [tiff]}]))


def answer(stop: str, *content: dict[str, Any]) -> dict[str, Any]:
    usage = {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5, "cacheReadInputTokens": 4}
    return {"output": {"message": {"role": "assistant", "content": list(content)}},
            "stopReason": stop, "usage": usage}  # fmt: skip


def test_parse_answer_tool_use_and_usage() -> None:
    use = {"toolUse": {"toolUseId": "t", "name": "f", "input": {"a": 1}}}
    r = parse_converse(answer("tool_use", {"text": "let me see"}, {"reasoningContent": {}}, use), D)
    assert r.choices[0].message.content == "let me see"
    assert r.choices[0].message.tool_calls == [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, 2)
    assert parse_converse(answer("max_tokens", {"text": "x"}), D).choices[0].finish_reason == (
        "length"
    )


@pytest.mark.parametrize("stop", ["guardrail_intervened", "content_filtered"])
def test_refusals_are_content_policy_errors(stop: str) -> None:
    with pytest.raises(ContentPolicyViolationError, match=stop):
        parse_converse(answer(stop, {"text": "Sorry, the model cannot answer this question."}), D)


def test_malformed_model_output_is_malformed() -> None:
    with pytest.raises(MalformedResponseError):
        parse_converse(answer("malformed_tool_use"), D)
