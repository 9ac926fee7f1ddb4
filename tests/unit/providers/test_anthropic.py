"""The Anthropic translation against Anthropic's documented wire shapes.

Every payload here is a documented shape (the page is cited next to it) and is also
validated by the anthropic SDK's types; every result by the openai SDK's types.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest

from interlock import (
    AuthenticationError,
    BadRequestError,
    Deployment,
    RateLimitError,
    ServiceUnavailableError,
    UnsupportedParamsError,
)
from interlock.providers import AnthropicTransport, HttpClient
from interlock.providers.anthropic import build_body, parse_message
from interlock.providers.anthropic_parse import AnthropicStream
from interlock.types import ChatCompletionChunk, Request
from tests import sdk_contract as sdk

D = Deployment(group="g", model="claude-sonnet-4-5", id="g-0", provider="anthropic")
USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
SIGNATURE = "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL"
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPn"

# A thinking turn that calls a tool, as
# https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#extended-thinking-with-tool-use
# shows it.
THINKING_TOOL_MESSAGE: dict[str, Any] = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "I need the weather for Paris.", "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": REDACTED},
        {"type": "text", "text": "Let me check."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"city": "Paris"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    # https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#tracking-cache-performance
    "usage": {
        "input_tokens": 50,
        "cache_creation_input_tokens": 248,
        "cache_read_input_tokens": 100_000,
        "output_tokens": 503,
    },
}


def request(messages: list[dict[str, Any]], mode: str = "drop", **params: Any) -> Request:
    return Request("chat", "g", messages=messages, params=params, unsupported_params=mode)  # type: ignore[arg-type]


def body(messages: list[dict[str, Any]], stream: bool = False, **params: Any) -> dict[str, Any]:
    out = build_body(D, request(messages, **params), stream)
    sdk.anthropic_request(out)
    return out


def stream_of(events: list[dict[str, Any]], documented: bool = True) -> list[ChatCompletionChunk]:
    """The chunks an AnthropicStream makes of `events` (no socket: events fed in);
    `documented` events are checked against the SDK's event types first."""
    resp = cast(Any, SimpleNamespace(content=None, close=lambda: None))
    s = AnthropicStream(resp, D, None)
    for event in events:
        if documented:
            sdk.anthropic_event(event)
        s._feed(orjson.dumps(event))
    chunks = list(s._pending)
    for chunk in chunks:
        sdk.openai_chunk(chunk.to_dict())
    return chunks


# --- 2: thinking, plain and streamed, and its round trip ----------------------------


def test_thinking_blocks_are_kept_and_replayed_first() -> None:
    sdk.anthropic_message(THINKING_TOOL_MESSAGE)
    r = parse_message(THINKING_TOOL_MESSAGE, D)
    sdk.openai_chat(r.to_dict())
    m = r.choices[0].message
    assert m.reasoning_content == "I need the weather for Paris."
    assert m.reasoning_blocks == [
        {"type": "thinking", "thinking": "I need the weather for Paris.",
         "signature": SIGNATURE, "provider": "anthropic"},
        {"type": "redacted_thinking", "data": REDACTED, "provider": "anthropic"},
    ]  # fmt: skip
    # The follow-up turn: the assistant message as returned, then the tool result.
    call_id = "toolu_01A09q90qw90lq917835lq9"
    turns = [*USER, m.to_dict(), {"role": "tool", "tool_call_id": call_id, "content": "21C"}]
    sent = body(turns, tools=[WEATHER], reasoning_effort="low")
    assistant = sent["messages"][1]["content"]
    assert [b["type"] for b in assistant] == ["thinking", "redacted_thinking", "text", "tool_use"]
    assert assistant[0] == {
        "type": "thinking",
        "thinking": "I need the weather for Paris.",
        "signature": SIGNATURE,
    }
    assert assistant[1] == {"type": "redacted_thinking", "data": REDACTED}


