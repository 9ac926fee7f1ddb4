"""`FakeGemini`: a loopback server speaking the Gemini API (generativelanguage v1beta).

Written from Google's public API documentation: ``POST /v1beta/models/{model}:
generateContent``, ``:streamGenerateContent?alt=sse`` (each SSE event a whole
GenerateContentResponse, no end marker) and ``:batchEmbedContents``; the key in the
``x-goog-api-key`` header or ``?key=``. Turns are ``contents`` with roles ``user`` and
``model``, parts ``text``/``inlineData``/``fileData``/``functionCall``/
``functionResponse``; unknown fields are rejected. Function calls come with an ``id``,
the first of a turn signed with a ``thoughtSignature`` that must come back on that
call (as Gemini 3 requires, https://ai.google.dev/gemini-api/docs/thought-signatures),
and a ``functionResponse`` must name a call of the turn before it; with
``thinkingConfig.includeThoughts`` the answer starts with a ``thought`` part. Errors are
``{"error": {"code", "message", "status"}}``; a scripted rate limit is
``RESOURCE_EXHAUSTED`` with a ``RetryInfo`` detail, a content-policy fault is a 200
whose ``promptFeedback.blockReason`` is ``SAFETY``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from interlock.testing.fake_anthropic import ToolReply
from interlock.testing.fake_upstream import FakeUpstream
from interlock.testing.faults import Fault, _apply, _positive_int
from interlock.testing.wire import (
    JSON_HEADERS,
    BadRequest,
    Endpoint,
    Json,
    Record,
    Request,
    Response,
    split_text,
    tokens_for,
    unit_vector,
)

__all__ = ["FakeGemini"]

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
           404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
           500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
           504: "DEADLINE_EXCEEDED"}  # fmt: skip
_FIELDS = frozenset(("contents", "systemInstruction", "tools", "toolConfig", "generationConfig",
                     "safetySettings", "cachedContent"))  # fmt: skip
_CONFIG = frozenset(("temperature", "topP", "topK", "maxOutputTokens", "stopSequences",
                     "candidateCount", "presencePenalty", "frequencyPenalty", "seed",
                     "responseMimeType", "responseSchema", "responseJsonSchema",
                     "thinkingConfig"))  # fmt: skip
_PARTS = frozenset(("text", "inlineData", "fileData", "functionCall", "functionResponse"))
_PATH = re.compile(r"^/v1beta/models/([^/:]+):([A-Za-z]+)$")
_NUMBERS = re.compile(r"\d+")


def gemini_error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    """A Google API error body."""
    err: dict[str, Any] = {"code": status, "message": message,
                           "status": _STATUS.get(status, "UNKNOWN")}  # fmt: skip
    if details:
        err["details"] = details
    return orjson.dumps({"error": err})


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\r\n\r\n"


def _candidate_count(body: Json) -> int:
    n = (body.get("generationConfig") or {}).get("candidateCount", 1)
    if not _positive_int(n) or n > 8:
        raise BadRequest("* GenerationConfig.candidate_count: must be in 1-8")
    return int(n)


class FakeGemini(FakeUpstream):
    """A Gemini API server on loopback; options as `FakeUpstream`, plus `tool_calls`
    (a `ToolReply`). `url` is the `api_base` (``http://host:port/v1beta``)."""

    _stream_end: tuple[bytes, ...] = ()

    def __init__(self, *, tool_calls: ToolReply | None = None, **options: Any) -> None:
        options.setdefault("name", "gemini")
        super().__init__(**options)
        self._tool_reply = tool_calls
        self._signatures: dict[str, str] = {}  # function call id -> its thoughtSignature
        self._methods: dict[str, tuple[Endpoint, bool]] = {
            "generateContent": (self._generate, True),
            "streamGenerateContent": (self._generate, True),
            "batchEmbedContents": (self._embed, True),
        }

    @property
    def url(self) -> str:
        """The `api_base`: ``http://host:port/v1beta``."""
        return self.base_url + "/v1beta"

    def _route(self, method: str, path: str) -> tuple[Endpoint, bool] | None:
        match = _PATH.match(path)
        return self._methods.get(match.group(2)) if match and method == "POST" else None

    def _api_key_of(self, request: Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key")

    def _wants_stream(self, request: Request, body: Json) -> bool:
        return request.path.endswith(":streamGenerateContent")

    def _unauthorized(self, record: Record) -> Response:
        if record.api_key is None:
            message = "Method doesn't allow unregistered callers. Please use an API key."
            return self._error_response(record, 403, message)
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
        return self._reply_error(record, 400, "API key not valid. Please pass a valid API key.",
                                 [info])  # fmt: skip

    def _error_response(self, record: Record, status: int, message: str, **_: Any) -> Response:
        return self._reply_error(record, status, message, None)

    def _reply_error(
        self, record: Record, status: int, message: str, details: list[dict[str, Any]] | None
    ) -> Response:
        record.status = status
        body = gemini_error(status, message, details)
        return web.Response(body=body, status=status, headers=JSON_HEADERS)

    async def _apply_fault(self, fault: Fault, request: Request) -> Response | None:
        status = fault.http_status
        if status is None:
            return await _apply(fault, request)
        message = fault.message or "Injected fault."
        details: list[dict[str, Any]] = []
        headers = {"Content-Type": "application/json", **dict(fault.headers)}
        if fault.kind == "rate_limit":
            message = "Resource has been exhausted (e.g. check quota)."
            if fault.retry_after is not None:
                delay = f"{fault.retry_after:.3f}".rstrip("0").rstrip(".") + "s"
                details.append(
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
                )
        elif fault.kind == "context_window":
            limit, requested = [*_NUMBERS.findall(message), "0", "0"][:2]
            message = (
                f"The input token count ({requested}) exceeds the maximum number of tokens "
                f"allowed ({limit})."
            )
        elif fault.kind == "content_policy":
            # Gemini reports a blocked prompt in a 200 response, not as an HTTP error.
            blocked = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                       "usageMetadata": {"promptTokenCount": 1, "totalTokenCount": 1}}  # fmt: skip
            if request.path.endswith(":streamGenerateContent"):
                headers = {"Content-Type": "text/event-stream"}
                return web.Response(body=_sse(blocked), headers=headers)
            return web.Response(body=orjson.dumps(blocked), headers=JSON_HEADERS)
        body = gemini_error(status, message, details or None)
        return web.Response(body=body, status=status, headers=headers)

    def _check(self, body: Json) -> int:
        # Validates the request as the API would; returns the prompt's character count.
        for key in body:
            if key not in _FIELDS:
                raise BadRequest(f'Invalid JSON payload received. Unknown name "{key}": '
                                  "Cannot find field.")  # fmt: skip
        for key in body.get("generationConfig") or {}:
            if key not in _CONFIG:
                raise BadRequest(f'Invalid JSON payload received. Unknown name "{key}" at '
                                  "'generation_config': Cannot find field.")  # fmt: skip
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
        chars = 0
        system = body.get("systemInstruction")
        blocks = [*(system.get("parts") or () if isinstance(system, dict) else ())]
        for i, c in enumerate(contents):
            if not isinstance(c, dict) or c.get("role") not in ("user", "model"):
                raise BadRequest(f"* contents[{i}].role: must be 'user' or 'model'")
            parts = c.get("parts")
            if not isinstance(parts, list) or not parts:
                raise BadRequest(f"* contents[{i}].parts: must not be empty")
            blocks.extend(parts)
        for part in blocks:
            keys = part.keys() & _PARTS if isinstance(part, dict) else set()
            if len(keys) != 1:
                raise BadRequest("* a part must hold exactly one of text, inlineData, "
                                  "fileData, functionCall, functionResponse")  # fmt: skip
            chars += len(str(part.get("text") or ""))
        self._check_calls(contents)
        return chars

    def _check_calls(self, contents: list[Any]) -> None:
        calls: set[str] = set()
        for c in contents:
            for part in c["parts"]:
                fc, fr = part.get("functionCall"), part.get("functionResponse")
                if isinstance(fc, dict) and c["role"] == "model":
                    calls.add(str(fc.get("id")))
                    signed = self._signatures.get(str(fc.get("id")))
                    if signed is not None and part.get("thoughtSignature") != signed:
                        raise BadRequest("Function call is missing a thought_signature in "
                                          "functionCall parts.")  # fmt: skip
                if isinstance(fr, dict) and "id" in fr and str(fr["id"]) not in calls:
                    raise BadRequest("* functionResponse.id: does not match a function call")

    async def _generate(self, request: Request, record: Record, body: Json) -> Response:
        if record.stream and request.query.get("alt") != "sse":
            raise BadRequest("FakeGemini streams only with ?alt=sse")
        prompt = tokens_for(self._check(body))
        n = _candidate_count(body)
        text, call_parts = self._answer(body)
        out = tokens_for(len(text) + sum(len(orjson.dumps(p)) for p in call_parts)) * n
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": out,
                 "totalTokenCount": prompt + out}  # fmt: skip
        match = _PATH.match(request.path)
        head = {"modelVersion": self._model or (match.group(1) if match else "fake-model"),
                "responseId": f"resp-{self.name}-{next(self._ids)}"}  # fmt: skip
        thinking = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
        if thinking.get("includeThoughts"):
            call_parts = [{"text": "Thinking it over.", "thought": True}, *call_parts]
            usage["thoughtsTokenCount"] = 4
            usage["totalTokenCount"] += 4
        if not record.stream:
            parts = ([{"text": text}] if text else []) + call_parts
            cands = [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                      "index": i} for i in range(n)]  # fmt: skip
            record.status = 200
            payload = {"candidates": cands, "usageMetadata": usage, **head}
            return web.Response(body=orjson.dumps(payload), headers=JSON_HEADERS)
        frames = self._frames(text, call_parts, n, head, usage)
        return await self._stream(request, record, frames)

    def _answer(self, body: Json) -> tuple[str, list[dict[str, Any]]]:
        """The reply's text, or (when the tool reply asks for calls) no text and the calls
        as functionCall parts."""
        calls = list(self._tool_reply(body)) if self._tool_reply is not None else []
        text = "" if calls else (self._reply if isinstance(self._reply, str) else self._reply(body))
        parts: list[dict[str, Any]] = []
        for k, (name, args) in enumerate(calls):
            call_id = f"fc-{self.name}-{next(self._ids)}"
            part: dict[str, Any] = {"functionCall": {"id": call_id, "name": name,
                                                     "args": dict(args)}}  # fmt: skip
            if k == 0:  # parallel calls: only the first carries the signature
                part["thoughtSignature"] = self._signatures[call_id] = f"c2lnLXtjYWxsX2lkfQ{k}"
            parts.append(part)
        return text, parts

    def _frames(
        self,
        text: str,
        call_parts: list[dict[str, Any]],
        n: int,
        head: dict[str, Any],
        usage: dict[str, int],
    ) -> list[bytes]:
        """The SSE events of a streamed answer: the text in pieces, then one event with the
        calls, the finish reason and the final usage."""
        prompt = usage["promptTokenCount"]
        running = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        frames = []
        for piece in split_text(text, self._stream_chunks) if text else []:
            cands = [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": i}
                     for i in range(n)]  # fmt: skip
            frames.append(_sse({"candidates": cands, "usageMetadata": running, **head}))
        last = [{"content": {"role": "model", "parts": call_parts or [{"text": ""}]},
                 "finishReason": "STOP", "index": i} for i in range(n)]  # fmt: skip
        frames.append(_sse({"candidates": last, "usageMetadata": usage, **head}))
        return frames

    async def _embed(self, request: Request, record: Record, body: Json) -> Response:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise BadRequest("* BatchEmbedContentsRequest.requests: must not be empty")
        out = []
        for i, item in enumerate(requests):
            parts = (
                ((item.get("content") or {}).get("parts") or []) if isinstance(item, dict) else []
            )
            text = "".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))
            if not parts or not isinstance(item.get("model"), str):
                raise BadRequest(f"* requests[{i}]: model and content.parts are required")
            dim = item.get("outputDimensionality", self._embedding_dim)
            if not _positive_int(dim):
                raise BadRequest(f"* requests[{i}].output_dimensionality: must be >= 1")
            out.append({"values": list(unit_vector(b"s:" + text.encode(), dim))})
        record.status = 200
        return web.Response(body=orjson.dumps({"embeddings": out}), headers=JSON_HEADERS)
