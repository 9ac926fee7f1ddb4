"""The Responses API result types: usage counts and details, output text and
function calls read from the wire shape, the whole body kept for `to_dict()`.

Shapes: https://platform.openai.com/docs/api-reference/responses/object
"""

from __future__ import annotations

import pytest

from interlock import ResponseEvent, ResponseResult, ResponseUsage
from interlock.limits.tokens import estimate_text_tokens
from interlock.responses_types import estimate_responses_input
from interlock.types import InvalidCount
from tests.sdk_contract_responses import openai_response

# The "response object" example of the API reference, trimmed to one message.
BODY = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
    "object": "response",
    "created_at": 1741476542,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "gpt-4.1-2025-04-14",
    "output": [
        {
            "type": "message",
            "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "In a peaceful grove...", "annotations": []}
            ],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "status": "completed",
        },
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 36,
        "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 0},
        "output_tokens": 87,
        "output_tokens_details": {"reasoning_tokens": 20},
        "total_tokens": 123,
    },
    "user": None,
    "metadata": {},
    "service_tier": "default",
}


def test_result_reads_the_wire_shape_and_gives_it_back() -> None:
    r = ResponseResult.from_dict(BODY, deployment_id="d", group="g")
    assert r.output_text == "In a peaceful grove..."
    assert [c["name"] for c in r.function_calls] == ["get_weather"]
    assert (r.status, r.model, r.stored) == ("completed", "gpt-4.1-2025-04-14", True)
    assert r.to_dict() == BODY  # unknown fields (service_tier) kept
    openai_response(r.to_dict())


def test_usage_details_and_their_chat_shape() -> None:
    r = ResponseResult.from_dict(BODY)
    u = r.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (36, 87, 123)
    assert (u.cached_tokens, u.reasoning_tokens) == (10, 20)
    chat = u.as_usage()
    assert (chat.prompt_tokens, chat.completion_tokens, chat.total_tokens) == (36, 87, 123)
    assert (chat.cached_tokens, chat.reasoning_tokens) == (10, 20)
    assert ResponseUsage.from_dict(u.to_dict()) == u


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_a_count_that_is_not_one_is_refused(bad: object) -> None:
    with pytest.raises(InvalidCount):
        ResponseUsage.from_dict({"input_tokens": bad, "output_tokens": 1})
    # ``usage`` as in https://platform.openai.com/docs/api-reference/responses/object
    usage = {"input_tokens": 1, "output_tokens": 1, "input_tokens_details": {"cached_tokens": bad}}
    with pytest.raises(InvalidCount, match="cached_tokens"):
        ResponseUsage.from_dict(usage)


def test_event_accessors() -> None:
    # Events as in https://platform.openai.com/docs/api-reference/responses-streaming
    delta = ResponseEvent(
        "response.output_text.delta",
        {"type": "response.output_text.delta", "delta": "Hi", "sequence_number": 4},
    )
    assert (delta.delta, delta.sequence_number, delta.response) == ("Hi", 4, None)
    done = ResponseEvent("response.completed", {"type": "response.completed", "response": BODY})
    assert done.response is not None
    assert done.response.output_text == "In a peaceful grove..."


def test_input_estimate_counts_the_text_of_every_item() -> None:
    # Input items as in https://platform.openai.com/docs/api-reference/responses/create
    items = [
        {"role": "user", "content": "abcdefgh"},
        {"role": "user", "content": [{"type": "input_text", "text": "abcd"}]},
        {"type": "function_call_output", "call_id": "c", "output": "abcdefgh"},
    ]
    count = estimate_text_tokens
    assert estimate_responses_input("abcdefgh", None, count) == 2
    assert estimate_responses_input("abcd", "abcd", count) == 2
    assert estimate_responses_input(items, None, count) == 3 * 4 + 2 + 1 + 2