def test_other_providers_reasoning_is_not_sent_to_anthropic() -> None:
    replay = {
        "role": "assistant",
        "content": "ok",
        "reasoning_blocks": [
            {"type": "thinking", "thinking": "", "signature": "g-sig", "provider": "gemini"}
        ],
    }
    sent = body([*USER, replay, {"role": "user", "content": "and?"}])
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "ok"}]


def test_streamed_thinking_deltas_and_signature() -> None:
    # https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#streaming-thinking
    start = {**THINKING_TOOL_MESSAGE, "content": [], "stop_reason": None,
             "usage": {"input_tokens": 50, "output_tokens": 1}}  # fmt: skip
    chunks = stream_of(
        [
            {"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0,
             "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "thinking_delta", "thinking": "Let me solve "}},
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "thinking_delta", "thinking": "this."}},
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "signature_delta", "signature": SIGNATURE}},
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1,
             "content_block": {"type": "redacted_thinking", "data": REDACTED}},
            {"type": "content_block_stop", "index": 1},
            {"type": "content_block_start", "index": 2,
             "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 2,
             "delta": {"type": "text_delta", "text": "42"}},
            {"type": "content_block_stop", "index": 2},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": 30}},
            {"type": "message_stop"},
        ]
    )  # fmt: skip
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.reasoning_content or "" for d in deltas) == "Let me solve this."
    blocks = [b for d in deltas for b in d.reasoning_blocks or ()]
    assert blocks == [
        {"type": "thinking", "thinking": "Let me solve this.", "signature": SIGNATURE,
         "provider": "anthropic"},
        {"type": "redacted_thinking", "data": REDACTED, "provider": "anthropic"},
    ]  # fmt: skip
    assert "".join(d.content or "" for d in deltas) == "42"


# --- 3: server tools and unknown blocks/events in a stream -------------------------


def test_server_tool_stream_is_tolerated() -> None:
    # https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/web-search-tool#streaming
    result = [{"type": "web_search_result", "title": "Paris weather", "url": "https://w.example/p",
               "encrypted_content": "Ev0DCioIAxgCIiQ3NmU4ZmI4OC1k", "page_age": None}]  # fmt: skip
    chunks = stream_of(
        [
            {"type": "message_start", "message": {**THINKING_TOOL_MESSAGE, "content": [],
                                                  "stop_reason": None}},
            {"type": "content_block_start", "index": 0, "content_block": {
                "type": "server_tool_use", "id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
                "name": "web_search", "input": {}}},
            {"type": "content_block_delta", "index": 0, "delta": {
                "type": "input_json_delta", "partial_json": '{"query": "weather Paris"}'}},
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": {
                "type": "web_search_tool_result",
                "tool_use_id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB", "content": result}},
            {"type": "content_block_stop", "index": 1},
            {"type": "content_block_start", "index": 2,
             "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 2,
             "delta": {"type": "text_delta", "text": "Sunny."}},
            {"type": "content_block_stop", "index": 2},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": 9}},
            {"type": "message_stop"},
        ]
    )  # fmt: skip
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(d.tool_calls for d in deltas)
    assert "".join(d.content or "" for d in deltas) == "Sunny."
    # An event or block type that does not exist yet passes by, too.
    resp = cast(Any, SimpleNamespace(content=None, close=lambda: None))
    s = AnthropicStream(resp, D, None)
    s._feed(b'{"type": "brand_new_event", "x": 1}')
    s._feed(b'{"type": "content_block_start", "index": 5, "content_block": {"type": "new"}}')
    s._feed(b'{"type": "content_block_delta", "index": 5, "delta": {"type": "new_delta"}}')
    assert not s._pending


