"""The Anthropic Messages API request body for an OpenAI-shaped chat request.

Reference: https://docs.anthropic.com/en/api/messages. The system prompt is a
top-level field (a string, or text blocks when a part carries ``cache_control``);
``max_tokens`` is required; tools are ``{name, description, input_schema, strict}``;
structured output is ``output_config.format``; extended thinking is ``thinking``, and
thinking blocks of an earlier turn go back first in that assistant turn, signed as
they came.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interlock.config import Deployment
from interlock.errors import BadRequestError
from interlock.providers.params import (
    REASONING_BUDGETS,
    check_unsupported,
    content_text,
    image_url_of,
    merge_extra,
    parse_data_url,
    reasoning_blocks_for,
    split_extra,
    tool_arguments,
)
from interlock.types import Request

__all__ = ["DEFAULT_MAX_TOKENS", "build_body", "thinking_for"]

DEFAULT_MAX_TOKENS = 4096

# Parameters whose value only restates Anthropic's default.
_NOOP: dict[str, Any] = {"n": 1}
_MAPPED = frozenset(
    ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "tools",
     "tool_choice", "parallel_tool_calls", "user", "response_format", "stream_options",
     "reasoning_effort")
)  # fmt: skip
_MIN_BUDGET = 1024  # the smallest budget_tokens the API takes


def _cache(part: Mapping[str, Any]) -> dict[str, Any]:
    # Prompt caching marks a block with `cache_control`; it must reach the block.
    control = part.get("cache_control")
    return {"cache_control": dict(control)} if isinstance(control, Mapping) else {}


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return [
            {"type": "text", "text": str(p.get("text") or ""), **_cache(p)}
            for p in content
            if isinstance(p, Mapping) and p.get("type", "text") == "text"
        ]
    return [{"type": "text", "text": content_text(content)}]


def _system_field(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
    """A string as before, unless a part asks to be cached: then text blocks, which is
    where Anthropic reads `cache_control`."""
    if not parts:
        return None
    if any("cache_control" in p for p in parts):
        return parts
    return "\n\n".join(p["text"] for p in parts)


def _assistant_blocks(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    # Thinking goes first, unchanged: the API checks its signature, and requires it in
    # the turn that made a tool call when thinking is on.
    for b in reasoning_blocks_for(m, "anthropic"):
        if b.get("type") == "redacted_thinking":
            blocks.append({"type": "redacted_thinking", "data": str(b.get("data") or "")})
        elif b.get("signature"):
            blocks.append(
                {"type": "thinking", "thinking": str(b.get("thinking") or ""),
                 "signature": str(b["signature"])}
            )  # fmt: skip
    content = m.get("content")
    blocks += [b for b in _text_blocks(content) if b["text"]]
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
    return blocks or [{"type": "text", "text": ""}]


def _translate_messages(
    messages: Any, d: Deployment
) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
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
            system += _text_blocks(content)
        elif role == "user":
            add("user", _user_blocks(content, m))
        elif role == "assistant":
            add("assistant", _assistant_blocks(m))
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id"),
                "content": content_text(content),
                **_cache(m),
            }
            add("user", [block])
        else:
            raise BadRequestError(
                f"messages[{i}].role {role!r} is not one of system, developer, user, "
                "assistant, tool",
                deployment_id=d.id,
            )
    return _system_field(system), out


def _user_blocks(content: Any, message: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        # A message-level cache_control marks its one block.
        return [{"type": "text", "text": content_text(content), **_cache(message)}]
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("text") or ""), **_cache(part)})
        elif kind == "image_url":
            url = image_url_of(part)
            data = parse_data_url(url)
            source = (
                {"type": "base64", "media_type": data[0], "data": data[1]}
                if data is not None
                else {"type": "url", "url": url}
            )
            blocks.append({"type": "image", "source": source, **_cache(part)})
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
    # `none` calls no tool, so it has no parallel setting (the API defines none).
    if parallel is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return choice


def _output_format(fmt: Any) -> dict[str, Any] | None:
    """``output_config.format`` for an OpenAI ``response_format``; None for plain text.
    A ``json_object`` is any object: the schema ``{"type": "object"}``."""
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_schema", "schema": {"type": "object"}}
    schema = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if not isinstance(schema, Mapping):
        raise BadRequestError("response_format must be text, json_object or json_schema")
    return {"type": "json_schema", "schema": dict(schema)}


def thinking_for(
    effort: Any, max_tokens: int, explicit: bool, provider: str = "anthropic"
) -> tuple[dict[str, Any], int]:
    """``thinking`` for a ``reasoning_effort``, and the ``max_tokens`` to send: the
    budget is part of ``max_tokens``, which must stay above it. Shared with Claude on
    Bedrock (`provider` names the transport in the error), which takes the same
    object."""
    if effort == "none":
        return {"type": "disabled"}, max_tokens
    budget = REASONING_BUDGETS.get(str(effort))
    if budget is None:
        raise BadRequestError(
            f"reasoning_effort must be one of none, {', '.join(REASONING_BUDGETS)}"
        )
    if not explicit:
        return {"type": "enabled", "budget_tokens": budget}, max_tokens + budget
    budget = min(budget, max_tokens - 1)
    if budget < _MIN_BUDGET:
        raise BadRequestError(
            f"reasoning_effort on {provider} needs max_tokens > {_MIN_BUDGET} (the smallest "
            "thinking budget)"
        )
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def build_body(d: Deployment, request: Request, stream: bool) -> dict[str, Any]:
    """The Messages API body for an OpenAI-shaped chat request."""
    params, extra = split_extra(request.params)
    unsupported = [
        k for k, v in params.items() if k not in _MAPPED and not (k in _NOOP and v == _NOOP[k])
    ]
    check_unsupported("anthropic", unsupported, request.unsupported_params, d.id)
    system, messages = _translate_messages(request.messages, d)
    given = params.get("max_completion_tokens") or params.get("max_tokens")
    max_tokens = int(given or d.max_output_tokens or DEFAULT_MAX_TOKENS)
    body: dict[str, Any] = {"model": d.model, "messages": messages}
    if params.get("reasoning_effort") is not None:
        body["thinking"], max_tokens = thinking_for(
            params["reasoning_effort"], max_tokens, given is not None
        )
    body["max_tokens"] = max_tokens
    if system is not None:
        body["system"] = system
    body.update(_sampling_fields(params))
    body.update(_tool_fields(params))
    fmt = _output_format(params.get("response_format"))
    if fmt is not None:
        body["output_config"] = {"format": fmt}
    if params.get("user"):
        body["metadata"] = {"user_id": str(params["user"])}
    if stream:
        body["stream"] = True
    if "output_config" in body and isinstance(extra.get("output_config"), Mapping):
        # e.g. output_config.effort from extra_body beside the mapped format.
        extra = {**extra, "output_config": {**body["output_config"], **extra["output_config"]}}
    return merge_extra(body, extra, deep=False)


def _sampling_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    fields = {key: params[key] for key in ("temperature", "top_p") if params.get(key) is not None}
    stop = params.get("stop")
    if stop:
        fields["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return fields


def _tool(fn: Mapping[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": fn.get("name"),
        "description": fn.get("description", ""),
        "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
    }
    if fn.get("strict") is not None:
        tool["strict"] = bool(fn["strict"])
    return tool


def _tool_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    # tool_choice is checked even without tools, so a bad value fails either way.
    choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
    tools = params.get("tools")
    if not tools:
        return {}
    fields: dict[str, Any] = {"tools": [_tool(t.get("function") or {}) for t in tools]}
    if choice is not None:
        fields["tool_choice"] = choice
    return fields
