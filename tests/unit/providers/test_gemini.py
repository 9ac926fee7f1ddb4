"""The Gemini translation against Gemini's documented wire shapes.

Payloads are the shapes of https://ai.google.dev/api/generate-content (and the pages
cited beside them), each also validated by google-genai's types; results by the
openai SDK's types.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest

from interlock import (
    BadRequestError,
    ContentPolicyViolationError,
    Deployment,
    InternalServerError,
    RateLimitError,
)
from interlock.providers import GeminiTransport, HttpClient
from interlock.providers.gemini import build_body, parse_response
from interlock.providers.gemini_parse import GeminiStream
from interlock.types import ChatCompletionChunk, Request
from tests import sdk_contract as sdk

D = Deployment(group="g", model="gemini-3-pro-preview", id="g-0", provider="gemini")
USER = [{"role": "user", "content": "Check flight AA100 and AA200."}]
SIG_A = "CiQB0e2Kb3dRh+BYdbZvmulSN2Pwwc75DfQOwTsF5Oc="  # base64, as the API sends them
SIG_B = "EiYKJGUyNDgzMGE3LTVjZDYtNDJmZS05OThiLWVlNTM5ZTcyYjljMQ=="
TOOL = {
    "type": "function",
    "function": {
        "name": "check_flight",
        "parameters": {"type": "object", "properties": {"flight": {"type": "string"}}},
    },
}


def request(messages: list[dict[str, Any]], **params: Any) -> Request:
    return Request("chat", "g", messages=messages, params=params)


def body(messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    out = build_body(D, request(messages, **params))
    sdk.gemini_request(out)
    return out


def response(*candidates: dict[str, Any], **usage: int) -> dict[str, Any]:
    data = {"candidates": list(candidates), "modelVersion": "gemini-3-pro-preview",
            "responseId": "resp-1",
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                              "totalTokenCount": 15, **usage}}  # fmt: skip
    sdk.gemini_response(data)
    return data


def stream_of(events: list[dict[str, Any]]) -> list[ChatCompletionChunk]:
    resp = cast(Any, SimpleNamespace(content=None, close=lambda: None))
    s = GeminiStream(resp, D, "sk-top")
    s.error_mapper = GeminiTransport(HttpClient())._error
    for event in events:
        s._feed(orjson.dumps(event))
    chunks = list(s._pending)
    for chunk in chunks:
        sdk.openai_chunk(chunk.to_dict())
    return chunks


# --- 1: thought signatures and function call ids -------------------------------------


def test_parallel_calls_keep_ids_and_signature_and_go_back_paired() -> None:
    # Parallel calls: only the first part carries the signature
    # (https://ai.google.dev/gemini-api/docs/thought-signatures#parallel-function-calls).
    data = response(
        {
            "content": {"role": "model", "parts": [
                {"functionCall": {"id": "fc1", "name": "check_flight",
                                  "args": {"flight": "AA100"}}, "thoughtSignature": SIG_A},
                {"functionCall": {"id": "fc2", "name": "check_flight",
                                  "args": {"flight": "AA200"}}},
            ]},
            "finishReason": "STOP",
            "index": 0,
        }
    )  # fmt: skip
    r = parse_response(data, D)
    sdk.openai_chat(r.to_dict())
    m = r.choices[0].message
    assert [c["id"] for c in m.tool_calls or ()] == ["fc1", "fc2"]
    assert m.reasoning_blocks == [
        {"type": "thinking", "thinking": "", "signature": SIG_A, "provider": "gemini",
         "tool_call_id": "fc1"}
    ]  # fmt: skip
    turns = [
        *USER,
        m.to_dict(),
        # Answered out of order: the ids, not the positions, pair them.
        {"role": "tool", "tool_call_id": "fc2", "content": '{"status": "late"}'},
        {"role": "tool", "tool_call_id": "fc1", "content": '{"status": "on time"}'},
    ]
    sent = body(turns, tools=[TOOL])
    model_turn = sent["contents"][1]["parts"]
    assert model_turn[0] == {
        "functionCall": {"name": "check_flight", "args": {"flight": "AA100"}, "id": "fc1"},
        "thoughtSignature": SIG_A,
    }
    assert "thoughtSignature" not in model_turn[1]
    answers = [p["functionResponse"] for p in sent["contents"][2]["parts"]]
    assert [(a["id"], a["response"]["status"]) for a in answers] == [
        ("fc2", "late"),
        ("fc1", "on time"),
    ]


def test_text_signature_and_googles_own_shape_go_back() -> None:
    # A signature on the last text part when the model called nothing.
    data = response(
        {"content": {"role": "model", "parts": [{"text": "Done.", "thoughtSignature": SIG_B}]},
         "finishReason": "STOP", "index": 0}
    )  # fmt: skip
    m = parse_response(data, D).choices[0].message
    sent = body([*USER, m.to_dict(), {"role": "user", "content": "Thanks"}])
    assert sent["contents"][1]["parts"] == [{"text": "Done.", "thoughtSignature": SIG_B}]
    # Google's OpenAI-compatible endpoint puts it on the tool call.
    call = {"id": "fc9", "type": "function",
            "function": {"name": "check_flight", "arguments": "{}"},
            "extra_content": {"google": {"thought_signature": SIG_A}}}  # fmt: skip
    sent = body([*USER, {"role": "assistant", "content": None, "tool_calls": [call]}])
    assert sent["contents"][1]["parts"][0]["thoughtSignature"] == SIG_A
    # Anthropic's thinking means nothing to Gemini.
    block = {"type": "thinking", "thinking": "t", "signature": "s", "provider": "anthropic"}
    other = {"role": "assistant", "content": "x", "reasoning_blocks": [block]}
    assert body([*USER, other])["contents"][1]["parts"] == [{"text": "x"}]


# --- reasoning: thought parts, reasoning_effort ---------------------------------------


def test_thought_parts_are_reasoning_and_effort_sets_a_budget() -> None:
    # https://ai.google.dev/gemini-api/docs/thinking#summaries
    data = response(
        {"content": {"role": "model", "parts": [
            {"text": "Considering the flights.", "thought": True},
            {"text": "Both are on time."}]},
         "finishReason": "STOP", "index": 0},
        thoughtsTokenCount=12, cachedContentTokenCount=8,
    )  # fmt: skip
    r = parse_response(data, D)
    m = r.choices[0].message
    assert (m.content, m.reasoning_content) == ("Both are on time.", "Considering the flights.")
    assert r.usage is not None
    # 6: thoughts are reasoning tokens (in completion_tokens), cached content is cached.
    assert (r.usage.completion_tokens, r.usage.reasoning_tokens) == (17, 12)
    assert r.usage.cached_tokens == 8
    sdk.openai_chat(r.to_dict())
    assert body(USER, reasoning_effort="medium")["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 8192,
        "includeThoughts": True,
    }
    assert body(USER, reasoning_effort="none")["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 0
    }


# --- 4: JSON Schema goes where Gemini takes JSON Schema ---------------------------------


def test_json_schema_fields() -> None:
    # https://ai.google.dev/api/caching#FunctionDeclaration (parametersJsonSchema) and
    # https://ai.google.dev/api/generate-content#generationconfig (responseJsonSchema)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"unit": {"type": ["string", "null"]}, "kind": {"const": "x"}},
        "required": ["unit", "kind"],
        "additionalProperties": False,
    }
    strict = {"type": "function", "function": {"name": "f", "parameters": schema, "strict": True}}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}
    sent = body(USER, tools=[strict], response_format=fmt)
    decl = sent["tools"][0]["functionDeclarations"][0]
    assert decl["parametersJsonSchema"] == schema
    assert "parameters" not in decl
    assert sent["generationConfig"]["responseJsonSchema"] == schema
    assert "responseSchema" not in sent["generationConfig"]


# --- 11: blocked candidates, finish reasons, mid-stream errors --------------------------


def test_one_blocked_candidate_of_several_keeps_the_others() -> None:
    good = {"content": {"role": "model", "parts": [{"text": "Fine."}]}, "finishReason": "STOP",
            "index": 0}  # fmt: skip
    blocked = {"finishReason": "SAFETY", "index": 1,
               "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                                  "probability": "HIGH", "blocked": True}]}  # fmt: skip
    r = parse_response(response(good, blocked), D)
    sdk.openai_chat(r.to_dict())
    assert [(c.message.content, c.finish_reason) for c in r.choices] == [
        ("Fine.", "stop"),
        ("", "content_filter"),
    ]
    with pytest.raises(ContentPolicyViolationError, match="SAFETY"):
        parse_response(response(blocked, {**blocked, "index": 0}), D)
    # Streamed alike: the blocked one finishes as content_filter, the other goes on.
    chunks = stream_of([response({**good, "finishReason": None}, {**blocked, "finishReason": None}),
                        response({**good, "content": {"role": "model", "parts": [{"text": ""}]}},
                                 blocked)])  # fmt: skip
    finishes = {c.choices[0].index: c.choices[0].finish_reason for c in chunks if c.choices}
    assert finishes == {0: "stop", 1: "content_filter"}


@pytest.mark.parametrize(
    ("reason", "cls"),
    [
        ("MALFORMED_FUNCTION_CALL", InternalServerError),
        ("TOO_MANY_TOOL_CALLS", InternalServerError),
        ("OTHER", InternalServerError),
        ("LANGUAGE", ContentPolicyViolationError),
        ("UNEXPECTED_TOOL_CALL", BadRequestError),
    ],
)
def test_failure_finish_reasons_are_not_an_empty_stop(reason: str, cls: type[Exception]) -> None:
    cand = {"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": reason,
            "finishMessage": f"Malformed function call: {reason}", "index": 0}  # fmt: skip
    with pytest.raises(cls, match=reason):
        parse_response(response(cand), D)
    # With content, the answer stands, and Gemini's reason and message are kept.
    said = {**cand, "content": {"role": "model", "parts": [{"text": "Partial."}]}}
    out = parse_response(response(said), D).to_dict()
    sdk.openai_chat(out)
    choice = out["choices"][0]
    assert choice["native_finish_reason"] == reason
    assert choice["finish_message"] == f"Malformed function call: {reason}"


def test_mid_stream_error_event_keeps_status_and_message() -> None:
    # A Google API error object sent as an SSE event
    # (https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes).
    first = response({"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0})
    error = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                       "message": "Resource has been exhausted (e.g. check quota)."}}  # fmt: skip
    with pytest.raises(RateLimitError, match="Resource has been exhausted") as info:
        stream_of([first, error])
    assert info.value.status_code == 429
    with pytest.raises(InternalServerError, match="Internal error"):
        stream_of([first, {"error": {"code": 500, "status": "INTERNAL",
                                     "message": "Internal error encountered."}}])  # fmt: skip
