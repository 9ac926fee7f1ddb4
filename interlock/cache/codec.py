"""Cache entries: a response serialized once, rebuilt afresh for every hit.

An entry is the OpenAI JSON of the response plus where it came from, and for a
response recorded from a stream, the lengths of its content pieces (so a streamed
replay splits the text where the original stream did). Hits decode the bytes into
new objects, so two callers never share a mutable list or dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from interlock.types import ChatCompletion, EmbeddingResponse

__all__ = ["CacheEntry", "decode", "encode"]

Result = ChatCompletion | EmbeddingResponse


@dataclass(slots=True)
class CacheEntry:
    """A decoded entry."""

    result: Result
    pieces: dict[int, list[int]] | None = None
    """Per choice index, the lengths of the content pieces the original stream sent."""


def _embedding_dict(r: EmbeddingResponse) -> dict[str, Any]:
    out: dict[str, Any] = {
        "object": r.object,
        "model": r.model,
        "data": [{"object": e.object, "index": e.index, "embedding": e.embedding} for e in r.data],
    }
    if r.usage is not None:
        out["usage"] = {
            "prompt_tokens": r.usage.prompt_tokens,
            "completion_tokens": r.usage.completion_tokens,
            "total_tokens": r.usage.total_tokens,
        }
    return out


def encode(result: Result, pieces: dict[int, list[int]] | None = None) -> bytes:
    """The bytes stored for `result` (raises TypeError if it holds a non-JSON value)."""
    if isinstance(result, ChatCompletion):
        kind, body = "chat", result.to_dict()
    else:
        kind, body = "embedding", _embedding_dict(result)
    return orjson.dumps(
        {
            "kind": kind,
            "body": body,
            "deployment_id": result.deployment_id,
            "group": result.group,
            "pieces": pieces,
        },
        option=orjson.OPT_NON_STR_KEYS,
    )


def decode(data: bytes, kind: str) -> CacheEntry | None:
    """A fresh result marked ``cached=True``, or None if `data` is not an entry of
    `kind` (another version's format, or a corrupted value: treated as a miss)."""
    try:
        doc = orjson.loads(data)
        if doc["kind"] != kind:
            return None
        body = doc["body"]
        dep, group = str(doc["deployment_id"]), str(doc["group"])
        result: Result
        if kind == "chat":
            result = ChatCompletion.from_dict(body, deployment_id=dep, group=group)
            if "object" in body:
                result.object = str(body["object"])
        else:
            result = EmbeddingResponse.from_dict(body, deployment_id=dep, group=group)
        result.cached = True
        result.cost = 0.0  # no provider call of its own
        raw_pieces = doc.get("pieces")
        pieces = (
            {int(i): [int(n) for n in ns] for i, ns in raw_pieces.items()} if raw_pieces else None
        )
        return CacheEntry(result, pieces)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
