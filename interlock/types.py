"""Result and request types.

Results are shaped like OpenAI's (`r.choices[0].message.content`, `r.usage.total_tokens`)
and say which deployment served them. They are plain slotted dataclasses built by
hand from the decoded JSON: validating every response with pydantic would cost more
than the whole routing decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

__all__ = [
    "CHAT_PARAM_NAMES",
    "EMBEDDING_PARAM_NAMES",
    "MAX_COUNT",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "ChatParams",
    "Choice",
    "ChoiceDelta",
    "ChunkChoice",
    "Embedding",
    "EmbeddingParams",
    "EmbeddingResponse",
    "InvalidCount",
    "Request",
    "RequestKind",
    "StrategyRef",
    "Usage",
    "token_count",
]

RequestKind = Literal["chat", "embedding", "call"]


MAX_COUNT = 2**53
"""Counts from a provider are below this: integers a float holds exactly, so costs
and JSON round trips stay exact (and an absurd number is refused, not priced)."""


class InvalidCount(ValueError):
    """A number from a provider is not a count (an integer in ``[0, MAX_COUNT)``). The
    message names the field, never the value; a transport turns this into a
    `MalformedResponseError`."""


def token_count(value: object, name: str) -> int:
    """`value` as a count of tokens (None is 0): an int, or a float with an integral
    value; anything else (a string, a bool, a negative or fractional number) raises
    `InvalidCount`."""
    if value is None:
        return 0
    if type(value) is int and 0 <= value < MAX_COUNT:
        return value
    if type(value) is float and value.is_integer() and 0 <= value < MAX_COUNT:
        return int(value)
    raise InvalidCount(f"{name} is not a count (an integer >= 0)")


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Usage:
        """From OpenAI's ``usage`` object; raises `InvalidCount` for a count that is
        not one (accounting must never see it)."""
        prompt = d.get("prompt_tokens")
        completion = d.get("completion_tokens")
        total = d.get("total_tokens")
        if not (
            type(prompt) is int
            and type(completion) is int
            and 0 <= prompt < MAX_COUNT
            and 0 <= completion < MAX_COUNT
            and (total is None or (type(total) is int and 0 <= total < MAX_COUNT))
        ):  # the slow path: missing fields, floats, or something to refuse
            prompt = token_count(prompt, "usage.prompt_tokens")
            completion = token_count(completion, "usage.completion_tokens")
            if total is not None:
                total = token_count(total, "usage.total_tokens")
        return cls(prompt, completion, prompt + completion if total is None else total)


@dataclass(slots=True)
class ChatMessage:
    role: str
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChatMessage:
        return cls(
            d.get("role") or "assistant", d.get("content"), d.get("tool_calls"), d.get("refusal")
        )


@dataclass(slots=True)
class Choice:
    index: int
    message: ChatMessage
    finish_reason: str | None = None
    logprobs: Any = None


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

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> ChatCompletion:
        """Build from OpenAI's JSON; raises KeyError/TypeError/ValueError if it is not."""
        # Positional construction and no per-field conversions: this runs once per
        # response and is a visible share of the router's per-request cost.
        choices = []
        for i, c in enumerate(d["choices"]):
            m = c["message"]
            choices.append(
                Choice(
                    c.get("index", i),
                    ChatMessage(
                        m.get("role") or "assistant",
                        m.get("content"),
                        m.get("tool_calls"),
                        m.get("refusal"),
                    ),
                    c.get("finish_reason"),
                    c.get("logprobs"),
                )
            )
        get = d.get
        u = get("usage")
        return cls(
            get("id") or "",
            get("model") or "",
            choices,
            Usage.from_dict(u) if u else None,
            get("created") or 0,
            get("system_fingerprint"),
            "chat.completion",
            deployment_id,
            group,
        )

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI JSON shape (without the routing fields)."""
        out: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": c.index,
                    "message": _message_dict(c.message),
                    "finish_reason": c.finish_reason,
                    "logprobs": c.logprobs,
                }
                for c in self.choices
            ],
        }
        if self.usage is not None:
            out["usage"] = _usage_dict(self.usage)
        if self.system_fingerprint is not None:
            out["system_fingerprint"] = self.system_fingerprint
        return out


@dataclass(slots=True)
class ChoiceDelta:
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None


@dataclass(slots=True)
class ChunkChoice:
    index: int
    delta: ChoiceDelta
    finish_reason: str | None = None
    logprobs: Any = None


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

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> ChatCompletionChunk:
        choices = []
        for i, c in enumerate(d["choices"]):
            delta = c.get("delta") or {}
            choices.append(
                ChunkChoice(
                    int(c.get("index", i)),
                    ChoiceDelta(
                        delta.get("role"),
                        delta.get("content"),
                        delta.get("tool_calls"),
                        delta.get("refusal"),
                    ),
                    c.get("finish_reason"),
                    c.get("logprobs"),
                )
            )
        u = d.get("usage")
        return cls(
            id=str(d.get("id", "")),
            model=str(d.get("model", "")),
            choices=choices,
            usage=Usage.from_dict(u) if u else None,
            created=int(d.get("created") or 0),
            deployment_id=deployment_id,
            group=group,
        )


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

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> EmbeddingResponse:
        data = [
            Embedding(int(e.get("index", i)), list(e["embedding"])) for i, e in enumerate(d["data"])
        ]
        u = d.get("usage")
        return cls(
            data=data,
            model=str(d.get("model", "")),
            usage=Usage.from_dict(u) if u else None,
            deployment_id=deployment_id,
            group=group,
        )


class StrategyRef(Protocol):
    """What `Request.strategy` holds when it is not a name: an object with the
    `interlock.strategies.Strategy` protocol's `choose`. Spelled loosely here because
    this module sits below the strategies (docs/architecture.md); the pool that uses
    it treats it as a `Strategy`."""

    def choose(self, candidates: Any, request: Request, /) -> Any: ...


@dataclass(slots=True, eq=False)
class Request:
    """What the router knows about one request while routing it.

    Strategies and eligibility read it; nothing on it is a secret.
    """

    kind: RequestKind
    group: str
    """The group currently being tried (changes along the fallback chain)."""
    messages: Sequence[Mapping[str, Any]] = ()
    input: Any = None
    """Embedding input."""
    params: dict[str, Any] = field(default_factory=dict)
    """Provider parameters (temperature, max_tokens, ...), only those the caller set."""
    stream: bool = False
    tags: frozenset[str] = frozenset()
    est_input_tokens: int = 0
    est_output_tokens: int = 0
    requested: str = ""
    """The name the caller asked for (a group or an alias)."""
    unsupported_params: Literal["drop", "raise"] = "drop"
    """What a transport does with a parameter its provider has no equivalent for."""
    strategy: str | StrategyRef | None = None
    """A per-request strategy override (a registered name or an instance)."""

    @property
    def est_tokens(self) -> int:
        return self.est_input_tokens + self.est_output_tokens


def _message_dict(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls is not None:
        out["tool_calls"] = m.tool_calls
    if m.refusal is not None:
        out["refusal"] = m.refusal
    return out


def _usage_dict(u: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


class ChatParams(TypedDict, total=False):
    """Chat-completion parameters passed to the provider (only those set are sent).

    Anything provider-specific goes in `extra_body`, merged into the request body.
    """

    temperature: float
    top_p: float
    max_tokens: int
    max_completion_tokens: int
    stop: str | Sequence[str]
    n: int
    presence_penalty: float
    frequency_penalty: float
    logit_bias: Mapping[str, float]
    logprobs: bool
    top_logprobs: int
    tools: Sequence[Mapping[str, Any]]
    tool_choice: str | Mapping[str, Any]
    parallel_tool_calls: bool
    response_format: Mapping[str, Any]
    seed: int
    user: str
    stream_options: Mapping[str, Any]
    reasoning_effort: str
    metadata: Mapping[str, str]
    extra_body: Mapping[str, Any]


class EmbeddingParams(TypedDict, total=False):
    """Embedding parameters passed to the provider."""

    dimensions: int
    encoding_format: str
    user: str
    extra_body: Mapping[str, Any]


CHAT_PARAM_NAMES: frozenset[str] = frozenset(ChatParams.__annotations__)
EMBEDDING_PARAM_NAMES: frozenset[str] = frozenset(EmbeddingParams.__annotations__)
