"""The Anthropic Messages API transport: OpenAI-shaped requests in, OpenAI-shaped
completions and chunks out.

Wire format (public API docs): ``POST {api_base}/messages`` with ``x-api-key`` and
``anthropic-version`` headers; a system prompt is a top-level field, ``max_tokens`` is
required, tools are ``{name, description, input_schema}`` and calls come back as
``tool_use`` content blocks; streams are SSE events ``message_start``,
``content_block_start/delta/stop``, ``message_delta``, ``message_stop``, ``ping`` and
``error``. Errors are ``{"type": "error", "error": {"type", "message"}}``; 529 is
``overloaded_error``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from yarl import URL

from interlock.config import Deployment
from interlock.errors import (
    BadRequestError,
    ContentPolicyViolationError,
    InterlockError,
    InternalServerError,
    RateLimitError,
    ServiceUnavailableError,
)
from interlock.providers.http import (
    error_body_fields,
    error_from_response,
    malformed,
    parse_retry_after,
    scrub,
)
from interlock.providers.native import (
    PARSE_ERRORS,
    NativeStream,
    NativeTransport,
    delta_choice,
    make_chunk,
)
from interlock.providers.params import (
    check_unsupported,
    content_text,
    image_url_of,
    merge_extra,
    parse_data_url,
    split_extra,
    tool_arguments,
)
from interlock.types import (
    ChatCompletion,
    ChatMessage,
    Choice,
    EmbeddingResponse,
    Request,
    Usage,
    token_count,
)

__all__ = ["DEFAULT_ANTHROPIC_VERSION", "AnthropicTransport", "anthropic_retry_after"]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Parameters whose value only restates Anthropic's default.
_NOOP: dict[str, Any] = {"n": 1}
_MAPPED = frozenset(
    ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "tools",
     "tool_choice", "parallel_tool_calls", "user", "response_format", "stream_options")
)  # fmt: skip
_ERROR_CLASSES: dict[str, type[InterlockError]] = {
    "overloaded_error": ServiceUnavailableError,
    "api_error": InternalServerError,
    "rate_limit_error": RateLimitError,
}


def anthropic_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait: ``retry-after`` if sent, else the latest reset (RFC 3339) among
    the ``anthropic-ratelimit-*`` limits that are used up (or, if none says so, the
    earliest reset)."""
    hint = parse_retry_after(headers)
    if hint is not None:
        return hint
    now = time.time() if now is None else now
    exhausted: list[float] = []
    resets: list[float] = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        value = headers.get(f"anthropic-ratelimit-{kind}-reset")
        if not value:
            continue
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        resets.append(at)
        if headers.get(f"anthropic-ratelimit-{kind}-remaining") == "0":
            exhausted.append(at)
    chosen = max(exhausted) if exhausted else min(resets) if resets else None
    return None if chosen is None else max(0.0, chosen - now)


def _translate_messages(messages: Any, d: Deployment) -> tuple[str | None, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        # Anthropic wants alternating turns; merge neighbours of the same role.
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise BadRequestError(f"messages[{i}] must be an object", deployment_id=d.id)
        role = m.get("role")
        content = m.get("content")
        if role in ("system", "developer"):
            system.append(content_text(content))
        elif role == "user":
            add("user", _user_blocks(content))
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            text = content_text(content)
            if text:
                blocks.append({"type": "text", "text": text})
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": fn.get("name"),
                        "input": tool_arguments(fn.get("arguments")),
                    }
                )
            add("assistant", blocks or [{"type": "text", "text": ""}])
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id"),
                "content": content_text(content),
            }
            add("user", [block])
        else:
            raise BadRequestError(
                f"messages[{i}].role {role!r} is not one of system, developer, user, "
                "assistant, tool",
                deployment_id=d.id,
            )
    return ("\n\n".join(system) if system else None), out


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return [{"type": "text", "text": content_text(content)}]
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "image_url":
            url = image_url_of(part)
            data = parse_data_url(url)
            source = (
                {"type": "base64", "media_type": data[0], "data": data[1]}
                if data is not None
                else {"type": "url", "url": url}
            )
            blocks.append({"type": "image", "source": source})
        else:
            raise BadRequestError(f"content part type {kind!r} is not supported by anthropic")
    return blocks


