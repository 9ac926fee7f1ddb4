"""The Google Gemini transport (generativelanguage API): OpenAI-shaped requests in,
OpenAI-shaped completions, chunks and embeddings out.

Wire format (public API docs): ``POST {api_base}/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse`` (SSE, each event a whole GenerateContentResponse,
no end marker) and ``:batchEmbedContents``; the key goes in the ``x-goog-api-key``
header, never the URL. Turns are ``contents`` of ``parts`` with roles ``user`` and
``model``; the system prompt is ``systemInstruction``; tools are
``functionDeclarations`` and calls come back as ``functionCall`` parts. A blocked
prompt has ``promptFeedback.blockReason``; errors are
``{"error": {"code", "message", "status"}}`` (``RESOURCE_EXHAUSTED``, ...).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import orjson
from yarl import URL

from interlock.config import Deployment
from interlock.errors import (
    AuthenticationError,
    BadRequestError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    InterlockError,
    MalformedResponseError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from interlock.providers.http import error_from_response, malformed, parse_retry_after, scrub
from interlock.providers.native import (
    PARSE_ERRORS,
    NativeStream,
    NativeTransport,
    delta_choice,
    make_chunk,
)
from interlock.providers.params import (
    check_unsupported,
    content_text,
    guess_media_type,
    image_url_of,
    merge_extra,
    parse_data_url,
    split_extra,
    tool_arguments,
)
from interlock.types import (
    ChatCompletion,
    ChatMessage,
    Choice,
    Embedding,
    EmbeddingResponse,
    Request,
    Usage,
    token_count,
)

__all__ = ["GeminiTransport", "gemini_error_details"]

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_GENERATION = {
    "temperature": "temperature",
    "top_p": "topP",
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "n": "candidateCount",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "seed": "seed",
}
_MAPPED = frozenset((*_GENERATION, "stop", "tools", "tool_choice", "response_format",
                     "stream_options"))  # fmt: skip
_NOOP: dict[str, Any] = {"parallel_tool_calls": True}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s\s*$")


def gemini_error_details(raw: bytes) -> tuple[str, float | None, str]:
    """``(status, retry delay in seconds, reason)`` from a Google API error body."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "", None, ""
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return "", None, ""
    delay: float | None = None
    reason = ""
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        match = _DURATION.match(str(detail.get("retryDelay") or ""))
        if match:
            delay = float(match.group(1))
        reason = reason or str(detail.get("reason") or "")
    return str(err.get("status") or ""), delay, reason


def _model_path(model: str) -> str:
    return model if model.startswith("models/") else f"models/{model}"


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        return [{"text": content_text(content)}]
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            parts.append({"text": str(part.get("text") or "")})
        elif kind == "image_url":
            url = image_url_of(part)
            data = parse_data_url(url)
            if data is not None:
                parts.append({"inlineData": {"mimeType": data[0], "data": data[1]}})
            else:
                parts.append({"fileData": {"mimeType": guess_media_type(url), "fileUri": url}})
        else:
            raise BadRequestError(f"content part type {kind!r} is not supported by gemini")
    return parts


def _contents(messages: Any, d: Deployment) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, for functionResponse

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})

    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise BadRequestError(f"messages[{i}] must be an object", deployment_id=d.id)
        role, content = m.get("role"), m.get("content")
        if role in ("system", "developer"):
            system.append(content_text(content))
        elif role == "user":
            add("user", _parts(content))
        elif role == "assistant":
            parts: list[dict[str, Any]] = []
            text = content_text(content)
            if text:
                parts.append({"text": text})
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                names[str(call.get("id"))] = str(fn.get("name"))
                call_part = {"name": fn.get("name"), "args": tool_arguments(fn.get("arguments"))}
                parts.append({"functionCall": call_part})
            add("model", parts or [{"text": ""}])
        elif role == "tool":
            text = content_text(content)
            try:
                response = orjson.loads(text)
            except orjson.JSONDecodeError:
                response = None
            if not isinstance(response, dict):
                response = {"content": text}
            name = names.get(str(m.get("tool_call_id"))) or m.get("name")
            if not name:
                raise BadRequestError(
                    f"messages[{i}] answers a tool call gemini cannot match to a function",
                    deployment_id=d.id,
                )
            add("user", [{"functionResponse": {"name": name, "response": response}}])
        else:
            raise BadRequestError(
                f"messages[{i}].role {role!r} is not one of system, developer, user, "
                "assistant, tool",
                deployment_id=d.id,
            )
    return system, out


def build_body(d: Deployment, request: Request) -> dict[str, Any]:
    """The generateContent body for an OpenAI-shaped chat request."""
    params, extra = split_extra(request.params)
    unsupported = [
        k for k, v in params.items() if k not in _MAPPED and not (k in _NOOP and v == _NOOP[k])
    ]
    config = _format_config(params.get("response_format"))
    if config is None:
        unsupported.append("response_format")
        config = {}
    check_unsupported("gemini", unsupported, request.unsupported_params, d.id)
    system, contents = _contents(request.messages, d)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config.update(_sampling_config(params))
    if config:
        body["generationConfig"] = config
    body.update(_tool_fields(params))
    return merge_extra(body, extra, deep=True)


