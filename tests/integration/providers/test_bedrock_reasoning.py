"""Reasoning through Bedrock's Converse and ConverseStream against `FakeBedrock`:
``reasoningContent`` blocks and deltas as `reasoning_content` / `reasoning_blocks`, and
back again in a tool loop with Claude's thinking on.

Wire shapes: ReasoningContentBlock https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ReasoningContentBlock.html
and ReasoningContentBlockDelta https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ReasoningContentBlockDelta.html.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest

from interlock import BadRequestError, Deployment, RetryPolicy, Router
from interlock.testing import FakeBedrock, Fault
from interlock.testing.eventstream import event_frame
from interlock.testing.fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
EVENTS = "application/vnd.amazon.eventstream"


def until_answered(body: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Call the tool once; answer in text once its result is in the last turn."""
    last = body["messages"][-1]["content"]
    if not body.get("toolConfig") or any("toolResult" in b for b in last):
        return []
    return [("get_weather", {"city": "Paris"})]


def router_for(up: FakeBedrock, model: str = CLAUDE) -> Router:
    d = Deployment(
        group="g", provider="bedrock", model=model, api_base=up.url, aws_region="us-east-1",
        aws_access_key_id=TEST_ACCESS_KEY_ID, aws_secret_access_key=TEST_SECRET_ACCESS_KEY,
    )  # fmt: skip
    return Router([d], retry=RetryPolicy(max_attempts=1, max_wait=0))


async def gather(stream: Any) -> tuple[list[Any], dict[str, Any]]:
    """The stream's deltas, and the assistant message they add up to."""
    deltas: list[Any] = []
    calls: dict[int, dict[str, str]] = {}
    async for chunk in stream:
        for c in chunk.choices:
            deltas.append(c.delta)
            for tc in c.delta.tool_calls or ():
                entry = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
                entry["id"] = tc.get("id") or entry["id"]
                entry["name"] = tc.get("function", {}).get("name") or entry["name"]
                entry["arguments"] += tc.get("function", {}).get("arguments") or ""
    message = {
        "role": "assistant",
        "content": "".join(d.content or "" for d in deltas) or None,
        "reasoning_content": "".join(d.reasoning_content or "" for d in deltas) or None,
        "reasoning_blocks": [b for d in deltas for b in d.reasoning_blocks or ()],
        "tool_calls": [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls.values()
        ] or None,
    }  # fmt: skip
    return deltas, message


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_tool_loop_round_trip(stream: bool) -> None:
    # With thinking on, the turn after a tool call must carry that turn's signed
    # reasoningContent back, first (the fake refuses it otherwise, as Claude does).
    params: dict[str, Any] = {"tools": [WEATHER_TOOL], "reasoning_effort": "low"}
    async with FakeBedrock(tool_calls=until_answered) as up, router_for(up) as router:
        if stream:
            s = await router.acompletion(model="g", messages=USER, stream=True, **params)
            _, assistant = await gather(s)
        else:
            r = await router.acompletion(model="g", messages=USER, **params)
            assert r.choices[0].finish_reason == "tool_calls"
            assistant = r.choices[0].message.to_dict()
        sent = up.received[-1].body
        assert sent is not None
        assert sent["additionalModelRequestFields"] == {
            "thinking": {"type": "enabled", "budget_tokens": 2048}
        }
        assert sent["inferenceConfig"] == {"maxTokens": 4096 + 2048}
        assert assistant["reasoning_content"] == "Thinking it over."
        [block] = assistant["reasoning_blocks"]
        assert block["type"] == "thinking"
        assert block["provider"] == "bedrock"
        assert block["signature"]
        call_id = assistant["tool_calls"][0]["id"]
        turns = [*USER, assistant, {"role": "tool", "tool_call_id": call_id, "content": "21C"}]
        follow = await router.acompletion(model="g", messages=turns, **params)
        assert follow.choices[0].message.content == "Hello from FakeUpstream."
        replayed = up.received[-1].body
        assert replayed is not None
        assert replayed["messages"][1]["content"][0] == {
            "reasoningContent": {
                "reasoningText": {"text": "Thinking it over.", "signature": block["signature"]}
            }
        }
        # Dropping the reasoning, or altering its signature, is what Bedrock refuses.
        bare = {k: v for k, v in assistant.items() if not k.startswith("reasoning")}
        forged = {**assistant, "reasoning_blocks": [{**block, "signature": "forged"}]}
        for turn in (bare, forged):
            with pytest.raises(BadRequestError, match="thinking"):
                await router.acompletion(model="g", messages=[*USER, turn, turns[2]], **params)


async def test_no_thinking_no_reasoning() -> None:
    async with FakeBedrock() as up, router_for(up) as router:
        r = await router.acompletion(model="g", messages=USER)
    message = r.choices[0].message
    assert (message.reasoning_content, message.reasoning_blocks) == (None, None)


def delta(index: int, **reasoning: str) -> bytes:
    body = {"contentBlockIndex": index, "delta": {"reasoningContent": reasoning}}
    return event_frame("contentBlockDelta", body)


async def test_stream_reasoning_deltas_and_whole_blocks() -> None:
    b64 = base64.b64encode
    frames = b"".join((
        event_frame("messageStart", {"role": "assistant"}),
        delta(0, text="Let me "), delta(0, text="think."), delta(0, signature="sig-A"),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        delta(1, redactedContent=b64(b"abc").decode()),
        delta(1, redactedContent=b64(b"de").decode()),
        event_frame("contentBlockStop", {"contentBlockIndex": 1}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"text": "Hi"}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 2}),
        event_frame("messageStop", {"stopReason": "end_turn"}),
        event_frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 9,
                                           "cacheReadInputTokens": 7}}),
    ))  # fmt: skip
    async with FakeBedrock() as up, router_for(up) as router:
        up.push(Fault.malformed(frames, content_type=EVENTS))
        s = await router.acompletion(model="g", messages=USER, stream=True)
        deltas, message = await gather(s)
    assert [d.reasoning_content for d in deltas if d.reasoning_content] == ["Let me ", "think."]
    assert [d.reasoning_blocks for d in deltas if d.reasoning_blocks] == [
        [{"type": "thinking", "thinking": "Let me think.", "signature": "sig-A",
          "provider": "bedrock"}],
        [{"type": "redacted_thinking", "data": b64(b"abcde").decode(), "provider": "bedrock"}],
    ]  # fmt: skip
    assert message["content"] == "Hi"
    assert s.usage is not None
    assert (s.usage.prompt_tokens, s.usage.cached_tokens) == (10, 7)