def _tool_choice(value: Any, parallel: Any) -> dict[str, Any] | None:
    if value is None:
        choice: dict[str, Any] | None = None
    elif value in ("auto", "none"):
        choice = {"type": value}
    elif value == "required":
        choice = {"type": "any"}
    elif isinstance(value, Mapping) and isinstance(value.get("function"), Mapping):
        choice = {"type": "tool", "name": value["function"].get("name")}
    else:
        raise BadRequestError("tool_choice must be auto, none, required or a function")
    if parallel is False:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return choice


def build_body(d: Deployment, request: Request, stream: bool) -> dict[str, Any]:
    """The Messages API body for an OpenAI-shaped chat request."""
    params, extra = split_extra(request.params)
    check_unsupported("anthropic", _unsupported(params), request.unsupported_params, d.id)
    system, messages = _translate_messages(request.messages, d)
    max_tokens = params.get("max_completion_tokens") or params.get("max_tokens")
    body: dict[str, Any] = {
        "model": d.model,
        "messages": messages,
        "max_tokens": int(max_tokens or d.max_output_tokens or DEFAULT_MAX_TOKENS),
    }
    if system is not None:
        body["system"] = system
    body.update(_sampling_fields(params))
    body.update(_tool_fields(params))
    if params.get("user"):
        body["metadata"] = {"user_id": str(params["user"])}
    if stream:
        body["stream"] = True
    return merge_extra(body, extra, deep=False)


def _unsupported(params: Mapping[str, Any]) -> list[str]:
    """The parameters Anthropic has no equivalent for; a plain-text response_format is
    what it does anyway."""
    unsupported = [
        k for k, v in params.items() if k not in _MAPPED and not (k in _NOOP and v == _NOOP[k])
    ]
    fmt = params.get("response_format")
    if fmt is not None and (not isinstance(fmt, Mapping) or fmt.get("type") != "text"):
        unsupported.append("response_format")
    return unsupported


