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

Reasoning (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ReasoningContentBlock.html):
a ``reasoningContent`` ContentBlock holds one of ``reasoningText {text, signature}``
or ``redactedContent`` (bytes, so base64 text in JSON). Responses carry them before
the answer; an assistant turn sent back carries them first, unchanged, which Claude
requires of a turn that called a tool while thinking is on. Claude's extended thinking
is switched on through ``additionalModelRequestFields: {"thinking": {"type":
"enabled", "budget_tokens": N}}``, the Anthropic Messages API's own field, which
Bedrock passes to the model.
"""

from __future__ import annotations

import base64
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
from interlock.providers.anthropic_body import DEFAULT_MAX_TOKENS, thinking_for
from interlock.providers.params import (
    check_unsupported,
    content_text,
    guess_media_type,
    image_url_of,
    merge_extra,
    parse_data_url,
    reasoning_blocks_for,
    split_extra,
    tool_arguments,
)
from interlock.types import (
    ChatCompletion,
    ChatMessage,
    Choice,
    PromptTokensDetails,
    ReasoningBlock,
    Request,
    Usage,
)

__all__ = [
    "STOP_REASONS",
    "build_converse",
    "finish_reason",
    "is_claude",
    "join_redacted",
    "parse_converse",
    "reasoning_block",
    "usage_of",
]

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


def is_claude(d: Deployment) -> bool:
    """Whether the deployment's model is Claude: a model id, an inference profile
    (``us.anthropic.claude-…``) or a foundation-model ARN all name it. An application
    inference profile's ARN names no model; it takes thinking through ``extra_body``."""
    return "anthropic.claude" in d.model


def reasoning_block(text: str, signature: str, redacted: str) -> ReasoningBlock | None:
    """The block to keep for one ``reasoningContent``: what Bedrock signed or redacted.
    Unsigned reasoning text (models that do not sign theirs) is only text: there is
    nothing the model needs back."""
    if redacted:
        return {"type": "redacted_thinking", "data": redacted, "provider": "bedrock"}
    if signature:
        return {"type": "thinking", "thinking": text, "signature": signature,
                "provider": "bedrock"}  # fmt: skip
    return None


def join_redacted(pieces: list[str]) -> str:
    """Base64 pieces of one ``redactedContent`` (a stream sends it in parts) as one
    base64 text: the bytes are joined, since padded base64 texts do not concatenate."""
    if len(pieces) == 1:
        return pieces[0]
    return base64.b64encode(b"".join(base64.b64decode(p) for p in pieces)).decode()


