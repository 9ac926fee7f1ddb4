"""Result types (the request types live in interlock/request.py and are re-exported here).

Results are shaped like OpenAI's (`r.choices[0].message.content`, `r.usage.total_tokens`)
and say which deployment served them. They are plain slotted dataclasses built by
hand from the decoded JSON: validating every response with pydantic would cost more
than the whole routing decision.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from interlock.request import (
    CHAT_PARAM_NAMES,
    EMBEDDING_PARAM_NAMES,
    NO_METADATA,
    ChatParams,
    EmbeddingParams,
    Request,
    RequestKind,
    StrategyRef,
    new_request_id,
)
from interlock.result_parts import (
    MAX_COUNT,
    CompletionTokensDetails,
    InvalidCount,
    PromptTokensDetails,
    ReasoningBlock,
    Usage,
    extra_fields,
    token_count,
)

__all__ = [
    "CHAT_PARAM_NAMES",
    "EMBEDDING_PARAM_NAMES",
    "MAX_COUNT",
    "NO_METADATA",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "ChatParams",
    "Choice",
    "ChoiceDelta",
    "ChunkChoice",
    "CompletionTokensDetails",
    "Embedding",
    "EmbeddingParams",
    "EmbeddingResponse",
    "InvalidCount",
    "PromptTokensDetails",
    "ReasoningBlock",
    "Request",
    "RequestKind",
    "StrategyRef",
    "Usage",
    "new_request_id",
    "token_count",
]

_new = object.__new__
"""Makes a result object without its dataclass ``__init__`` (a Python frame and the
argument handling of every field): the parsers on the hot path set every field
themselves, in step with the dataclass (tests/unit/test_types.py compares them with
the constructors)."""


@dataclass(slots=True)
class ChatMessage:
    role: str
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    """The model's reasoning as text (Anthropic thinking, Gemini thought summaries,
    ``reasoning_content`` of OpenAI-compatible servers such as DeepSeek)."""
    reasoning_blocks: list[ReasoningBlock] | None = None
    """The reasoning as the provider signed it, to send back (see `ReasoningBlock`)."""
    annotations: list[dict[str, Any]] | None = None
    """OpenAI's ``annotations`` (``url_citation``); Anthropic web-search citations too."""
    extra: dict[str, Any] | None = None
    """Other fields the provider sent (e.g. Anthropic ``citations``)."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChatMessage:
        return _message(d)

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's message object; what to append to `messages` to go on."""
        return _message_dict(self)


@dataclass(slots=True)
class Choice:
    index: int
    message: ChatMessage
    finish_reason: str | None = None
    logprobs: Any = None
    extra: dict[str, Any] | None = None
    """Other fields of the choice (Azure ``content_filter_results``, the provider's
    own finish reason when it had to be translated: ``native_finish_reason``)."""


_MESSAGE = frozenset(
    ("role", "content", "tool_calls", "refusal", "reasoning_content", "reasoning_blocks",
     "annotations")
)  # fmt: skip
_CHOICE = frozenset(("index", "message", "finish_reason", "logprobs"))
_COMPLETION = frozenset(
    ("id", "model", "choices", "usage", "created", "system_fingerprint", "object",
     "service_tier")
)  # fmt: skip


def _message(m: Mapping[str, Any]) -> ChatMessage:
    return _choice({"message": m}, 0).message


def _choice(c: Mapping[str, Any], i: int) -> Choice:
    # The message is parsed here, not by a function of its own: one Python call less
    # per response (`_message` goes through this one).
    m = c["message"]
    msg = _new(ChatMessage)
    msg.role = m.get("role") or "assistant"
    msg.content = m.get("content")
    msg.tool_calls = m.get("tool_calls")
    msg.refusal = m.get("refusal")
    if len(m) > 2:
        # Rarely more than role and content: the rest only when present.
        msg.reasoning_content = m.get("reasoning_content")
        msg.reasoning_blocks = m.get("reasoning_blocks")
        msg.annotations = m.get("annotations")
        msg.extra = extra_fields(m, _MESSAGE)
    else:
        msg.reasoning_content = msg.reasoning_blocks = msg.annotations = msg.extra = None
    choice = _new(Choice)
    choice.index = c.get("index", i)
    choice.message = msg
    choice.finish_reason = c.get("finish_reason")
    choice.logprobs = c.get("logprobs")
    choice.extra = extra_fields(c, _CHOICE) if len(c) > 4 else None
    return choice