def _sampling_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    fields = {key: params[key] for key in ("temperature", "top_p") if params.get(key) is not None}
    stop = params.get("stop")
    if stop:
        fields["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return fields


def _tool_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    # tool_choice is checked even without tools, so a bad value fails either way.
    choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
    tools = params.get("tools")
    if not tools:
        return {}
    fields: dict[str, Any] = {
        "tools": [
            {
                "name": fn.get("name"),
                "description": fn.get("description", ""),
                "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
            }
            for fn in (t.get("function") or {} for t in tools)
        ]
    }
    if choice is not None:
        fields["tool_choice"] = choice
    return fields


def _finish(reason: Any) -> str | None:
    return None if reason is None else STOP_REASONS.get(str(reason), str(reason))


def _usage(u: Mapping[str, Any] | None) -> Usage | None:
    if not u:
        return None
    prompt = (
        token_count(u.get("input_tokens"), "usage.input_tokens")
        + token_count(u.get("cache_creation_input_tokens"), "usage.cache_creation_input_tokens")
        + token_count(u.get("cache_read_input_tokens"), "usage.cache_read_input_tokens")
    )
    completion = token_count(u.get("output_tokens"), "usage.output_tokens")
    return Usage(prompt, completion, prompt + completion)


def parse_message(data: Any, d: Deployment) -> ChatCompletion:
    """A Messages API response as a `ChatCompletion`."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in data["content"]:
        kind = block["type"]
        if kind == "text":
            text.append(block["text"])
        elif kind == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": args},
                }
            )
    message = ChatMessage("assistant", "".join(text) if text or not calls else None, calls or None)
    return ChatCompletion(
        id=str(data.get("id", "")),
        model=str(data.get("model", d.model)),
        choices=[Choice(0, message, _finish(data.get("stop_reason")))],
        usage=_usage(data.get("usage")),
        created=int(time.time()),
        deployment_id=d.id or "",
        group=d.group,
    )


class AnthropicTransport(NativeTransport):
    """Speaks Anthropic's Messages API over the router's shared session."""

    provider = "anthropic"

    def _headers(self, d: Deployment, key: str | None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "anthropic-version": d.api_version or DEFAULT_ANTHROPIC_VERSION,
        }
        if key:
            headers["x-api-key"] = key
        return headers

    def _error(
        self, d: Deployment, status: int, headers: Mapping[str, str], raw: bytes, secret: str | None
    ) -> InterlockError:
        err = error_from_response(
            status, headers, raw, provider="anthropic", deployment_id=d.id or "", secret=secret
        )
        _, etype, _ = error_body_fields(raw)
        if status == 429 or etype == "rate_limit_error":
            return RateLimitError(
                err.message, status_code=status, deployment_id=d.id,
                retry_after=anthropic_retry_after(headers),
            )  # fmt: skip
        if etype == "overloaded_error" and not isinstance(err, ServiceUnavailableError):
            return ServiceUnavailableError(
                err.message, status_code=status, deployment_id=d.id,
                retry_after=parse_retry_after(headers),
            )  # fmt: skip
        if "content filtering policy" in err.message.lower():
            return ContentPolicyViolationError(err.message, status_code=status, deployment_id=d.id)
        return err

    def _url(self, d: Deployment) -> URL:
        return URL(f"{self._endpoint(d).base}/messages", encoded=True)

    async def chat(self, d: Deployment, request: Request, timeout: float) -> ChatCompletion:
        ep = self._endpoint(d)
        body = build_body(d, request, stream=False)
        data = await self._post(d, ep, self._url(d), body, timeout)
        try:
            return parse_message(data, d)
        except PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the parser's exception may quote the body

    async def open_stream(self, d: Deployment, request: Request, timeout: float) -> NativeStream:
        ep = self._endpoint(d)
        body = build_body(d, request, stream=True)
        return await self._open(d, ep, self._url(d), body, timeout, AnthropicStream)

    async def embed(self, d: Deployment, request: Request, timeout: float) -> EmbeddingResponse:
        raise BadRequestError(
            "anthropic has no embeddings API; route embeddings to an openai, azure or "
            "gemini deployment",
            deployment_id=d.id,
        )


class AnthropicStream(NativeStream):
    """Messages API stream events as `chat.completion.chunk`s."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._id = ""
        self._model = self.deployment.model
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # content block index -> tool_calls index

    def _chunk(self, **delta: Any) -> None:
        d = self.deployment
        self._emit(make_chunk(d, self._id, self._model, self.created, [delta_choice(**delta)]))

    def _feed(self, data: bytes) -> None:
        event = orjson.loads(data)
        kind = event["type"]
        if kind == "content_block_delta":
            delta = event["delta"]
            dtype = delta["type"]
            if dtype == "text_delta":
                self._chunk(content=delta["text"])
            elif dtype == "input_json_delta":
                index = self._tools[event["index"]]
                args = {"arguments": delta["partial_json"]}
                self._chunk(tool_calls=[{"index": index, "function": args}])
        elif kind == "content_block_start":
            block = event["content_block"]
            if block["type"] == "tool_use":
                index = self._tools[event["index"]] = len(self._tools)
                fn = {"name": block["name"], "arguments": ""}
                call = {"index": index, "id": block["id"], "type": "function", "function": fn}
                self._chunk(tool_calls=[call])
        elif kind == "message_start":
            message = event["message"]
            self._id = str(message.get("id", ""))
            self._model = str(message.get("model") or self._model)
            self._usage.update(message.get("usage") or {})
            self._chunk(role="assistant", content="")
        elif kind == "message_delta":
            self._usage.update(event.get("usage") or {})
            reason = (event.get("delta") or {}).get("stop_reason")
            self._chunk(finish=_finish(reason) or "stop")
        elif kind == "message_stop":
            self.finished = True
            usage = _usage(self._usage)
            if self.deployment.stream_usage and usage is not None:
                d = self.deployment
                self._emit(make_chunk(d, self._id, self._model, self.created, [], usage))
        elif kind == "error":
            err = event.get("error") or {}
            cls = _ERROR_CLASSES.get(str(err.get("type")), InternalServerError)
            text = scrub(str(err.get("message") or err.get("type")), self._secret)
            d = self.deployment
            raise cls(f"anthropic sent an error mid-stream: {text}", deployment_id=d.id)
        # ping, content_block_stop and unknown event types carry nothing for the caller.