def _format_config(fmt: Any) -> dict[str, Any] | None:
    """The generationConfig fields for an OpenAI ``response_format``; None when gemini has
    no equivalent."""
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        config: dict[str, Any] = {"responseMimeType": "application/json"}
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseSchema"] = schema
        return config
    if fmt is None or kind == "text":
        return {}
    return None


def _sampling_config(params: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for ours, theirs in _GENERATION.items():
        if params.get(ours) is not None:
            config[theirs] = params[ours]
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def _tool_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    tools = params.get("tools")
    if not tools:
        return {}
    declarations = []
    for t in tools:
        fn = t.get("function") or {}
        decl = {"name": fn.get("name"), "description": fn.get("description", "")}
        if fn.get("parameters"):
            decl["parameters"] = fn["parameters"]
        declarations.append(decl)
    fields: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
    choice = params.get("tool_choice")
    if choice is not None:
        fields["toolConfig"] = {"functionCallingConfig": _calling_config(choice)}
    return fields


def _calling_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}
    if choice in _MODES:
        return {"mode": _MODES[choice]}
    raise BadRequestError("tool_choice must be auto, none, required or a function")


def _usage(u: Mapping[str, Any] | None) -> Usage | None:
    if not u:
        return None
    names = ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "totalTokenCount")
    prompt, out, thoughts, total = (token_count(u.get(k), f"usageMetadata.{k}") for k in names)
    return Usage(prompt, out + thoughts, total or prompt + out + thoughts)


def _check_blocked(data: Mapping[str, Any], d: Deployment) -> None:
    reason = (data.get("promptFeedback") or {}).get("blockReason")
    if reason:
        raise ContentPolicyViolationError(
            f"gemini blocked the prompt (blockReason {reason})", status_code=400, deployment_id=d.id
        )


def _split_parts(parts: list[Any], first_call: int) -> tuple[str, list[dict[str, Any]]]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if "text" in part and not part.get("thought"):
            text.append(part["text"])
        elif "functionCall" in part:
            fc = part["functionCall"]
            n = first_call + len(calls)
            calls.append(
                {
                    "id": str(fc.get("id") or f"call_{n}"),
                    "type": "function",
                    "function": {
                        "name": fc["name"],
                        "arguments": orjson.dumps(fc.get("args") or {}).decode(),
                    },
                }
            )
    return "".join(text), calls


def _finish(reason: Any, calls: bool, empty: bool, d: Deployment) -> str | None:
    if reason is None or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    finish = FINISH_REASONS.get(str(reason), "stop")
    if finish == "content_filter" and empty:
        raise ContentPolicyViolationError(
            f"gemini withheld the answer (finishReason {reason})",
            status_code=400,
            deployment_id=d.id,
        )
    return "tool_calls" if calls and finish == "stop" else finish


def parse_response(data: Any, d: Deployment) -> ChatCompletion:
    """A generateContent response as a `ChatCompletion`."""
    _check_blocked(data, d)
    choices: list[Choice] = []
    for i, cand in enumerate(data.get("candidates") or ()):
        text, calls = _split_parts((cand.get("content") or {}).get("parts") or [], 0)
        finish = _finish(cand.get("finishReason"), bool(calls), not text and not calls, d)
        message = ChatMessage("assistant", text if text or not calls else None, calls or None)
        choices.append(Choice(int(cand.get("index", i)), message, finish))
    if not choices:
        raise MalformedResponseError("gemini answered without candidates", deployment_id=d.id)
    return ChatCompletion(
        id=str(data.get("responseId") or ""),
        model=str(data.get("modelVersion") or d.model),
        choices=choices,
        usage=_usage(data.get("usageMetadata")),
        created=int(time.time()),
        deployment_id=d.id or "",
        group=d.group,
    )