@dataclass(slots=True)
class ChatCompletion:
    """A complete chat response, plus where it came from."""

    id: str
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    created: int = 0
    system_fingerprint: str | None = None
    object: str = "chat.completion"
    deployment_id: str = ""
    """The deployment that served this response."""
    group: str = ""
    """The group (after aliases and fallbacks) that served it."""
    cached: bool = False
    """True when the response cache answered (no provider call of its own)."""
    service_tier: str | None = None
    extra: dict[str, Any] | None = None
    """Other top-level fields the provider sent (Azure ``prompt_filter_results``, ...)."""
    cost: float | None = None
    """US dollars this response cost at the deployment's prices (its own or built in:
    docs/operations.md); None when unknown (no usage, or no price for the model); 0.0
    from the response cache. A routing field like `deployment_id`: not in `to_dict()`."""
    request_id: str = ""
    """The id of the router call that returned it (`Router.acompletion`'s
    ``request_id=``, or one the router made); the same id is on every hook event and
    span of that call and on its errors."""

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> ChatCompletion:
        """Build from OpenAI's JSON; raises KeyError/TypeError/ValueError if it is not."""
        # hot path: runs once per response, a visible share of the router's cost per
        # request. No per-field conversions, no __init__ calls (see `_new`), no
        # iterator for the common single choice.
        raw = d["choices"]
        if len(raw) == 1:
            choices = [_choice(raw[0], 0)]
        else:
            choices = [_choice(c, i) for i, c in enumerate(raw)]
        u = d.get("usage")
        r = _new(cls)
        r.id = d.get("id") or ""
        r.model = d.get("model") or ""
        r.choices = choices
        r.usage = Usage.from_dict(u) if u else None
        r.created = d.get("created") or 0
        r.system_fingerprint = d.get("system_fingerprint")
        r.object = "chat.completion"
        r.deployment_id = deployment_id
        r.group = group
        r.cached = False
        r.service_tier = d.get("service_tier")
        # `extra_fields`' own first check, inline: nothing unknown, no call.
        r.extra = (
            None if type(d) is dict and _COMPLETION.issuperset(d) else extra_fields(d, _COMPLETION)
        )
        r.cost = None
        r.request_id = ""
        return r

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI JSON shape (without the routing fields)."""
        out: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [
                _withextra_fields(
                    {
                        "index": c.index,
                        "message": _message_dict(c.message),
                        "finish_reason": c.finish_reason,
                        "logprobs": c.logprobs,
                    },
                    c.extra,
                )
                for c in self.choices
            ],
        }
        return _tail(out, self.usage, self.system_fingerprint, self.service_tier, self.extra)


@dataclass(slots=True)
class ChoiceDelta:
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    """A piece of the reasoning text (join the pieces, as with `content`)."""
    reasoning_blocks: list[ReasoningBlock] | None = None
    """Whole reasoning blocks, each sent once when complete (append them)."""
    annotations: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None


@dataclass(slots=True)
class ChunkChoice:
    index: int
    delta: ChoiceDelta
    finish_reason: str | None = None
    logprobs: Any = None
    extra: dict[str, Any] | None = None


_DELTA = frozenset(
    ("role", "content", "tool_calls", "refusal", "reasoning_content", "reasoning_blocks",
     "annotations")
)  # fmt: skip
_CHUNK_CHOICE = _CHOICE | {"delta"}
_NO_FIELDS: Mapping[str, Any] = {}
_CHUNK = frozenset(
    ("id", "model", "choices", "usage", "created", "object", "system_fingerprint",
     "service_tier")
)  # fmt: skip


@dataclass(slots=True)
class ChatCompletionChunk:
    """One event of a streamed chat response."""

    id: str
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    created: int = 0
    object: str = "chat.completion.chunk"
    deployment_id: str = ""
    group: str = ""
    cached: bool = False
    """True when replayed from the response cache."""
    system_fingerprint: str | None = None
    service_tier: str | None = None
    extra: dict[str, Any] | None = None

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> ChatCompletionChunk:
        # hot path: runs for every chunk of every stream (three objects per chunk).
        # Made without calling their __init__ (a Python frame and argument handling
        # each), every field set here: keep in step with the dataclasses
        # (tests/unit/test_types.py compares with the constructors). No bound method,
        # and no iterator for the common single choice: each is one more allocation.
        raw = d["choices"]
        if len(raw) == 1:
            choices = [_chunk_choice(raw[0], 0)]
        else:
            choices = [_chunk_choice(c, i) for i, c in enumerate(raw)]
        u = d.get("usage")
        chunk = _new(cls)
        chunk.id = str(d.get("id", ""))
        chunk.model = str(d.get("model", ""))
        chunk.choices = choices
        chunk.usage = Usage.from_dict(u) if u else None
        chunk.created = int(d.get("created") or 0)
        chunk.object = "chat.completion.chunk"
        chunk.deployment_id = deployment_id
        chunk.group = group
        chunk.cached = False
        chunk.system_fingerprint = d.get("system_fingerprint")
        chunk.service_tier = d.get("service_tier")
        # `extra_fields`' own first check, inline: nothing unknown, no call.
        chunk.extra = None if type(d) is dict and _CHUNK.issuperset(d) else extra_fields(d, _CHUNK)
        return chunk

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's ``chat.completion.chunk`` JSON (without the routing fields)."""
        out: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [
                _withextra_fields(
                    {
                        "index": c.index,
                        "delta": _delta_dict(c.delta),
                        "finish_reason": c.finish_reason,
                        "logprobs": c.logprobs,
                    },
                    c.extra,
                )
                for c in self.choices
            ],
        }
        return _tail(out, self.usage, self.system_fingerprint, self.service_tier, self.extra)


