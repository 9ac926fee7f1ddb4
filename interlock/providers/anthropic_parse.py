"""Anthropic Messages API responses and stream events as OpenAI-shaped results.

References: https://docs.anthropic.com/en/api/messages (the Message object) and
https://docs.anthropic.com/en/docs/build-with-claude/streaming (the events). Block
and event types this module does not know (server tools, new features) are passed
over, never an error: the API adds them as it grows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from interlock.config import Deployment
from interlock.errors import InterlockError, InternalServerError, RateLimitError
from interlock.errors import ServiceUnavailableError as _Unavailable
from interlock.providers.http_errors import scrub
from interlock.providers.native import NativeStream, delta_choice, make_chunk
from interlock.types import (
    ChatCompletion,
    ChatMessage,
    Choice,
    CompletionTokensDetails,
    PromptTokensDetails,
    ReasoningBlock,
    Usage,
    token_count,
)

__all__ = ["STOP_REASONS", "AnthropicStream", "finish_reason", "parse_message", "usage_of"]

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ERROR_CLASSES: dict[str, type[InterlockError]] = {
    "overloaded_error": _Unavailable,
    "api_error": InternalServerError,
    "rate_limit_error": RateLimitError,
}


def finish_reason(reason: Any) -> tuple[str | None, dict[str, Any] | None]:
    """OpenAI's finish reason for a ``stop_reason`` (an unknown one is ``stop``: the
    model stopped), and the choice's extra fields keeping Anthropic's own."""
    if reason is None:
        return None, None
    raw = str(reason)
    return STOP_REASONS.get(raw, "stop"), {"native_finish_reason": raw}


def usage_of(u: Mapping[str, Any] | None) -> Usage | None:
    """`prompt_tokens` counts every input token, as OpenAI does; the cache reads and
    writes within it are in `prompt_tokens_details`, so they can be priced apart."""
    if not u:
        return None
    # Every count goes through token_count: accounting must never see a non-count.
    read = token_count(u.get("cache_read_input_tokens"), "usage.cache_read_input_tokens")
    written = token_count(u.get("cache_creation_input_tokens"), "usage.cache_creation_input_tokens")
    prompt = token_count(u.get("input_tokens"), "usage.input_tokens") + read + written
    completion = token_count(u.get("output_tokens"), "usage.output_tokens")
    usage = Usage(prompt, completion, prompt + completion)
    if "cache_read_input_tokens" in u or "cache_creation_input_tokens" in u:
        usage.prompt_tokens_details = PromptTokensDetails(read, written)
    details = u.get("output_tokens_details")
    if isinstance(details, Mapping) and details.get("thinking_tokens") is not None:
        thinking = token_count(details["thinking_tokens"], "usage.output_tokens_details")
        usage.completion_tokens_details = CompletionTokensDetails(thinking)
    return usage


def _thinking_block(block: Mapping[str, Any]) -> ReasoningBlock:
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": str(block.get("data") or ""),
                "provider": "anthropic"}  # fmt: skip
    return {"type": "thinking", "thinking": str(block.get("thinking") or ""),
            "signature": str(block.get("signature") or ""), "provider": "anthropic"}  # fmt: skip


def _annotations(citations: list[Any], start: int, end: int) -> list[dict[str, Any]]:
    # Web-search citations are URLs, what OpenAI's url_citation holds; they cover the
    # text block they came with.
    out = []
    for c in citations:
        if isinstance(c, Mapping) and c.get("type") == "web_search_result_location":
            cite = {"url": str(c.get("url") or ""), "title": str(c.get("title") or ""),
                    "start_index": start, "end_index": end}  # fmt: skip
            out.append({"type": "url_citation", "url_citation": cite})
    return out


class _Content:
    """What a Message's content blocks add up to."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.length = 0
        self.calls: list[dict[str, Any]] = []
        self.reasoning: list[ReasoningBlock] = []
        self.citations: list[Any] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, block: Mapping[str, Any]) -> None:
        kind = block.get("type")
        if kind == "text":
            text = block["text"]
            if not isinstance(text, str):  # not what the API sends: a malformed body
                raise TypeError("a text block's text is not a string")
            cited = block.get("citations")
            if isinstance(cited, list) and cited:
                self.citations += cited
                self.annotations += _annotations(cited, self.length, self.length + len(text))
            self.text.append(text)
            self.length += len(text)
        elif kind == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            call = {"name": block["name"], "arguments": args}
            self.calls.append({"id": block["id"], "type": "function", "function": call})
        elif kind in ("thinking", "redacted_thinking"):
            self.reasoning.append(_thinking_block(block))

    def message(self) -> ChatMessage:
        text = "".join(self.text) if self.text or not self.calls else None
        message = ChatMessage("assistant", text, self.calls or None)
        if self.reasoning:
            thought = "".join(b.get("thinking", "") for b in self.reasoning)
            message.reasoning_content = thought or None
            message.reasoning_blocks = self.reasoning
        message.annotations = self.annotations or None
        message.extra = {"citations": self.citations} if self.citations else None
        return message


