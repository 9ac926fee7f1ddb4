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
from interlock.providers.bedrock_converse import build_converse, parse_converse, usage_of
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


CLAUDE_D = D.model_copy(update={"model": "us.anthropic.claude-sonnet-4-20250514-v1:0"})
SIGNED = {"reasoningContent": {"reasoningText": {"text": "Think.", "signature": "sig-1"}}}
REDACTED = {"reasoningContent": {"redactedContent": "ZW5jcnlwdGVk"}}


def test_reasoning_content_blocks_become_reasoning() -> None:
    use = {"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}
    unsigned = {"reasoningContent": {"reasoningText": {"text": " More."}}}
    r = parse_converse(answer("tool_use", SIGNED, REDACTED, unsigned, {"text": "ok"}, use), D)
    message = r.choices[0].message
    assert message.content == "ok"
    assert message.reasoning_content == "Think. More."
    # Only what Bedrock signed (or redacted) is kept to send back; unsigned reasoning
    # text (models that do not sign theirs) is the text alone.
    assert message.reasoning_blocks == [
        {"type": "thinking", "thinking": "Think.", "signature": "sig-1", "provider": "bedrock"},
        {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk", "provider": "bedrock"},
    ]
    assert message.to_dict()["reasoning_blocks"] == message.reasoning_blocks
    plain = parse_converse(answer("end_turn", {"text": "x"}), D).choices[0].message
    assert (plain.reasoning_content, plain.reasoning_blocks) == (None, None)


def test_reasoning_blocks_go_back_first_in_their_assistant_turn() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    blocks = [
        {"type": "thinking", "thinking": "Think.", "signature": "sig-1", "provider": "bedrock"},
        {"type": "thinking", "thinking": "theirs", "signature": "a", "provider": "anthropic"},
        {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk", "provider": "bedrock"},
    ]
    body = build_converse(D, req([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "let me see", "tool_calls": [call],
         "reasoning_blocks": blocks, "reasoning_content": "Think."},
        {"role": "tool", "tool_call_id": "t1", "content": "one"},
    ], tools=[TOOL]))  # fmt: skip
    assert body["messages"][1]["content"] == [
        SIGNED,
        REDACTED,
        {"text": "let me see"},
        {"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}},
    ]


@pytest.mark.parametrize(
    ("effort", "params", "thinking", "max_tokens"),
    [
        ("low", {}, {"type": "enabled", "budget_tokens": 2048}, 4096 + 2048),
        ("high", {"max_tokens": 20000}, {"type": "enabled", "budget_tokens": 16384}, 20000),
        ("max", {"max_completion_tokens": 5000}, {"type": "enabled", "budget_tokens": 4999}, 5000),
        ("none", {}, {"type": "disabled"}, None),
    ],
)
def test_reasoning_effort_is_claude_thinking(
    effort: str, params: dict[str, Any], thinking: dict[str, Any], max_tokens: int | None
) -> None:
    extra = {"additionalModelRequestFields": {"top_k": 5}}
    messages = [{"role": "user", "content": "x"}]
    body = build_converse(
        CLAUDE_D, req(messages, "raise", reasoning_effort=effort, extra_body=extra, **params)
    )
    assert body["additionalModelRequestFields"] == {"thinking": thinking, "top_k": 5}
    assert body.get("inferenceConfig", {}).get("maxTokens") == max_tokens


def test_reasoning_effort_budget_is_added_to_the_deployments_max_output_tokens() -> None:
    d = CLAUDE_D.model_copy(update={"max_output_tokens": 1000})
    body = build_converse(d, req([{"role": "user", "content": "x"}], reasoning_effort="minimal"))
    assert body["inferenceConfig"]["maxTokens"] == 1000 + 1024
    with pytest.raises(BadRequestError, match="max_tokens > 1024"):
        build_converse(CLAUDE_D, req([{"role": "user", "content": "x"}], reasoning_effort="low",
                                     max_tokens=1024))  # fmt: skip
    with pytest.raises(BadRequestError, match="reasoning_effort must be"):
        build_converse(CLAUDE_D, req([{"role": "user", "content": "x"}], reasoning_effort="lots"))


def test_reasoning_effort_is_unsupported_for_other_model_families() -> None:
    llama = D.model_copy(update={"model": "meta.llama3-1-70b-instruct-v1:0"})
    with pytest.raises(UnsupportedParamsError) as info:
        build_converse(llama, req([{"role": "user", "content": "x"}], "raise",
                                  reasoning_effort="low"))  # fmt: skip
    assert list(info.value.params) == ["reasoning_effort"]
    body = build_converse(llama, req([{"role": "user", "content": "x"}], reasoning_effort="low"))
    assert "additionalModelRequestFields" not in body
    assert "inferenceConfig" not in body


def test_cache_tokens_are_prompt_token_details() -> None:
    u = {"inputTokens": 3, "outputTokens": 2, "cacheReadInputTokens": 4,
         "cacheWriteInputTokens": 5}  # fmt: skip
    usage = usage_of(u)
    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_creation_tokens) == (12, 4, 5)
    assert usage.to_dict()["prompt_tokens_details"] == {"cached_tokens": 4, "cache_write_tokens": 5}
    bare = usage_of({"inputTokens": 3, "outputTokens": 2})
    assert bare is not None
    assert bare.prompt_tokens_details is None