def test_web_search_citations_become_annotations() -> None:
    # https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/web-search-tool#response
    cite = {"type": "web_search_result_location", "url": "https://w.example/p",
            "title": "Paris weather", "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0",
            "cited_text": "Sunny, 21C"}  # fmt: skip
    message = {
        **THINKING_TOOL_MESSAGE,
        "content": [
            {"type": "text", "text": "Paris: "},
            {"type": "text", "text": "sunny.", "citations": [cite]},
        ],
        "stop_reason": "end_turn",
    }
    sdk.anthropic_message(message)
    r = parse_message(message, D)
    out = r.to_dict()
    sdk.openai_chat(out)
    m = out["choices"][0]["message"]
    assert m["annotations"] == [
        {"type": "url_citation", "url_citation": {"url": "https://w.example/p",
         "title": "Paris weather", "start_index": 7, "end_index": 13}}
    ]  # fmt: skip
    assert m["citations"] == [cite]


def test_streamed_web_search_citations_become_annotations() -> None:
    # https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/web-search-tool#streaming
    # (citations arrive as citations_delta events inside the cited text block).
    cite = {"type": "web_search_result_location", "url": "https://w.example/p",
            "title": "Paris weather", "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0",
            "cited_text": "Sunny, 21C"}  # fmt: skip
    start = {**THINKING_TOOL_MESSAGE, "content": [], "stop_reason": None,
             "usage": {"input_tokens": 50, "output_tokens": 1}}  # fmt: skip
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Paris: "}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "text", "text": "", "citations": []}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "citations_delta", "citation": cite}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "text_delta", "text": "sunny."}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]  # fmt: skip
    for event in events:
        sdk.anthropic_event(event)
    chunks = stream_of(events)
    for c in chunks:
        sdk.openai_chunk(c.to_dict())
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == "Paris: sunny."
    assert [a for d in deltas for a in d.annotations or ()] == [
        {"type": "url_citation", "url_citation": {"url": "https://w.example/p",
         "title": "Paris weather", "start_index": 7, "end_index": 13}}
    ]  # fmt: skip


# --- 5: structured output and strict tools; meaningful parameters -------------------


def test_response_format_maps_to_output_config() -> None:
    # https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs
    schema = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"],
              "additionalProperties": False}  # fmt: skip
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}
    assert body(USER, response_format=fmt)["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }
    assert body(USER, response_format={"type": "json_object"})["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}
    }
    assert "output_config" not in body(USER, response_format={"type": "text"})
    merged = body(USER, response_format=fmt, extra_body={"output_config": {"effort": "low"}})
    assert merged["output_config"] == {"format": {"type": "json_schema", "schema": schema},
                                       "effort": "low"}  # fmt: skip
    strict = {**WEATHER, "function": {**WEATHER["function"], "strict": True}}
    assert body(USER, tools=[strict])["tools"][0]["strict"] is True


def test_meaningful_parameters_are_never_dropped() -> None:
    with pytest.raises(UnsupportedParamsError) as info:
        build_body(D, request(USER, "drop", n=3), False)
    assert info.value.params == ("n",)
    # Others still follow the mode.
    assert "seed" not in body(USER, seed=1)


# --- 7: cache_control on system and user parts --------------------------------------


def test_cache_control_reaches_system_and_user_blocks() -> None:
    # https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching
    ephemeral = {"type": "ephemeral"}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [
            {"type": "text", "text": "You are a lawyer."},
            {"type": "text", "text": "<the whole contract>", "cache_control": ephemeral}]},
        {"role": "user", "content": [
            {"type": "text", "text": "<a long brief>", "cache_control": ephemeral},
            {"type": "text", "text": "Summarise."}]},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Shorter.", "cache_control": ephemeral},
    ]  # fmt: skip
    sent = body(messages)
    assert sent["system"] == [
        {"type": "text", "text": "You are a lawyer."},
        {"type": "text", "text": "<the whole contract>", "cache_control": ephemeral},
    ]
    assert sent["messages"][0]["content"][0]["cache_control"] == ephemeral
    assert "cache_control" not in sent["messages"][0]["content"][1]
    assert sent["messages"][2]["content"] == [
        {"type": "text", "text": "Shorter.", "cache_control": ephemeral}
    ]
    # Without cache_control the system prompt stays one string.
    assert body([{"role": "system", "content": "Be brief."}, *USER])["system"] == "Be brief."