class GeminiTransport(NativeTransport):
    """Speaks the Gemini API over the router's shared session."""

    provider = "gemini"

    def _headers(self, d: Deployment, key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers["x-goog-api-key"] = key
        return headers

    def _error(
        self, d: Deployment, status: int, headers: Mapping[str, str], raw: bytes, secret: str | None
    ) -> InterlockError:
        err = error_from_response(
            status, headers, raw, provider="gemini", deployment_id=d.id or "", secret=secret
        )
        kind, delay, reason = gemini_error_details(raw)
        text = scrub(err.message, secret)
        kw: dict[str, Any] = {"status_code": status, "deployment_id": d.id}
        if kind == "RESOURCE_EXHAUSTED" or status == 429:
            hint = parse_retry_after(headers)
            return RateLimitError(text, retry_after=hint if hint is not None else delay, **kw)
        if kind == "UNAVAILABLE":
            return ServiceUnavailableError(text, retry_after=parse_retry_after(headers), **kw)
        if reason == "API_KEY_INVALID" or "api key not valid" in text.lower():
            return AuthenticationError(text, **kw)
        if kind == "UNAUTHENTICATED":
            return AuthenticationError(text, **kw)
        if kind == "PERMISSION_DENIED":
            return PermissionDeniedError(text, **kw)
        if status == 400 and "exceeds the maximum number of tokens" in text.lower():
            return ContextWindowExceededError(text, **kw)
        return err

    def _url(self, d: Deployment, method: str) -> URL:
        return URL(f"{self._endpoint(d).base}/{_model_path(d.model)}:{method}", encoded=True)

    async def chat(self, d: Deployment, request: Request, timeout: float) -> ChatCompletion:
        ep = self._endpoint(d)
        body = build_body(d, request)
        data = await self._post(d, ep, self._url(d, "generateContent"), body, timeout)
        try:
            return parse_response(data, d)
        except PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the parser's exception may quote the body

    async def open_stream(self, d: Deployment, request: Request, timeout: float) -> NativeStream:
        ep = self._endpoint(d)
        body = build_body(d, request)
        url = self._url(d, "streamGenerateContent").with_query(alt="sse")
        return await self._open(d, ep, url, body, timeout, GeminiStream)

    async def embed(self, d: Deployment, request: Request, timeout: float) -> EmbeddingResponse:
        params, extra = split_extra(request.params)
        unsupported = [
            k for k, v in params.items()
            if k != "dimensions" and not (k == "encoding_format" and v == "float")
        ]  # fmt: skip
        check_unsupported("gemini", unsupported, request.unsupported_params, d.id)
        items = [request.input] if isinstance(request.input, str) else request.input
        if not isinstance(items, list | tuple) or not all(isinstance(t, str) for t in items):
            raise BadRequestError(
                "gemini embeddings take a string or a list of strings, not token ids",
                deployment_id=d.id,
            )
        model = _model_path(d.model)
        requests = []
        for text in items:
            item: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
            if params.get("dimensions"):
                item["outputDimensionality"] = params["dimensions"]
            requests.append(merge_extra(item, extra, deep=True))
        ep = self._endpoint(d)
        data = await self._post(
            d, ep, self._url(d, "batchEmbedContents"), {"requests": requests}, timeout
        )
        try:
            vectors = [
                Embedding(i, [float(v) for v in e["values"]])
                for i, e in enumerate(data["embeddings"])
            ]
            return EmbeddingResponse(
                data=vectors, model=d.model, usage=None, deployment_id=d.id or "", group=d.group
            )
        except PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the parser's exception may quote the body


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

    def _feed(self, data: bytes) -> None:
        event = orjson.loads(data)
        d = self.deployment
        _check_blocked(event, d)
        self._id = self._id or str(event.get("responseId") or "")
        self._model = str(event.get("modelVersion") or self._model)
        self._usage = _usage(event.get("usageMetadata")) or self._usage
        ended = False
        for i, cand in enumerate(event.get("candidates") or ()):
            index = int(cand.get("index", i))
            self._emit_content(index, cand)
            ended = self._emit_finish(index, cand) or ended
        if ended and not self._open:
            self.finished = True
            if self._usage is not None and d.stream_usage:
                self._emit(make_chunk(d, self._id, self._model, self.created, [], self._usage))

    def _emit_content(self, index: int, cand: Mapping[str, Any]) -> None:
        """A delta with the candidate's new text and tool calls; its first also names the
        role, even when empty."""
        calls_so_far = self._calls.get(index, 0)
        parts = (cand.get("content") or {}).get("parts") or []
        text, calls = _split_parts(parts, calls_so_far)
        role = None
        if index not in self._started:
            self._started.add(index)
            self._open.add(index)
            role = "assistant"
        if not (text or calls or role):
            return
        for n, call in enumerate(calls):
            call["index"] = calls_so_far + n
        self._calls[index] = calls_so_far + len(calls)
        if text or calls:
            self._said.add(index)
        choice = delta_choice(
            index, role=role, content=text or ("" if role else None), tool_calls=calls or None
        )
        self._emit(make_chunk(self.deployment, self._id, self._model, self.created, [choice]))

    def _emit_finish(self, index: int, cand: Mapping[str, Any]) -> bool:
        """Closes the candidate if this event ends it; True when it did."""
        reason = cand.get("finishReason")
        if reason is None or index not in self._open:
            return False
        d = self.deployment
        finish = _finish(reason, self._calls.get(index, 0) > 0, index not in self._said, d)
        if finish is None:
            return False
        self._open.discard(index)
        choice = delta_choice(index, finish=finish)
        self._emit(make_chunk(d, self._id, self._model, self.created, [choice]))
        return True
