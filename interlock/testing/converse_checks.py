"""The checks `FakeBedrock` makes of a Converse body, as the API makes them: known
fields, alternating roles, one member per ContentBlock, ``toolConfig`` with tool
blocks, ``toolResult`` ids, and, with Claude's thinking on, the reasoning of a
tool-calling turn sent back first and signed
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ReasoningContentBlock.html).
"""

from __future__ import annotations

from typing import Any

from interlock.testing.wire import BadRequest, Json

__all__ = ["check_converse", "check_thinking", "thinking_on"]

_FIELDS = frozenset(
    (
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
    )
)
_INFERENCE = frozenset(("maxTokens", "temperature", "topP", "stopSequences"))
_BLOCKS = frozenset(
    (
        "text",
        "image",
        "document",
        "video",
        "toolUse",
        "toolResult",
        "guardContent",
        "reasoningContent",
        "cachePoint",
    )
)
_NO_THINKING = (
    "The model returned the following errors: messages.{i}.content.0.type: Expected "
    "`thinking` or `redacted_thinking`, but found `{kind}`. When `thinking` is enabled, a "
    "final `assistant` message must start with a thinking block."
)


def thinking_on(body: Json) -> bool:
    fields = body.get("additionalModelRequestFields")
    thinking = fields.get("thinking") if isinstance(fields, dict) else None
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def check_thinking(messages: list[Any], signatures: set[str]) -> None:
    """The last assistant turn, when it called a tool, starts with its reasoning,
    every signature in it one this fake issued."""
    turns = [(i, m) for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if not turns:
        return
    i, last = turns[-1]
    blocks = last["content"]
    if any("toolUse" in b for b in blocks) and "reasoningContent" not in blocks[0]:
        kind = "tool_use" if "toolUse" in blocks[0] else "text"
        raise BadRequest(_NO_THINKING.format(i=i, kind=kind))
    for b in blocks:
        signed = (b.get("reasoningContent") or {}).get("reasoningText")
        if signed is not None and signed.get("signature") not in signatures:
            raise BadRequest(f"messages.{i}: Invalid `signature` in `thinking` block")


def check_converse(body: Json) -> int:
    """Validates a Converse body as the API would; the prompt's character count."""
    for key in body:
        if key not in _FIELDS:
            raise BadRequest(f"Malformed input request: extraneous key [{key}] is not permitted")
    for key in body.get("inferenceConfig") or {}:
        if key not in _INFERENCE:
            raise BadRequest(f"inferenceConfig: extraneous key [{key}] is not permitted")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("A conversation must start with a user message.")
    chars = sum(len(str(b.get("text") or "")) for b in body.get("system") or ())
    seen_tools: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise BadRequest(
                "A conversation must alternate between user and assistant "
                "roles, starting with a user message."
            )
        content = m.get("content")
        if not isinstance(content, list) or not content:
            raise BadRequest(f"messages.{i}.content: must be a non-empty list")
        for block in content:
            chars += _check_block(block, role, seen_tools, body)
    return chars


def _check_reasoning(r: Any, role: str) -> None:
    # A UNION: exactly one of reasoningText {text, signature} or redactedContent (base64
    # in JSON), and only in the assistant's turns, which are the model's own.
    one = isinstance(r, dict) and len(r) == 1
    if (
        role != "assistant"
        or not one
        or not (
            isinstance(r.get("reasoningText"), dict) or isinstance(r.get("redactedContent"), str)
        )
    ):
        raise BadRequest("reasoningContent: one of reasoningText or redactedContent")


def _check_block(block: Any, role: str, seen_tools: set[str], body: Json) -> int:
    keys = block.keys() & _BLOCKS if isinstance(block, dict) else set()
    if len(keys) != 1 or len(block) != 1:
        raise BadRequest("A content block must hold exactly one member.")
    kind = next(iter(keys))
    if kind in ("toolUse", "toolResult") and "toolConfig" not in body:
        raise BadRequest(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    if kind == "toolUse" and role == "assistant":
        seen_tools.add(str(block["toolUse"].get("toolUseId")))
    elif kind == "toolResult" and block["toolResult"].get("toolUseId") not in seen_tools:
        raise BadRequest("toolResult blocks must answer a toolUse of the previous turn.")
    elif kind == "image":
        image = block["image"]
        if image.get("format") not in ("png", "jpeg", "gif", "webp") or not (
            image.get("source") or {}
        ).keys() & {"bytes", "s3Location"}:
            raise BadRequest("image: format must be png, jpeg, gif or webp, with a source")
    elif kind == "reasoningContent":
        _check_reasoning(block["reasoningContent"], role)
    elif kind == "text":
        if not block["text"]:
            raise BadRequest("The text field in the ContentBlock object is blank.")
        return len(block["text"])
    return 0