# --- 6: usage details ---------------------------------------------------------------


def test_cache_reads_and_writes_are_usage_details() -> None:
    r = parse_message(THINKING_TOOL_MESSAGE, D)
    assert r.usage is not None
    assert r.usage.prompt_tokens == 50 + 248 + 100_000
    assert (r.usage.cached_tokens, r.usage.cache_creation_tokens) == (100_000, 248)
    assert r.to_dict()["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 100_000,
        "cache_write_tokens": 248,
    }


# --- 12: an error in an HTTP 200 ------------------------------------------------------


@pytest.mark.parametrize(
    ("etype", "cls"),
    [
        ("overloaded_error", ServiceUnavailableError),
        ("rate_limit_error", RateLimitError),
        ("authentication_error", AuthenticationError),
        ("invalid_request_error", BadRequestError),
    ],
)
def test_error_body_with_200_is_mapped_by_type(etype: str, cls: type[Exception]) -> None:
    # https://docs.anthropic.com/en/api/errors
    data = {"type": "error", "error": {"type": etype, "message": "Overloaded sk-top-secret"}}
    err = AnthropicTransport(HttpClient())._error_body(D, data, "sk-top-secret")
    assert isinstance(err, cls)
    assert "Overloaded" in str(err)
    assert "sk-top-secret" not in str(err)


# --- 13: stop reasons the openai SDK does not know ----------------------------------


def test_unknown_stop_reason_maps_to_stop_and_keeps_the_raw_one() -> None:
    message = {**THINKING_TOOL_MESSAGE, "content": [{"type": "text", "text": "x"}],
               "stop_reason": "some_future_reason"}  # fmt: skip
    out = parse_message(message, D).to_dict()
    sdk.openai_chat(out)
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["choices"][0]["native_finish_reason"] == "some_future_reason"
    start = {**message, "content": [], "stop_reason": None}
    chunks = stream_of(
        [
            {"type": "message_start", "message": start},
            {"type": "message_delta", "delta": {"stop_reason": "some_future_reason"},
             "usage": {"output_tokens": 1}},
        ],
        documented=False,  # a value the SDK does not know yet, by design
    )  # fmt: skip
    last = chunks[-1].to_dict()["choices"][0]
    assert (last["finish_reason"], last["native_finish_reason"]) == ("stop", "some_future_reason")


# --- 14: tool_choice none with parallel_tool_calls false ----------------------------


def test_tool_choice_none_has_no_parallel_setting() -> None:
    sent = body(USER, tools=[WEATHER], tool_choice="none", parallel_tool_calls=False)
    assert sent["tool_choice"] == {"type": "none"}
    sent = body(USER, tools=[WEATHER], parallel_tool_calls=False)
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


# --- reasoning_effort -> thinking budget --------------------------------------------


@pytest.mark.parametrize(
    ("effort", "max_tokens", "thinking", "sent_max"),
    [
        ("low", None, {"type": "enabled", "budget_tokens": 2048}, 4096 + 2048),
        ("high", 20_000, {"type": "enabled", "budget_tokens": 16384}, 20_000),
        ("high", 5_000, {"type": "enabled", "budget_tokens": 4999}, 5_000),
        ("none", None, {"type": "disabled"}, 4096),
    ],
)
def test_reasoning_effort_maps_to_thinking_budget(
    effort: str, max_tokens: int | None, thinking: dict[str, Any], sent_max: int
) -> None:
    params: dict[str, Any] = {"reasoning_effort": effort}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    sent = body(USER, **params)
    assert sent["thinking"] == thinking
    assert sent["max_tokens"] == sent_max
    with pytest.raises(BadRequestError, match="max_tokens"):
        build_body(D, request(USER, reasoning_effort="low", max_tokens=500), False)
