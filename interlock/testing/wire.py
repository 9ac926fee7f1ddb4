"""What the fake provider servers share: the live record of a request, error replies,
and the token, text and vector helpers that make their answers deterministic."""

from __future__ import annotations

import functools
import hashlib
import math
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson
from aiohttp import web

from interlock.testing.faults import Fault, _error_body

__all__ = [
    "JSON_HEADERS",
    "BadRequest",
    "Endpoint",
    "Json",
    "Record",
    "Request",
    "Response",
    "embedding_items",
    "error_response",
    "message_chars",
    "split_text",
    "stream_frames",
    "tokens_for",
    "unit_vector",
]

JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(slots=True)
class Record:
    # The mutable twin of ReceivedRequest, updated while the request runs.
    seq: int
    method: str
    path: str
    at: float
    api_key: str | None
    headers: Mapping[str, str]
    body: dict[str, Any] | None = None
    stream: bool = False
    fault: Fault | None = None
    status: int | None = None
    finished_at: float | None = None


Request: TypeAlias = web.BaseRequest
Response: TypeAlias = web.StreamResponse
Json: TypeAlias = dict[str, Any]
Endpoint = Callable[[Request, Record, Json], Awaitable[Response]]


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def tokens_for(chars: int) -> int:
    return max(1, -(-chars // 4))


def message_chars(messages: list[Any]) -> int:
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(text := part.get("text"), str):
                    total += len(text)
    return total


def split_text(text: str, pieces: int) -> list[str]:
    n = len(text)
    k = max(1, min(pieces, n))
    return [text[i * n // k : (i + 1) * n // k] for i in range(k)]


def error_response(record: Record, status: int, message: str, **fields: Any) -> web.Response:
    record.status = status
    body = _error_body(message, **fields)
    return web.Response(body=body, status=status, headers=JSON_HEADERS)


def embedding_items(value: Any) -> list[str | list[int]]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [value]
        if all(isinstance(v, list) and v and embedding_items(v) == [v] for v in value):
            return list(value)
    raise BadRequest(
        "Invalid 'input': expected a string, a list of strings, a list of token ids or a "
        "list of lists of token ids.",
        "input",
    )


@functools.lru_cache(maxsize=4096)
def unit_vector(key: bytes, dim: int) -> tuple[float, ...]:
    # A hash stretched to `dim` values: same input, same vector, on every run and machine.
    raw = hashlib.shake_256(key).digest(2 * dim)
    values = [v / 32767.5 - 1.0 for v in struct.unpack(f"<{dim}H", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return tuple(v / norm for v in values)


def stream_frames(
    head: dict[str, Any], pieces: list[str], n: int, usage: dict[str, int] | None
) -> list[bytes]:
    # Every SSE data frame except [DONE]; `usage` only if stream_options.include_usage.
    if usage is not None:
        head["usage"] = None

    def frame(index: int, delta: dict[str, str], finish: str | None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

    frames = [frame(i, {"role": "assistant", "content": ""}, None) for i in range(n)]
    frames.extend(frame(i, {"content": piece}, None) for piece in pieces for i in range(n))
    frames.extend(frame(i, {}, "stop") for i in range(n))
    if usage is not None:
        frames.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    return frames
