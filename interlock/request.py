"""What the router knows about a request while routing it: `Request`, its id, and the
parameters a call may pass on to the provider. Below every result type and rule
(docs/architecture.md): strategies, limits and transports read it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

__all__ = [
    "CHAT_PARAM_NAMES",
    "EMBEDDING_PARAM_NAMES",
    "NO_METADATA",
    "ChatParams",
    "EmbeddingParams",
    "Request",
    "RequestKind",
    "StrategyRef",
    "new_request_id",
]

RequestKind = Literal[
    "chat",
    "embedding",
    "call",
    "responses",
    "images",
    "transcription",
    "speech",
    "moderation",
    "rerank",
    "passthrough",
]
"""What a request is: the method that made it (``Router.call`` is ``"call"``; the
endpoints of docs/endpoints.md are named as `interlock.Endpoint` names them)."""


class _NoMetadata(Mapping[str, Any]):
    """An empty, read-only, hashable mapping (a dataclass default must be hashable)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


NO_METADATA: Mapping[str, Any] = _NoMetadata()
"""The `metadata` of a request that was given none (one shared, read-only mapping)."""


def _id_prefix() -> str:
    return os.urandom(6).hex() + "-"


_prefix = _id_prefix()
_counter = itertools.count(1)


def _reseed() -> None:
    # A forked child copies the prefix and the counter: it must not repeat the ids
    # its parent gives out after the fork.
    global _prefix, _counter
    _prefix = _id_prefix()
    _counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """A new request id: 48 random bits per process, then a counter, in hex
    (``"3f9a2c1b7d04-1a"``). Unique across processes with overwhelming probability,
    and about 20 times cheaper than ``uuid4().hex``, since every request gets one."""
    return f"{_prefix}{next(_counter):x}"


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
    id: str = field(default_factory=new_request_id)
    """The call's id (the caller's ``request_id=``, else `new_request_id()`): on
    every event, span, result and error of the call."""
    metadata: Mapping[str, Any] = NO_METADATA
    """The caller's ``metadata=``, handed to hooks as it is (never copied or read)."""
    trace: Any = None
    """The call's tracing state while tracing is on (interlock.observability.tracing
    sits above this module, hence `Any`); None otherwise."""

    @property
    def est_tokens(self) -> int:
        return self.est_input_tokens + self.est_output_tokens


class ChatParams(TypedDict, total=False):
    """Chat-completion parameters passed to the provider (only those set are sent).

    Anything provider-specific goes in `extra_body`, merged into the request body;
    `extra_headers` are sent as HTTP headers with this call only.
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
    # No `metadata`: that keyword is interlock's own (handed to hooks); OpenAI's
    # ``metadata`` goes in ``extra_body={"metadata": {...}}`` (docs/observability.md).
    extra_body: Mapping[str, Any]
    extra_headers: Mapping[str, str]


class EmbeddingParams(TypedDict, total=False):
    """Embedding parameters passed to the provider."""

    dimensions: int
    encoding_format: str
    user: str
    extra_body: Mapping[str, Any]
    extra_headers: Mapping[str, str]


CHAT_PARAM_NAMES: frozenset[str] = frozenset(ChatParams.__annotations__)
EMBEDDING_PARAM_NAMES: frozenset[str] = frozenset(EmbeddingParams.__annotations__)
