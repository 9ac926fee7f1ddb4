"""Checks of wire shapes against the official SDKs' own types (openai, anthropic,
google-genai): types nobody here wrote, so a shape both our code and our fakes got
wrong together still fails.

Request bodies are validated strictly (unknown fields rejected, nested too); response
bodies are validated as the SDKs read them (they accept fields they do not know, as a
client must). Every check counts itself in `COUNTS`, so a test can tell that it
validated what it meant to.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import Any

import orjson
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from anthropic.types.message_create_params import MessageCreateParams
from google.genai import types as genai
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.completion_create_params import CompletionCreateParams
from openai.types.embedding_create_params import EmbeddingCreateParams
from pydantic import BaseModel, ConfigDict, TypeAdapter

__all__ = [
    "COUNTS",
    "anthropic_event",
    "anthropic_message",
    "anthropic_request",
    "gemini_embed_request",
    "gemini_embed_response",
    "gemini_request",
    "gemini_response",
    "openai_chat",
    "openai_chat_request",
    "openai_chunk",
    "openai_embedding",
    "openai_embedding_request",
    "sse_data",
]

COUNTS: Counter[str] = Counter()
"""How many payloads each check validated in this process."""


def _report() -> None:
    for name, n in sorted(COUNTS.items()):
        print(f"contract: {n:5d} {name}", file=sys.stderr)


if os.environ.get("INTERLOCK_CONTRACT_COUNTS"):
    atexit.register(_report)  # how many payloads a run checked, for the curious

_STRICT = ConfigDict(extra="forbid")


@cache
def _strict_adapter(kind: Any) -> TypeAdapter[Any]:
    # A list around the type: pydantic takes a config only for a type that has none of
    # its own, and the list's reaches every TypedDict inside it.
    return TypeAdapter(list[kind], config=_STRICT)


def _strict(kind: Any, body: Mapping[str, Any]) -> None:
    """Validate `body` as `kind`, rejecting unknown fields at every level."""
    (validated,) = _strict_adapter(kind).validate_json(_json([body]))
    _drain(validated, body)


@cache
def _lax(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def _drain(value: Any, given: Any, where: str = "body") -> None:
    # Pydantic validates `Iterable[...]` fields lazily: the SDKs' request types use them
    # for messages and content, so nothing below is checked until it is consumed
    # (walked here beside the input it came from). A request part that only matched
    # one of the *response* models the SDK also accepts (they allow unknown fields) is
    # not a valid request part either.
    if isinstance(value, BaseModel):
        raise AssertionError(f"{where}: matched only a response model ({type(value).__name__})")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _drain(item, given.get(key) if isinstance(given, Mapping) else None, f"{where}.{key}")
    elif isinstance(value, Iterator):
        # `str | Iterable[part]` unions hand a string to the lazy branch too; a string
        # is what the other branch accepts.
        if not isinstance(given, str):
            for i, (item, raw) in enumerate(zip(value, given, strict=True)):
                _drain(item, raw, f"{where}[{i}]")
    elif isinstance(value, list | tuple) and isinstance(given, list | tuple):
        for i, (item, raw) in enumerate(zip(value, given, strict=True)):
            _drain(item, raw, f"{where}[{i}]")


def _json(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)


# The SDK's types (since anthropic 1.0) no longer list the sampling parameters, which
# newer models reject; the API still takes them for the models that accept sampling
# options (https://docs.anthropic.com/en/api/messages), so they are checked as numbers.
_ANTHROPIC_SAMPLING = ("temperature", "top_p", "top_k")


def anthropic_request(body: Mapping[str, Any]) -> None:
    """A Messages API request body, as `anthropic.types.MessageCreateParams`."""
    sampling = {k: body[k] for k in _ANTHROPIC_SAMPLING if k in body}
    for key, value in sampling.items():
        assert isinstance(value, int | float), key
        assert not isinstance(value, bool), key
    _strict(MessageCreateParams, {k: v for k, v in body.items() if k not in sampling})
    COUNTS["anthropic request (MessageCreateParams)"] += 1


def openai_chat_request(body: Mapping[str, Any]) -> None:
    """A chat completions body, as openai's `CompletionCreateParams`."""
    _strict(CompletionCreateParams, body)
    COUNTS["openai request (CompletionCreateParams)"] += 1


