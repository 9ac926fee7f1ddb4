"""OpenAI's Responses API (``POST /v1/responses``) for the fake servers.

Shapes follow https://platform.openai.com/docs/api-reference/responses (the
``response`` object, and the streaming events in the order OpenAI sends them:
``response.created``, ``response.in_progress``, then per output item
``response.output_item.added``, its parts and deltas, ``response.output_item.done``,
and last ``response.completed`` or ``response.incomplete``).

What the fake does, deterministically:

- the answer is the server's `reply` (fixed, or computed from the request body);
- when the request offers ``function`` tools, ``tool_choice`` is not ``"none"`` and
  the input holds no ``function_call_output`` yet, it calls the named (or first)
  function instead, with ``{"input": <the last input text>}`` as arguments;
- ``reasoning`` in the request adds a ``reasoning`` item and 8 reasoning tokens;
- ``max_output_tokens`` below the answer's tokens cuts it: status ``incomplete``
  with ``incomplete_details.reason`` ``max_output_tokens``;
- ``store`` (true unless false) keeps the response; ``previous_response_id`` must
  name one this server stored (else 400 ``previous_response_not_found``, as OpenAI
  answers), and that conversation's tokens count as cached input tokens;
- `push_stream_error` scripts an ``error`` event after some events of a stream.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from interlock.testing.faults import _drop
from interlock.testing.wire import (
    BadRequest,
    Json,
    Record,
    Request,
    Response,
    split_text,
    tokens_for,
)

__all__ = ["FakeResponses"]

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_JSON_HEADERS = {"Content-Type": "application/json"}
_REASONING_TOKENS = 8
_STORED_LIMIT = 10_000


class FakeResponses:
    """The ``/v1/responses`` endpoint of one fake server (its `serve` is the route)."""

    def __init__(
        self,
        name: str,
        reply: Callable[[Json], str],
        model_for: Callable[[Json], str],
        stream_chunks: int,
        chunk_interval: float,
    ) -> None:
        self._name = name
        self._reply = reply
        self._model_for = model_for
        self._chunks = stream_chunks
        self._interval = chunk_interval
        self._ids = itertools.count(1)
        self.stored: OrderedDict[str, Json] = OrderedDict()
        """Responses kept with ``store`` (the newest 10,000), by id."""
        self._errors: deque[tuple[int, str, str]] = deque()

    def push_stream_error(
        self,
        after_events: int,
        code: str = "server_error",
        message: str = "The server had an error.",
    ) -> None:
        """The next streamed response sends an ``error`` event after `after_events`
        events and ends (0: instead of ``response.created``)."""
        self._errors.append((after_events, code, message))

    async def serve(self, request: Request, record: Record, body: Json) -> Response:
        response = self._build(body)
        if response.get("store") is not False:
            self.stored[response["id"]] = response
            while len(self.stored) > _STORED_LIMIT:
                self.stored.popitem(last=False)
        if record.stream:
            return await self._stream(request, record, response)
        record.status = 200
        return web.Response(body=orjson.dumps(response), headers=_JSON_HEADERS)

    def _build(self, body: Json) -> Json:
        """The finished response for `body`."""
        items = body.get("input")
        if not isinstance(items, str | list) or not items:
            raise BadRequest(
                "Missing required parameter: 'input'.", "input", "missing_required_parameter"
            )
        if not isinstance(body.get("model"), str):
            raise BadRequest(
                "Missing required parameter: 'model'.", "model", "missing_required_parameter"
            )
        cached = self._previous(body.get("previous_response_id"))
        texts = _input_texts(items)
        instructions = body.get("instructions")
        fresh = sum(tokens_for(len(t)) for t in texts) + (
            tokens_for(len(instructions)) if isinstance(instructions, str) else 0
        )
        rid = f"resp_{self._name}_{next(self._ids)}"
        output, out_tokens, incomplete = self._output(body, items, texts, rid)
        reasoning = _REASONING_TOKENS if body.get("reasoning") else 0
        usage = {
            "input_tokens": cached + fresh,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": out_tokens + reasoning,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": cached + fresh + out_tokens + reasoning,
        }
        response = _response_head(body, rid, self._model_for(body))
        response.update(
            status="incomplete" if incomplete else "completed",
            incomplete_details={"reason": "max_output_tokens"} if incomplete else None,
            output=output,
            usage=usage,
        )
        return response

    def _previous(self, previous: object) -> int:
        if previous is None:
            return 0
        stored = self.stored.get(previous) if isinstance(previous, str) else None
        if stored is None:
            raise BadRequest(
                f"Previous response with id '{previous}' not found.",
                "previous_response_id",
                "previous_response_not_found",
            )
        # The conversation so far (a follow-up reads it from the prompt cache): the
        # previous input and output, reasoning excepted (it is not carried over).
        usage = stored["usage"]
        context: int = usage["total_tokens"] - usage["output_tokens_details"]["reasoning_tokens"]
        return context

    def _output(
        self, body: Json, items: Any, texts: list[str], rid: str
    ) -> tuple[list[Json], int, bool]:
        output: list[Json] = []
        if body.get("reasoning"):
            output.append({"id": f"rs_{rid}", "type": "reasoning", "summary": []})
        call = _function_to_call(body, items)
        if call is not None:
            arguments = orjson.dumps({"input": texts[-1] if texts else ""}).decode()
            output.append({
                "type": "function_call", "id": f"fc_{rid}", "call_id": f"call_{rid}",
                "name": call, "arguments": arguments, "status": "completed",
            })  # fmt: skip
            return output, tokens_for(len(arguments)), False
        text = self._reply(body)
        limit = body.get("max_output_tokens")
        incomplete = False
        if isinstance(limit, int) and tokens_for(len(text)) > limit:
            incomplete = True
            text = text[: max(1, limit) * 4]
        output.append({
            "id": f"msg_{rid}", "type": "message", "status": "incomplete" if incomplete
            else "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        })  # fmt: skip
        return output, tokens_for(len(text)), incomplete

    async def _stream(self, request: Request, record: Record, response: Json) -> Response:
        frames = self._events(response)
        fault = record.fault
        cut = fault.after_chunks if fault is not None and fault.kind == "cut_stream" else None
        if cut is not None:
            frames = frames[:cut]
        elif self._errors:
            after, code, message = self._errors.popleft()
            event = {"type": "error", "code": code, "message": message, "param": None,
                     "sequence_number": after}  # fmt: skip
            frames = [*frames[:after], _frame(event)]
        out = web.StreamResponse(headers=_SSE_HEADERS)
        out.enable_chunked_encoding()
        await out.prepare(request)
        if cut is None:
            record.status = 200
        for i, frame in enumerate(frames):
            if i and self._interval > 0:
                await asyncio.sleep(self._interval)
            await out.write(frame)
        if cut is not None:
            return _drop(request)
        await out.write_eof()
        return out

    def _events(self, final: Json) -> list[bytes]:
        """Every event of `final` streamed, in OpenAI's order."""
        start = {**final, "status": "in_progress", "output": [], "usage": None,
                 "incomplete_details": None}  # fmt: skip
        events: list[Json] = [
            {"type": "response.created", "response": start},
            {"type": "response.in_progress", "response": start},
        ]
        for index, item in enumerate(final["output"]):
            events.extend(self._item_events(index, item))
        end = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        events.append({"type": end, "response": final})
        for seq, event in enumerate(events):
            event["sequence_number"] = seq
        return [_frame(e) for e in events]

    def _item_events(self, index: int, item: Json) -> list[Json]:
        kind = item["type"]
        where = {"output_index": index, "item_id": item["id"]}
        if kind == "function_call":
            added = {**item, "arguments": "", "status": "in_progress"}
            deltas = [
                {"type": "response.function_call_arguments.delta", **where, "delta": piece}
                for piece in split_text(item["arguments"], self._chunks)
            ]
            done = {"type": "response.function_call_arguments.done", **where,
                    "name": item["name"], "arguments": item["arguments"]}  # fmt: skip
            middle = [*deltas, done]
        elif kind == "message":
            added = {**item, "content": [], "status": "in_progress"}
            middle = _text_events(item, where, self._chunks)
        else:
            added, middle = item, []
        return [
            {"type": "response.output_item.added", "output_index": index, "item": added},
            *middle,
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]