def _chunk_choice(c: Mapping[str, Any], i: int) -> ChunkChoice:
    # Made as `ChatCompletionChunk.from_dict` makes the chunk: every field set here.
    choice = _new(ChunkChoice)
    choice.index = int(c.get("index", i))
    choice.delta = _delta(c.get("delta") or _NO_FIELDS)
    choice.finish_reason = c.get("finish_reason")
    choice.logprobs = c.get("logprobs")
    choice.extra = extra_fields(c, _CHUNK_CHOICE) if len(c) > 4 else None
    return choice


def _delta(d: Mapping[str, Any]) -> ChoiceDelta:
    # Made as `ChatCompletionChunk.from_dict` makes the chunk: every field set here.
    delta = _new(ChoiceDelta)
    delta.role = d.get("role")
    delta.content = d.get("content")
    delta.tool_calls = d.get("tool_calls")
    delta.refusal = d.get("refusal")
    if len(d) > 1:
        delta.reasoning_content = d.get("reasoning_content")
        delta.reasoning_blocks = d.get("reasoning_blocks")
        delta.annotations = d.get("annotations")
        delta.extra = extra_fields(d, _DELTA)
    else:
        delta.reasoning_content = delta.reasoning_blocks = delta.annotations = None
        delta.extra = None
    return delta


def _delta_dict(d: ChoiceDelta) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _DELTA:
        value = getattr(d, key)
        if value is not None:
            out[key] = value
    return _withextra_fields(out, d.extra)


@dataclass(slots=True)
class Embedding:
    index: int
    embedding: list[float]
    object: str = "embedding"


@dataclass(slots=True)
class EmbeddingResponse:
    data: list[Embedding]
    model: str
    usage: Usage | None = None
    object: str = "list"
    deployment_id: str = ""
    group: str = ""
    cached: bool = False
    """True when the response cache answered (no provider call of its own)."""
    extra: dict[str, Any] | None = None
    cost: float | None = None
    """US dollars, as `ChatCompletion.cost` (not in `to_dict()`)."""
    request_id: str = ""
    """The id of the router call that returned it (as on `ChatCompletion`)."""

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's embeddings JSON (without the routing fields); a provider that
        reports no usage (Gemini) gets zeros, as the openai type requires one."""
        usage = self.usage or Usage()
        out: dict[str, Any] = {
            "object": self.object,
            "data": [
                {"object": e.object, "index": e.index, "embedding": e.embedding} for e in self.data
            ],
            "model": self.model,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
        }
        return _withextra_fields(out, self.extra)

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> EmbeddingResponse:
        data = [
            Embedding(int(e.get("index", i)), _vector(e["embedding"]))
            for i, e in enumerate(d["data"])
        ]
        u = d.get("usage")
        return cls(
            data=data,
            model=str(d.get("model", "")),
            usage=Usage.from_dict(u) if u else None,
            deployment_id=deployment_id,
            group=group,
        )


def _vector(value: Any) -> list[float]:
    """An embedding as floats: ``encoding_format="base64"`` answers with the
    little-endian float32 bytes in base64, decoded here as the openai SDK does."""
    if isinstance(value, str):
        raw = base64.b64decode(value, validate=True)
        if len(raw) % 4:
            raise ValueError("a base64 embedding must hold whole float32 values")
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return list(value)


def _message_dict(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls is not None:
        out["tool_calls"] = m.tool_calls
    if m.refusal is not None:
        out["refusal"] = m.refusal
    if m.reasoning_content is not None:
        out["reasoning_content"] = m.reasoning_content
    if m.reasoning_blocks is not None:
        out["reasoning_blocks"] = m.reasoning_blocks
    if m.annotations is not None:
        out["annotations"] = m.annotations
    return _withextra_fields(out, m.extra)


def _withextra_fields(out: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    # Unknown upstream fields never override the ones this module wrote.
    if extra:
        for key, value in extra.items():
            out.setdefault(key, value)
    return out


def _tail(
    out: dict[str, Any],
    usage: Usage | None,
    fingerprint: str | None,
    tier: str | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if usage is not None:
        out["usage"] = usage.to_dict()
    if fingerprint is not None:
        out["system_fingerprint"] = fingerprint
    if tier is not None:
        out["service_tier"] = tier
    return _withextra_fields(out, extra)
