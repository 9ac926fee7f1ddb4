"""`FakeAnthropic`: a loopback server speaking Anthropic's Messages API wire format.

Written from Anthropic's public API documentation: ``POST /v1/messages`` with
``x-api-key`` and ``anthropic-version`` headers; ``max_tokens`` required, roles
``user``/``assistant`` only, unknown fields rejected; SSE events ``message_start``,
``content_block_start``, ``ping``, ``content_block_delta`` (``text_delta``,
``input_json_delta``, ``thinking_delta``, ``signature_delta``), ``content_block_stop``,
``message_delta``, ``message_stop``; with ``thinking`` on, a signed thinking block
first, and the API's rule that the assistant turn of a tool call sent back starts
with its thinking, signature intact; ``cache_control`` breakpoints answered with
``cache_creation_input_tokens`` the first time and ``cache_read_input_tokens`` after;
error bodies ``{"type": "error", "error": {"type", "message"}}``. Faults from the
shared script answer in that shape (529 is ``overloaded_error``; a rate limit also
sends ``anthropic-ratelimit-requests-*`` headers).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from interlock.testing.fake_upstream import FakeUpstream
from interlock.testing.faults import Fault, _apply
from interlock.testing.wire import (
    JSON_HEADERS,
    BadRequest,
    Json,
    Record,
    Request,
    Response,
    split_text,
    tokens_for,
)

__all__ = ["FakeAnthropic", "ToolReply"]

ToolReply = Callable[[dict[str, Any]], Sequence[tuple[str, Mapping[str, Any]]]]
"""Given the parsed request body, the tool calls to answer with as ``(name, arguments)``
pairs; an empty result answers with text."""

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
          500: "api_error", 529: "overloaded_error"}  # fmt: skip
_FIELDS = frozenset(("model", "messages", "max_tokens", "system", "temperature", "top_p",
                     "top_k", "stop_sequences", "stream", "tools", "tool_choice", "metadata",
                     "thinking", "service_tier", "output_config", "cache_control"))  # fmt: skip
_BLOCKS = frozenset(("text", "image", "tool_use", "tool_result", "document", "thinking",
                     "redacted_thinking"))  # fmt: skip
_THOUGHT = "Thinking it over."
_NUMBERS = re.compile(r"\d+")


def anthropic_error(status: int, message: str, type_: str | None = None) -> bytes:
    """An Anthropic error body."""
    kind = (
        type_ or _TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    )
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    total = 0
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict):
            total += len(str(block.get("text") or ""))
            inner = block.get("content")
            total += len(inner) if isinstance(inner, str) else 0
    return total


def _check_fields(body: Json) -> None:
    for key in body:
        if key not in _FIELDS:
            raise BadRequest(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str):
        raise BadRequest("model: Field required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest("max_tokens: Field required (an integer >= 1)")
    temperature = body.get("temperature", 0)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
        raise BadRequest("temperature: Input should be between 0 and 1")


def _check_messages(messages: list[Any]) -> None:
    seen_tools: set[str] = set()  # a tool_result must answer a tool_use sent before it
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = m.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise BadRequest(f"messages.{i}.content: Input should be a string or a list")
        for j, block in enumerate(content):
            _check_block(f"messages.{i}.content.{j}", block, role, seen_tools)


def _check_block(where: str, block: Any, role: str, seen_tools: set[str]) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in _BLOCKS:
        raise BadRequest(f"{where}.type: Input tag {kind!r} is not a block type")
    if kind == "tool_use" and role == "assistant":
        seen_tools.add(str(block.get("id")))
    elif kind == "tool_result" and block.get("tool_use_id") not in seen_tools:
        raise BadRequest(f"{where}: tool_result without a matching tool_use block")
    elif kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            if not (source.get("media_type") and source.get("data")):
                raise BadRequest(f"{where}.source: media_type and data required")
        elif not (source.get("type") == "url" and source.get("url")):
            raise BadRequest(f"{where}.source: expected base64 or url")


def _thinking_on(body: Json) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _check_thinking(messages: list[Any], signatures: set[str]) -> None:
    """The rules https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
    states for tool use with thinking on: the last assistant turn, when it called a
    tool, starts with its thinking block, unmodified."""
    last = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
    content = last.get("content") if last else None
    if not isinstance(content, list) or not content:
        return
    kinds = [b.get("type") for b in content if isinstance(b, dict)]
    if "tool_use" in kinds and kinds[0] not in ("thinking", "redacted_thinking"):
        raise BadRequest(
            "messages: Expected `thinking` or `redacted_thinking`, but found "
            f"`{kinds[0]}`. When `thinking` is enabled, a final `assistant` message must "
            "start with a thinking block."
        )
    for block in content:
        thinking = isinstance(block, dict) and block.get("type") == "thinking"
        if thinking and block.get("signature") not in signatures:
            raise BadRequest("messages: Invalid `signature` in `thinking` block")


def _cache_prefix(body: Json) -> int:
    """Characters up to the last block marked with cache_control (system first, then
    messages), or 0 when nothing is marked."""
    chars, marked = 0, 0
    system = body.get("system")
    blocks = [*(system if isinstance(system, list) else [])]
    chars += len(system) if isinstance(system, str) else 0
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        blocks += content if isinstance(content, list) else [{"text": content or ""}]
    for block in blocks:
        if isinstance(block, dict):
            chars += _text_chars([block])
            if block.get("cache_control"):
                marked = chars
    return marked


class FakeAnthropic(FakeUpstream):
    """An Anthropic Messages API server on loopback; options as `FakeUpstream`, plus
    `tool_calls` (a `ToolReply`). `url` is the `api_base` (``http://host:port/v1``)."""

    _stream_end: tuple[bytes, ...] = ()

    def __init__(self, *, tool_calls: ToolReply | None = None, **options: Any) -> None:
        options.setdefault("name", "anthropic")
        super().__init__(**options)
        self._tool_reply = tool_calls
        self._endpoints = {("POST", "/v1/messages"): (self._messages, True)}
        self._signatures: set[str] = set()
        self._cached: set[int] = set()

    def _api_key_of(self, request: Request) -> str | None:
        return request.headers.get("x-api-key")

    def _unauthorized(self, record: Record) -> Response:
        return self._error_response(record, 401, "invalid x-api-key")

    def _error_response(self, record: Record, status: int, message: str, **_: Any) -> Response:
        record.status = status
        return web.Response(
            body=anthropic_error(status, message), status=status, headers=JSON_HEADERS
        )

    async def _apply_fault(self, fault: Fault, request: Request) -> Response | None:
        status = fault.http_status
        if status is None:
            return await _apply(fault, request)
        headers = {"Content-Type": "application/json", "request-id": "req_fake"}
        message = fault.message or "Injected fault."
        if fault.kind == "rate_limit":
            message = "Number of requests has exceeded your per-minute rate limit."
            headers.update(fault.response_headers())
            if fault.retry_after is not None:
                reset = datetime.fromtimestamp(time.time() + fault.retry_after, UTC)
                headers["anthropic-ratelimit-requests-limit"] = "50"
                headers["anthropic-ratelimit-requests-remaining"] = "0"
                headers["anthropic-ratelimit-requests-reset"] = reset.isoformat()
        elif fault.kind == "context_window":
            limit, requested = [*_NUMBERS.findall(message), "0", "0"][:2]
            message = f"prompt is too long: {requested} tokens > {limit} maximum"
        elif fault.kind == "content_policy":
            message = "Output blocked by content filtering policy"
        else:
            headers.update(dict(fault.headers))
        return web.Response(body=anthropic_error(status, message), status=status, headers=headers)

    def _check(self, request: Request, body: Json) -> None:
        if not request.headers.get("anthropic-version"):
            raise BadRequest("anthropic-version: header is required")
        _check_fields(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: Field required (a non-empty list)")
        _check_messages(messages)
        if _thinking_on(body):
            _check_thinking(messages, self._signatures)
        for i, tool in enumerate(body.get("tools") or ()):
            if not (isinstance(tool, dict) and tool.get("name") and "input_schema" in tool):
                raise BadRequest(f"tools.{i}: name and input_schema are required")

    async def _messages(self, request: Request, record: Record, body: Json) -> Response:
        self._check(request, body)
        calls = list(self._tool_reply(body)) if self._tool_reply is not None else []
        text = "" if calls else (self._reply if isinstance(self._reply, str) else self._reply(body))
        system = body.get("system")
        chars = _text_chars(system if system is not None else "") + sum(
            _text_chars(m.get("content")) for m in body["messages"]
        )
        tools = [
            {"type": "tool_use", "id": f"toolu_{self.name}_{next(self._ids)}", "name": name,
             "input": dict(args)}
            for name, args in calls
        ]  # fmt: skip
        out_chars = len(text) + sum(len(orjson.dumps(t["input"])) for t in tools)
        usage = self._usage(body, chars, out_chars)
        stop = "tool_use" if tools else "end_turn"
        thought: list[dict[str, Any]] = []
        if _thinking_on(body):
            signature = f"sig-{self.name}-{next(self._ids)}"
            self._signatures.add(signature)
            thought = [{"type": "thinking", "thinking": _THOUGHT, "signature": signature}]
        message: dict[str, Any] = {
            "id": f"msg_{self.name}_{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": self._model_for(body),
            "content": thought + ([{"type": "text", "text": text}] if text else []) + tools,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not record.stream:
            record.status = 200
            return web.Response(body=orjson.dumps(message), headers=JSON_HEADERS)
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}  # fmt: skip
        frames = [_event("message_start", {"message": start}), _event("ping", {})]
        index = 0
        for thinking in thought:
            empty = {"type": "thinking", "thinking": "", "signature": ""}
            frames.append(_event("content_block_start", {"index": 0, "content_block": empty}))
            for kind, key in (("thinking_delta", "thinking"), ("signature_delta", "signature")):
                delta = {"type": kind, key: thinking[key]}
                frames.append(_event("content_block_delta", {"index": 0, "delta": delta}))
            frames.append(_event("content_block_stop", {"index": 0}))
            index = 1
        if text:
            block: dict[str, Any] = {"type": "text", "text": ""}
            frames.append(_event("content_block_start", {"index": index, "content_block": block}))
            for piece in split_text(text, self._stream_chunks):
                delta = {"type": "text_delta", "text": piece}
                frames.append(_event("content_block_delta", {"index": index, "delta": delta}))
            frames.append(_event("content_block_stop", {"index": index}))
            index += 1
        for tool in tools:
            block = {**tool, "input": {}}
            frames.append(_event("content_block_start", {"index": index, "content_block": block}))
            raw = orjson.dumps(tool["input"]).decode()
            for piece in split_text(raw, 2):
                delta = {"type": "input_json_delta", "partial_json": piece}
                frames.append(_event("content_block_delta", {"index": index, "delta": delta}))
            frames.append(_event("content_block_stop", {"index": index}))
            index += 1
        final = {"delta": {"stop_reason": stop, "stop_sequence": None},
                 "usage": {"output_tokens": usage["output_tokens"]}}  # fmt: skip
        frames += [_event("message_delta", final), _event("message_stop", {})]
        return await self._stream(request, record, frames)

    def _usage(self, body: Json, chars: int, out_chars: int) -> dict[str, int]:
        """Input tokens split as the API splits them: the cached prefix (written the
        first time, read after) apart from the rest."""
        prefix = _cache_prefix(body)
        usage = {"input_tokens": tokens_for(chars), "output_tokens": tokens_for(out_chars)}
        if prefix:
            cached = tokens_for(prefix)
            seen = prefix in self._cached
            self._cached.add(prefix)
            usage["input_tokens"] = max(1, usage["input_tokens"] - cached)
            usage["cache_creation_input_tokens"] = 0 if seen else cached
            usage["cache_read_input_tokens"] = cached if seen else 0
        return usage