def _reasoning_out(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    # Only Bedrock's own blocks: another provider's signatures mean nothing here.
    blocks: list[dict[str, Any]] = []
    for b in reasoning_blocks_for(m, "bedrock"):
        if b.get("type") == "redacted_thinking":
            blocks.append({"reasoningContent": {"redactedContent": str(b.get("data") or "")}})
            continue
        text: dict[str, Any] = {"text": str(b.get("thinking") or "")}
        if b.get("signature"):
            text["signature"] = str(b["signature"])
        blocks.append({"reasoningContent": {"reasoningText": text}})
    return blocks


def _assistant_blocks(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = content_text(m.get("content"))
    # Reasoning first: Claude refuses a tool-calling turn whose thinking does not lead.
    blocks = _reasoning_out(m)
    if text:
        blocks.append({"text": text})
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


def _inference(params: Mapping[str, Any], d: Deployment) -> dict[str, Any]:
    inference = {theirs: params[ours] for ours, theirs in _INFERENCE.items()
                 if params.get(ours) is not None}  # fmt: skip
    if "maxTokens" not in inference and d.max_output_tokens:
        inference["maxTokens"] = d.max_output_tokens
    stop = params.get("stop")
    if stop:
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return inference


def _thinking(effort: Any, inference: dict[str, Any], explicit: bool) -> dict[str, Any]:
    """Claude's ``thinking`` for a ``reasoning_effort``, with the Anthropic transport's
    budgets and rule: the budget is part of ``maxTokens``; a maximum the caller gave is
    kept (the budget cut to fit), otherwise the budget is added to the deployment's
    maximum or Anthropic's default."""
    base = int(inference.get("maxTokens") or DEFAULT_MAX_TOKENS)
    thinking, max_tokens = thinking_for(effort, base, explicit, "bedrock")
    if thinking["type"] == "enabled":
        inference["maxTokens"] = max_tokens
    return thinking


def build_converse(d: Deployment, request: Request) -> dict[str, Any]:
    """The Converse (and ConverseStream) body for an OpenAI-shaped chat request."""
    params, extra = split_extra(request.params)
    # reasoning_effort is Claude's thinking; other families have no common field.
    mapped = _MAPPED | {"reasoning_effort"} if is_claude(d) else _MAPPED
    unsupported = [
        k for k, v in params.items()
        if k not in mapped and k != "response_format" and not (k in _NOOP and v == _NOOP[k])
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
    inference = _inference(params, d)
    if "reasoning_effort" in mapped and params.get("reasoning_effort") is not None:
        explicit = any(params.get(k) is not None for k in ("max_tokens", "max_completion_tokens"))
        thinking = _thinking(params["reasoning_effort"], inference, explicit)
        body["additionalModelRequestFields"] = {"thinking": thinking}
    if inference:
        body["inferenceConfig"] = inference
    if tool_config is not None:
        body["toolConfig"] = tool_config
    # e.g. {"additionalModelRequestFields": {"top_k": 50}, "guardrailConfig": {...}},
    # merged one level down so it adds to the mapped thinking.
    return merge_extra(body, extra, deep=True)


def usage_of(u: Mapping[str, Any] | None) -> Usage | None:
    """`prompt_tokens` counts every input token, as OpenAI does; the cache reads and
    writes within it are in `prompt_tokens_details`, so they can be priced apart."""
    if not u:
        return None
    read = int(u.get("cacheReadInputTokens") or 0)
    written = int(u.get("cacheWriteInputTokens") or 0)
    prompt = int(u.get("inputTokens") or 0) + read + written
    completion = int(u.get("outputTokens") or 0)
    usage = Usage(prompt, completion, prompt + completion)
    if "cacheReadInputTokens" in u or "cacheWriteInputTokens" in u:
        usage.prompt_tokens_details = PromptTokensDetails(read, written)
    return usage


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


def _reasoning_of(content: Mapping[str, Any]) -> tuple[str, ReasoningBlock | None]:
    """``(text, block to keep)`` of one ``reasoningContent`` ContentBlock."""
    if "redactedContent" in content:
        return "", reasoning_block("", "", str(content["redactedContent"]))
    r = content.get("reasoningText") or {}
    text = str(r.get("text") or "")
    return text, reasoning_block(text, str(r.get("signature") or ""), "")


def parse_converse(data: Any, d: Deployment) -> ChatCompletion:
    """A Converse response as a `ChatCompletion`."""
    finish = finish_reason(data["stopReason"], d)
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    thought: list[str] = []
    blocks: list[ReasoningBlock] = []
    for block in data["output"]["message"]["content"]:
        if "text" in block:
            text.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            args = orjson.dumps(use.get("input") or {}).decode()
            calls.append({"id": use["toolUseId"], "type": "function",
                          "function": {"name": use["name"], "arguments": args}})  # fmt: skip
        elif "reasoningContent" in block:
            piece, kept = _reasoning_of(block["reasoningContent"])
            thought.append(piece)
            blocks += [kept] if kept is not None else []
        # citations and other blocks have no OpenAI field here.
    message = ChatMessage("assistant", "".join(text) if text or not calls else None, calls or None)
    message.reasoning_content = "".join(thought) or None
    message.reasoning_blocks = blocks or None
    return ChatCompletion(
        id=f"chatcmpl-bedrock-{uuid.uuid4().hex}",
        model=d.model,
        choices=[Choice(0, message, finish)],
        usage=usage_of(data.get("usage")),
        created=int(time.time()),
        deployment_id=d.id or "",
        group=d.group,
    )
