"""Gemini generateContent responses and stream events as OpenAI-shaped results.

Reference: https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse.
Each candidate is a choice; ``thought`` parts are reasoning (``reasoning_content``),
and every ``thoughtSignature`` is kept as a reasoning block so it can go back
(https://ai.google.dev/gemini-api/docs/thought-signatures). With several candidates,
one that was blocked or failed is kept as a choice without content; only when every
candidate came back empty is the call an error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from interlock.config import Deployment
from interlock.errors import (
    BadRequestError,
    ContentPolicyViolationError,
    InterlockError,
    InternalServerError,
    MalformedResponseError,
)
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

__all__ = ["FINISH_REASONS", "GeminiStream", "parse_response", "usage_of"]

_BLOCKED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "LANGUAGE", "MODEL_ARMOR")  # fmt: skip
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(_BLOCKED, "content_filter"),
}
"""Gemini ``finishReason`` -> OpenAI ``finish_reason``; any other reason is ``stop``
when the candidate has content, and an error when it has none (see `empty_error`)."""
# Empty candidates ended by these are the request's fault, not the deployment's.
_REQUEST_FAULTS = frozenset(("UNEXPECTED_TOOL_CALL", "MISSING_THOUGHT_SIGNATURE"))


def usage_of(u: Mapping[str, Any] | None) -> Usage | None:
    if not u:
        return None
    names = ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "totalTokenCount")
    prompt, out, thoughts, total = (token_count(u.get(k), f"usageMetadata.{k}") for k in names)
    completion = out + thoughts
    usage = Usage(prompt, completion, total or prompt + completion)
    if "cachedContentTokenCount" in u:
        cached = token_count(u["cachedContentTokenCount"], "usageMetadata.cachedContentTokenCount")
        usage.prompt_tokens_details = PromptTokensDetails(cached)
    if "thoughtsTokenCount" in u:
        usage.completion_tokens_details = CompletionTokensDetails(thoughts)
    return usage


def check_blocked(data: Mapping[str, Any], d: Deployment) -> None:
    reason = (data.get("promptFeedback") or {}).get("blockReason")
    if reason:
        raise ContentPolicyViolationError(
            f"gemini blocked the prompt (blockReason {reason})", status_code=400, deployment_id=d.id
        )


class _Parts:
    """What one candidate's parts add up to (for a stream: one event's parts)."""

    def __init__(self, parts: list[Any], first_call: int) -> None:
        self.text: list[str] = []
        self.thought: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.blocks: list[ReasoningBlock] = []
        for part in parts:
            self._add(part, first_call)

    def _add(self, part: Mapping[str, Any], first_call: int) -> None:
        sig = part.get("thoughtSignature")
        if "functionCall" in part:
            fc = part["functionCall"]
            call_id = str(fc.get("id") or f"call_{first_call + len(self.calls)}")
            args = orjson.dumps(fc.get("args") or {}).decode()
            self.calls.append({"id": call_id, "type": "function",
                               "function": {"name": fc["name"], "arguments": args}})  # fmt: skip
            if sig:
                self.blocks.append({"type": "thinking", "thinking": "", "signature": str(sig),
                                    "provider": "gemini", "tool_call_id": call_id})  # fmt: skip
            return
        if part.get("thought"):
            self.thought.append(str(part.get("text") or ""))
        elif "text" in part:
            text = part["text"]
            if not isinstance(text, str):  # not what the API sends: a malformed body
                raise TypeError("a part's text is not a string")
            self.text.append(text)
        if sig or part.get("thought"):
            thought = str(part.get("text") or "") if part.get("thought") else ""
            block: ReasoningBlock = {"type": "thinking", "thinking": thought, "provider": "gemini"}
            if sig:
                block["signature"] = str(sig)
            self.blocks.append(block)

    @property
    def empty(self) -> bool:
        return not any(self.text) and not self.calls

    def message(self) -> ChatMessage:
        text = "".join(self.text)
        m = ChatMessage("assistant", text if text or not self.calls else None, self.calls or None)
        if self.thought:
            m.reasoning_content = "".join(self.thought)
        m.reasoning_blocks = self.blocks or None
        return m


def finish_of(cand: Mapping[str, Any], calls: bool) -> tuple[str | None, dict[str, Any] | None]:
    """OpenAI's finish reason, and the choice's extra fields keeping Gemini's own reason
    and ``finishMessage``."""
    reason = cand.get("finishReason")
    if reason is None or reason == "FINISH_REASON_UNSPECIFIED":
        return None, None
    finish = FINISH_REASONS.get(str(reason), "stop")
    extra: dict[str, Any] = {"native_finish_reason": str(reason)}
    if cand.get("finishMessage"):
        extra["finish_message"] = str(cand["finishMessage"])
    return ("tool_calls" if calls and finish == "stop" else finish), extra


def empty_error(cand: Mapping[str, Any], d: Deployment) -> InterlockError | None:
    """The error for a candidate that ended with nothing to show; None when a plain
    ``STOP`` or ``MAX_TOKENS`` left it empty (an empty answer, not a failure)."""
    reason = str(cand.get("finishReason") or "")
    if reason in ("", "STOP", "MAX_TOKENS", "FINISH_REASON_UNSPECIFIED"):
        return None
    message = f"gemini ended the answer with finishReason {reason}"
    if cand.get("finishMessage"):
        message += f": {cand['finishMessage']}"
    kw: dict[str, Any] = {"status_code": 400, "deployment_id": d.id}
    if FINISH_REASONS.get(reason) == "content_filter":
        return ContentPolicyViolationError(message.replace("ended", "withheld"), **kw)
    if reason in _REQUEST_FAULTS:
        return BadRequestError(message, **kw)
    return InternalServerError(message, status_code=500, deployment_id=d.id)


def parse_response(data: Any, d: Deployment) -> ChatCompletion:
    """A generateContent response as a `ChatCompletion`."""
    check_blocked(data, d)
    choices: list[Choice] = []
    errors: list[InterlockError] = []
    for i, cand in enumerate(data.get("candidates") or ()):
        parts = _Parts((cand.get("content") or {}).get("parts") or [], 0)
        finish, extra = finish_of(cand, bool(parts.calls))
        err = empty_error(cand, d) if parts.empty else None
        if err is not None:
            errors.append(err)
        choices.append(Choice(int(cand.get("index", i)), parts.message(), finish, None, extra))
    if not choices:
        raise MalformedResponseError("gemini answered without candidates", deployment_id=d.id)
    if len(errors) == len(choices):
        raise errors[0]
    return ChatCompletion(
        id=str(data.get("responseId") or ""),
        model=str(data.get("modelVersion") or d.model),
        choices=choices,
        usage=usage_of(data.get("usageMetadata")),
        created=int(time.time()),
        deployment_id=d.id or "",
        group=d.group,
    )


class GeminiStream(NativeStream):
    """streamGenerateContent events as `chat.completion.chunk`s."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._id = ""
        self._model = self.deployment.model
        self._usage: Usage | None = None
        self._started: set[int] = set()
        self._said: set[int] = set()  # candidates that produced content
        self._calls: dict[int, int] = {}
        self._open: set[int] = set()
        self._failed: list[InterlockError] = []

    def _feed(self, data: bytes) -> None:
        event = orjson.loads(data)
        d = self.deployment
        if isinstance(event.get("error"), Mapping):
            raise self._mid_stream_error(event["error"], data)
        check_blocked(event, d)
        self._id = self._id or str(event.get("responseId") or "")
        self._model = str(event.get("modelVersion") or self._model)
        self._usage = usage_of(event.get("usageMetadata")) or self._usage
        ended = False
        for i, cand in enumerate(event.get("candidates") or ()):
            index = int(cand.get("index", i))
            self._emit_content(index, cand)
            ended = self._emit_finish(index, cand) or ended
        if ended and not self._open:
            if self._failed and len(self._failed) == len(self._started):
                raise self._failed[0]
            self.finished = True
            if self._usage is not None and d.stream_usage:
                self._emit(make_chunk(d, self._id, self._model, self.created, [], self._usage))

    def _mid_stream_error(self, err: Mapping[str, Any], data: bytes) -> InterlockError:
        """``{"error": {code, message, status}}`` as an SSE event: the same error as
        the status would have been (the mapping of `GeminiTransport`)."""
        status = err.get("code")
        code = status if isinstance(status, int) and 400 <= status < 600 else 500
        mapper = self.error_mapper
        if mapper is None:
            text = f"gemini sent an error mid-stream (HTTP {code})"
            return InternalServerError(text, status_code=code, deployment_id=self.deployment.id)
        return mapper(self.deployment, code, {}, data, self._secret)

    def _emit_content(self, index: int, cand: Mapping[str, Any]) -> None:
        """A delta with the candidate's new text, reasoning and tool calls; its first
        also names the role, even when empty."""
        calls_so_far = self._calls.get(index, 0)
        parts = _Parts((cand.get("content") or {}).get("parts") or [], calls_so_far)
        text = "".join(parts.text)
        role = None
        if index not in self._started:
            self._started.add(index)
            self._open.add(index)
            role = "assistant"
        if not (text or parts.calls or parts.thought or parts.blocks or role):
            return
        for n, call in enumerate(parts.calls):
            call["index"] = calls_so_far + n
        self._calls[index] = calls_so_far + len(parts.calls)
        if text or parts.calls:
            self._said.add(index)
        choice = delta_choice(
            index, role=role, content=text or ("" if role else None),
            tool_calls=parts.calls or None,
            reasoning_content="".join(parts.thought) or None,
            reasoning_blocks=parts.blocks or None,
        )  # fmt: skip
        self._emit(make_chunk(self.deployment, self._id, self._model, self.created, [choice]))

    def _emit_finish(self, index: int, cand: Mapping[str, Any]) -> bool:
        """Closes the candidate if this event ends it; True when it did."""
        if cand.get("finishReason") is None or index not in self._open:
            return False
        finish, extra = finish_of(cand, self._calls.get(index, 0) > 0)
        if finish is None:
            return False
        if index not in self._said:
            err = empty_error(cand, self.deployment)
            if err is not None:
                self._failed.append(err)
        self._open.discard(index)
        choice = delta_choice(index, finish=finish, extra=extra)
        self._emit(make_chunk(self.deployment, self._id, self._model, self.created, [choice]))
        return True