def _text_events(item: Json, where: Json, chunks: int) -> list[Json]:
    part = item["content"][0]
    text = part["text"]
    at = {**where, "content_index": 0}
    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    return [
        {"type": "response.content_part.added", **at, "part": empty},
        *(
            {"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
            for piece in split_text(text, chunks)
            if piece
        ),
        {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": part},
    ]


def _frame(event: Json) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def _response_head(body: Json, rid: str, model: str) -> Json:
    """The fields of a ``response`` object that echo the request."""
    tools = body.get("tools")
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools if isinstance(tools, list) else [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _input_texts(items: Any) -> list[str]:
    if isinstance(items, str):
        return [items]
    texts: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        if isinstance(item.get("output"), str):
            texts.append(item["output"])
    return texts


def _function_to_call(body: Json, items: Any) -> str | None:
    """The function the fake calls for `body`, if any (see the module's docstring)."""
    tools = body.get("tools")
    names = [
        t["name"] for t in tools or () if isinstance(t, dict) and t.get("type") == "function"
    ] if isinstance(tools, list) else []  # fmt: skip
    choice = body.get("tool_choice", "auto")
    if not names or choice == "none":
        return None
    if isinstance(items, list) and any(
        isinstance(i, dict) and i.get("type") == "function_call_output" for i in items
    ):
        return None
    if isinstance(choice, dict) and isinstance(choice.get("name"), str):
        return str(choice["name"])
    return str(names[0])
