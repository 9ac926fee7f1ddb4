"""FakeUpstream's ``POST /v1/responses`` over raw HTTP: the openai SDK's types read
every answer and event, a follow-up must name a stored response, and scripted
faults cut streams where asked.

Shapes: https://platform.openai.com/docs/api-reference/responses (create, the
response object, streaming events).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from interlock.testing import FakeUpstream, Fault
from tests.sdk_contract import sse_data
from tests.sdk_contract_responses import (
    openai_response,
    openai_response_event,
    openai_responses_request,
)

# Request bodies and their tools: https://platform.openai.com/docs/api-reference/responses/create
TOOL = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    "strict": True,
}

BODIES: list[dict[str, Any]] = [
    {"model": "gpt-4.1", "input": "Hello"},
    {"model": "o4-mini", "input": "Think", "reasoning": {"effort": "low"}, "max_output_tokens": 2},
    {"model": "gpt-4.1", "input": [{"role": "user", "content": "find it"}], "tools": [TOOL]},
]


async def post(up: FakeUpstream, body: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.post(up.url + "/responses", json=body) as r:
        return r.status, await r.read()


@pytest.mark.parametrize("body", BODIES, ids=["text", "reasoning-incomplete", "function-call"])
async def test_answers_and_events_are_what_the_sdk_reads(body: dict[str, Any]) -> None:
    openai_responses_request(body)
    async with FakeUpstream(stream_chunks=3) as up:
        status, raw = await post(up, body)
        assert status == 200
        plain = openai_response(raw)
        status, raw = await post(up, {**body, "stream": True})
        assert status == 200
        events = [openai_response_event(e) for e in sse_data(raw)]
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert [i.type for i in final.output] == [i.type for i in plain.output]
    if plain.output[-1].type == "function_call":
        deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
        assert "".join(deltas) == plain.output[-1].arguments
    else:
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert "".join(deltas) == plain.output_text


async def test_a_follow_up_must_name_a_stored_response() -> None:
    async with FakeUpstream() as up:
        status, raw = await post(up, {"model": "m", "input": "hi", "store": False})
        unstored = orjson.loads(raw)["id"]
        status, raw = await post(
            up, {"model": "m", "input": "hi", "previous_response_id": unstored}
        )
        assert status == 400
        error = orjson.loads(raw)["error"]
        assert error["code"] == "previous_response_not_found"
        assert error["param"] == "previous_response_id"
        status, raw = await post(up, {"model": "m", "input": "hi"})
        first = openai_response(raw)
        status, raw = await post(
            up, {"model": "m", "input": "go", "previous_response_id": first.id}
        )
        assert status == 200
        follow = openai_response(raw)
        assert follow.usage is not None
        assert first.usage is not None
        assert follow.usage.input_tokens_details.cached_tokens == first.usage.total_tokens


async def test_missing_input_is_a_400_and_faults_apply() -> None:
    async with FakeUpstream() as up:
        status, raw = await post(up, {"model": "m"})
        assert status == 400
        assert orjson.loads(raw)["error"]["code"] == "missing_required_parameter"
        up.push(Fault.rate_limit(retry_after=2))
        status, _ = await post(up, {"model": "m", "input": "hi"})
        assert status == 429
        up.push(Fault.cut_stream(2))
        with pytest.raises(aiohttp.ClientPayloadError):
            await post(up, {"model": "m", "input": "hi", "stream": True})
