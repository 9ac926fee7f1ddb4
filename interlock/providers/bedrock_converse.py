"""OpenAI-shaped chat requests to Bedrock's Converse API body, and Converse responses
back to OpenAI-shaped completions.

Wire format: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
(request: ``messages`` of ``{role, content: [ContentBlock]}`` with roles ``user`` and
``assistant``, ``system: [{text}]``, ``inferenceConfig {maxTokens, temperature, topP,
stopSequences}``, ``toolConfig {tools: [{toolSpec: {name, description, inputSchema:
{json}}}], toolChoice: {auto|any|tool}}``; ContentBlocks ``text``, ``image {format,
source: {bytes | s3Location}}``, ``toolUse {toolUseId, name, input}``, ``toolResult
{toolUseId, content: [{text}], status}``; response ``output.message``, ``stopReason``,
``usage {inputTokens, outputTokens, totalTokens, cacheReadInputTokens,
cacheWriteInputTokens}``). In JSON, image bytes are base64 text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from interlock.config import Deployment
from interlock.errors import (
    BadRequestError,
    ContentPolicyViolationError,
    MalformedResponseError,
)
from interlock.providers.params import (
    check_unsupported,
    content_text,
    guess_media_type,
    image_url_of,
    merge_extra,
    parse_data_url,
    split_extra,
    tool_arguments,
)
from interlock.types import ChatCompletion, ChatMessage, Choice, Request, Usage

__all__ = ["STOP_REASONS", "build_converse", "finish_reason", "parse_converse", "usage_of"]

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}
# Stop reasons that mean no usable answer: a guardrail or the provider's filter stepped
# in (its canned message is not the model's answer), or the model's output was broken.
_REFUSED = frozenset(("guardrail_intervened", "content_filtered"))
_BROKEN = frozenset(("malformed_model_output", "malformed_tool_use"))
_INFERENCE = {
    "max_tokens": "maxTokens",
    "max_completion_tokens": "maxTokens",
    "temperature": "temperature",
    "top_p": "topP",
}
_MAPPED = frozenset((*_INFERENCE, "stop", "tools", "tool_choice", "stream_options"))
_NOOP: dict[str, Any] = {"n": 1, "parallel_tool_calls": True}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}  # fmt: skip


def _image_block(url: str) -> dict[str, Any]:
    data = parse_data_url(url)
    if data is not None:
        media, payload = data
        fmt = _IMAGE_FORMATS.get(media)
        if fmt is None:
            raise BadRequestError(f"bedrock takes png, jpeg, gif or webp images, not {media}")
        return {"image": {"format": fmt, "source": {"bytes": payload}}}
    if url.startswith("s3://"):
        fmt = _IMAGE_FORMATS.get(guess_media_type(url), "jpeg")
        return {"image": {"format": fmt, "source": {"s3Location": {"uri": url}}}}
    raise BadRequestError("bedrock takes images as base64 data URLs or s3:// URIs, not http(s)")


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        text = content_text(content)
        return [{"text": text}] if text else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"text": str(part["text"])})
        elif kind == "image_url":
            blocks.append(_image_block(image_url_of(part)))
        else:
            raise BadRequestError(f"content part type {kind!r} is not supported by bedrock")
    return blocks


def _assistant_blocks(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = content_text(m.get("content"))
    blocks: list[dict[str, Any]] = [{"text": text}] if text else []
    for call in m.get("tool_calls") or ():
        fn = call.get("function") or {}
        use = {"toolUseId": call.get("id"), "name": fn.get("name"),
               "input": tool_arguments(fn.get("arguments"))}  # fmt: skip
        blocks.append({"toolUse": use})
    return blocks


def _messages(messages: Any, d: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(system blocks, messages)``; neighbouring turns of one role are merged, since
    Converse wants them alternating (several tool results answer one assistant turn)."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise BadRequestError(f"messages[{i}] must be an object", deployment_id=d.id)
        role = m.get("role")
        if role in ("system", "developer"):
            text = content_text(m.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            add("user", _user_blocks(m.get("content")))
        elif role == "assistant":
            add("assistant", _assistant_blocks(m))
        elif role == "tool":
            result = {"toolUseId": m.get("tool_call_id"),
                      "content": [{"text": content_text(m.get("content"))}]}  # fmt: skip
            add("user", [{"toolResult": result}])
        else:
            raise BadRequestError(
                f"messages[{i}].role {role!r} is not one of system, developer, user, "
                "assistant, tool",
                deployment_id=d.id,
            )
    return system, out


def _tool_config(params: Mapping[str, Any], unsupported: list[str]) -> dict[str, Any] | None:
    tools = params.get("tools")
    choice = params.get("tool_choice")
    if choice == "none":
        # Converse has no "none": leaving the tools out would also forbid earlier
        # toolUse blocks in the conversation.
        unsupported.append("tool_choice")
        choice = None
    if not tools:
        return None
    specs = []
    for t in tools:
        fn = t.get("function") or {}
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        spec = {"name": fn.get("name"), "inputSchema": {"json": schema}}
        if fn.get("description"):
            spec["description"] = fn["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        config["toolChoice"] = {"tool": {"name": choice["function"].get("name")}}
    elif choice is not None:
        raise BadRequestError("tool_choice must be auto, none, required or a function")
    return config


def build_converse(d: Deployment, request: Request) -> dict[str, Any]:
    """The Converse (and ConverseStream) body for an OpenAI-shaped chat request."""
    params, extra = split_extra(request.params)
    unsupported = [
        k for k, v in params.items()
        if k not in _MAPPED and k != "response_format" and not (k in _NOOP and v == _NOOP[k])
    ]  # fmt: skip
    fmt = params.get("response_format")
    if fmt is not None and not (isinstance(fmt, Mapping) and fmt.get("type") == "text"):
        unsupported.append("response_format")
    tool_config = _tool_config(params, unsupported)
    check_unsupported("bedrock", unsupported, request.unsupported_params, d.id)
    system, messages = _messages(request.messages, d)
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    inference = {theirs: params[ours] for ours, theirs in _INFERENCE.items()
                 if params.get(ours) is not None}  # fmt: skip
    if "maxTokens" not in inference and d.max_output_tokens:
        inference["maxTokens"] = d.max_output_tokens
    stop = params.get("stop")
    if stop:
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if inference:
        body["inferenceConfig"] = inference
    if tool_config is not None:
        body["toolConfig"] = tool_config
    # e.g. {"additionalModelRequestFields": {"top_k": 50}, "guardrailConfig": {...}}
    return merge_extra(body, extra, deep=True)


def usage_of(u: Mapping[str, Any] | None) -> Usage | None:
    if not u:
        return None
    prompt = (
        int(u.get("inputTokens") or 0)
        + int(u.get("cacheReadInputTokens") or 0)
        + int(u.get("cacheWriteInputTokens") or 0)
    )
    completion = int(u.get("outputTokens") or 0)
    return Usage(prompt, completion, prompt + completion)


def finish_reason(reason: Any, d: Deployment) -> str:
    """The OpenAI finish_reason of a Converse stopReason; refusals and broken output are
    errors (a guardrail's canned message is not an answer)."""
    reason = str(reason)
    if reason in _REFUSED:
        raise ContentPolicyViolationError(
            f"bedrock withheld the answer (stopReason {reason})",
            status_code=400,
            deployment_id=d.id,
        )
    if reason in _BROKEN:
        raise MalformedResponseError(
            f"bedrock: the model's output was malformed (stopReason {reason})", deployment_id=d.id
        )
    return STOP_REASONS.get(reason, "stop")


def parse_converse(data: Any, d: Deployment) -> ChatCompletion:
    """A Converse response as a `ChatCompletion`."""
    finish = finish_reason(data["stopReason"], d)
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in data["output"]["message"]["content"]:
        if "text" in block:
            text.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            args = orjson.dumps(use.get("input") or {}).decode()
            calls.append({"id": use["toolUseId"], "type": "function",
                          "function": {"name": use["name"], "arguments": args}})  # fmt: skip
        # reasoningContent, citations and other blocks have no OpenAI field here.
    message = ChatMessage("assistant", "".join(text) if text or not calls else None, calls or None)
    return ChatCompletion(
        id=f"chatcmpl-bedrock-{uuid.uuid4().hex}",
        model=d.model,
        choices=[Choice(0, message, finish)],
        usage=usage_of(data.get("usage")),
        created=int(time.time()),
        deployment_id=d.id or "",
        group=d.group,
    )