def openai_embedding_request(body: Mapping[str, Any]) -> None:
    # The SDK types `input` as a union whose lazy `Iterable[int]` branch would claim a
    # list of strings; the same union, with lists, checks it eagerly.
    rest = dict(body)
    _lax(str | list[str] | list[int] | list[list[int]]).validate_json(_json(rest.pop("input")))
    _strict(EmbeddingCreateParams, {**rest, "input": "x"})
    COUNTS["openai request (EmbeddingCreateParams)"] += 1


# The generateContent body's top-level fields, each with the SDK type of its value
# (the SDK folds them into one config object on its side, so there is no single type
# for the body itself).
_GEMINI_FIELDS: dict[str, Any] = {
    "contents": list[genai.Content],
    "systemInstruction": genai.Content,
    "tools": list[genai.Tool],
    "toolConfig": genai.ToolConfig,
    "generationConfig": genai.GenerationConfig,
    "safetySettings": list[genai.SafetySetting],
    "cachedContent": str,
}


def gemini_request(body: Mapping[str, Any]) -> None:
    """A generateContent body, field by field as `google.genai.types`."""
    unknown = set(body) - set(_GEMINI_FIELDS)
    assert not unknown, f"fields google-genai does not define: {sorted(unknown)}"
    assert "contents" in body, "contents is required"
    for key, value in body.items():
        _lax(_GEMINI_FIELDS[key]).validate_json(_json(value))
    COUNTS["gemini request (google.genai.types)"] += 1


def gemini_embed_request(body: Mapping[str, Any]) -> None:
    """A batchEmbedContents body: each item a model, a `Content` and the
    `EmbedContentConfig` fields."""
    assert set(body) == {"requests"}, sorted(body)
    for item in body["requests"]:
        rest = dict(item)
        assert isinstance(rest.pop("model"), str)
        genai.Content.model_validate_json(_json(rest.pop("content")))
        genai.EmbedContentConfig.model_validate_json(_json(rest))
    COUNTS["gemini request (EmbedContentConfig)"] += 1


def anthropic_message(payload: Any) -> AnthropicMessage:
    COUNTS["anthropic response (Message)"] += 1
    return AnthropicMessage.model_validate_json(_json(payload))


def anthropic_event(payload: Any) -> Any:
    """One stream event (``ping`` and ``error`` are not in the SDK's event union)."""
    data = orjson.loads(payload) if isinstance(payload, bytes) else payload
    COUNTS["anthropic stream event (RawMessageStreamEvent)"] += 1
    if data.get("type") in ("ping", "error"):
        return data
    return _lax(RawMessageStreamEvent).validate_json(_json(data))


def gemini_response(payload: Any) -> genai.GenerateContentResponse:
    COUNTS["gemini response (GenerateContentResponse)"] += 1
    return genai.GenerateContentResponse.model_validate_json(_json(payload))


def gemini_embed_response(payload: Any) -> genai.EmbedContentResponse:
    COUNTS["gemini response (EmbedContentResponse)"] += 1
    return genai.EmbedContentResponse.model_validate_json(_json(payload))


def openai_chat(payload: Any) -> ChatCompletion:
    COUNTS["openai result (ChatCompletion)"] += 1
    return ChatCompletion.model_validate_json(_json(payload))


def openai_chunk(payload: Any) -> ChatCompletionChunk:
    COUNTS["openai result (ChatCompletionChunk)"] += 1
    return ChatCompletionChunk.model_validate_json(_json(payload))


def openai_embedding(payload: Any) -> CreateEmbeddingResponse:
    COUNTS["openai result (CreateEmbeddingResponse)"] += 1
    return CreateEmbeddingResponse.model_validate_json(_json(payload))


def sse_data(raw: bytes) -> Iterable[bytes]:
    """The ``data:`` payloads of an SSE body, in order (``[DONE]`` left out)."""
    for frame in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in frame.split(b"\n"):
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data and data != b"[DONE]":
                    yield data