def parse_message(data: Any, d: Deployment) -> ChatCompletion:
    """A Messages API response as a `ChatCompletion`."""
    content = _Content()
    for block in data["content"]:
        content.add(block)
    finish, extra = finish_reason(data.get("stop_reason"))
    return ChatCompletion(
        id=str(data.get("id", "")),
        model=str(data.get("model", d.model)),
        choices=[Choice(0, content.message(), finish, None, extra)],
        usage=usage_of(data.get("usage")),
        created=int(time.time()),
        deployment_id=d.id or "",
        group=d.group,
    )


class AnthropicStream(NativeStream):
    """Messages API stream events as `chat.completion.chunk`s."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._id = ""
        self._model = self.deployment.model
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # content block index -> tool_calls index
        self._thinking: dict[int, dict[str, Any]] = {}  # content block index -> block so far
        # Web-search citations of a text block arrive as citations_delta events; they
        # become url_citation annotations over that block's span when it stops.
        self._length = 0  # characters of content sent so far
        self._text_start: dict[int, int] = {}
        self._cited: dict[int, list[Any]] = {}

    def _chunk(self, **delta: Any) -> None:
        d = self.deployment
        self._emit(make_chunk(d, self._id, self._model, self.created, [delta_choice(**delta)]))

    def _feed(self, data: bytes) -> None:
        event = orjson.loads(data)
        kind = event.get("type")
        if kind == "content_block_delta":
            self._delta(event["index"], event["delta"])
        elif kind == "content_block_start":
            self._start(event["index"], event["content_block"])
        elif kind == "content_block_stop":
            self._stop(event.get("index", -1))
        elif kind == "message_start":
            message = event["message"]
            self._id = str(message.get("id", ""))
            self._model = str(message.get("model") or self._model)
            self._usage.update(message.get("usage") or {})
            self._chunk(role="assistant", content="")
        elif kind == "message_delta":
            self._usage.update(event.get("usage") or {})
            finish, extra = finish_reason((event.get("delta") or {}).get("stop_reason"))
            self._chunk(finish=finish or "stop", extra=extra)
        elif kind == "message_stop":
            self.finished = True
            usage = usage_of(self._usage)
            if self.deployment.stream_usage and usage is not None:
                d = self.deployment
                self._emit(make_chunk(d, self._id, self._model, self.created, [], usage))
        elif kind == "error":
            err = event.get("error") or {}
            cls = _ERROR_CLASSES.get(str(err.get("type")), InternalServerError)
            text = scrub(str(err.get("message") or err.get("type")), self._secret)
            d = self.deployment
            raise cls(f"anthropic sent an error mid-stream: {text}", deployment_id=d.id)
        # ping and unknown event types carry nothing for the caller.

    def _text(self, text: str) -> None:
        self._length += len(text)
        self._chunk(content=text)

    def _stop(self, index: int) -> None:
        block = self._thinking.pop(index, None)
        if block is not None:
            self._chunk(reasoning_blocks=[_thinking_block(block)])
        cited = self._cited.pop(index, None)
        start = self._text_start.pop(index, None)
        if cited and start is not None:
            annotations = _annotations(cited, start, self._length)
            if annotations:
                self._chunk(annotations=annotations)

    def _start(self, index: int, block: Mapping[str, Any]) -> None:
        kind = block.get("type")
        if kind == "tool_use":
            n = self._tools[index] = len(self._tools)
            fn = {"name": block["name"], "arguments": ""}
            self._chunk(tool_calls=[{"index": n, "id": block["id"], "type": "function",
                                     "function": fn}])  # fmt: skip
        elif kind in ("thinking", "redacted_thinking"):
            self._thinking[index] = dict(block)
        elif kind == "text":
            self._text_start[index] = self._length
            if block.get("text"):
                self._text(str(block["text"]))
        # server_tool_use, web_search_tool_result, ...: the server's own business.

    def _delta(self, index: int, delta: Mapping[str, Any]) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            self._text(str(delta["text"]))
        elif kind == "citations_delta":
            self._cited.setdefault(index, []).append(delta.get("citation"))
        elif kind == "input_json_delta":
            n = self._tools.get(index)
            if n is not None:  # a server tool's input is not the caller's tool call
                args = {"arguments": delta["partial_json"]}
                self._chunk(tool_calls=[{"index": n, "function": args}])
        elif kind == "thinking_delta":
            block = self._thinking.get(index)
            if block is not None:
                block["thinking"] = str(block.get("thinking") or "") + str(delta["thinking"])
            self._chunk(reasoning_content=str(delta["thinking"]))
        elif kind == "signature_delta":
            block = self._thinking.get(index)
            if block is not None:
                block["signature"] = str(block.get("signature") or "") + str(delta["signature"])
