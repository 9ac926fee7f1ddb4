"""The OpenAI-compatible transport: chat completions (plain and SSE) and embeddings
against any server that speaks OpenAI's wire format at `api_base`."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from interlock.config import Deployment
from interlock.deadline import DeadlineWheel
from interlock.errors import (
    InterlockError,
    InternalServerError,
    StreamInterruptedError,
)
from interlock.presets import preset_for
from interlock.providers.http import HttpClient, dumps_body, malformed, open_sse, post_bytes
from interlock.providers.http_errors import error_body_fields, error_from_response, scrub
from interlock.providers.params import call_headers
from interlock.providers.sse import OpenChoices, SSEReader, read_error
from interlock.types import ChatCompletion, ChatCompletionChunk, EmbeddingResponse, Request

__all__ = ["OpenAIStream", "OpenAITransport", "error_in_200", "openai_error", "outgoing_messages"]

_PARSE_ERRORS = (
    orjson.JSONDecodeError,
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
)


@dataclass(slots=True, frozen=True)
class _Endpoint:
    chat: URL
    embeddings: URL
    headers: dict[str, str]
    secret: str | None
    model: str = ""
    keep_reasoning: bool = False
    """The provider takes ``reasoning_content`` back in assistant messages."""
    deployment: Deployment | None = None
    """The settings it was made from. A runtime change gives a deployment a new
    `Deployment` object under the same id; the next request, seeing another object,
    makes the endpoint again (new key, address, headers), whatever the order in which
    requests of the old and new settings reach the transport."""


class OpenAITransport:
    """Speaks OpenAI's HTTP API over the router's shared session."""

    provider = "openai"
    _plain_body = True
    """A call without parameters is sent as just the model and the messages (a
    subclass whose `_payload` changes that turns this off)."""

    def __init__(self, client: HttpClient, deadlines: DeadlineWheel | None = None) -> None:
        self._client = client
        self._deadlines = deadlines or DeadlineWheel()
        self._endpoints: dict[str, _Endpoint] = {}

    def _endpoint(self, d: Deployment) -> _Endpoint:
        ep = self._endpoints.get(d.id or "")
        if ep is None or ep.deployment is not d:
            key = d.api_key_value()
            headers = {"Content-Type": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            headers.update(d.headers)
            preset = preset_for(d.provider)
            ep = _Endpoint(
                URL(f"{d.api_base}/chat/completions", encoded=True),
                URL(f"{d.api_base}/embeddings", encoded=True),
                headers,
                key,
                d.model,
                preset is not None and preset.reasoning_content_in,
                d,
            )
            self._endpoints[d.id or ""] = ep
        return ep

    def _payload(
        self, d: Deployment, head: dict[str, Any], params: dict[str, Any]
    ) -> dict[str, Any]:
        # `extra_body` merges into the top level, after (and over) the common parameters.
        payload = {"model": d.model, **head, **params}
        payload.pop("extra_headers", None)
        extra = payload.pop("extra_body", None)
        if extra:
            payload.update(extra)
        return payload

    def chat_body(self, d: Deployment, request: Request, stream: bool) -> dict[str, Any]:
        """The chat completions body for `request` (streaming when `stream`)."""
        preset = preset_for(d.provider)
        messages = outgoing_messages(
            request.messages, preset is not None and preset.reasoning_content_in
        )
        payload = self._payload(d, {"messages": messages}, request.params)
        if stream:
            payload["stream"] = True
            accepts = preset is None or preset.stream_usage
            if d.stream_usage and accepts and "stream_options" not in payload:
                payload["stream_options"] = {"include_usage": True}
        return payload

    def chat(
        self, d: Deployment, request: Request, timeout: float
    ) -> Coroutine[Any, Any, ChatCompletion]:
        # Not a coroutine function: it returns `post_bytes`'s coroutine, which parses
        # the reply itself (one coroutine frame less on every resumption of a request).
        ep = self._endpoints.get(d.id or "")
        if ep is None or ep.deployment is not d:
            ep = self._endpoint(d)
        params = request.params
        if params or not self._plain_body:
            body = dumps_body(self.chat_body(d, request, False))
            headers = call_headers(ep.headers, params)
        else:
            # The common case, inline: no parameters to merge, the deployment's headers.
            messages = outgoing_messages(request.messages, ep.keep_reasoning)
            body = dumps_body({"model": ep.model, "messages": messages})
            headers = ep.headers
        return post_bytes(
            self._client, self._deadlines, d, ep.chat, body, headers, ep.secret, timeout,
            openai_error, _chat_completion,
        )  # fmt: skip

    def embedding_body(self, d: Deployment, request: Request) -> dict[str, Any]:
        """The embeddings body for `request`."""
        return self._payload(d, {"input": request.input}, request.params)

    async def embed(self, d: Deployment, request: Request, timeout: float) -> EmbeddingResponse:
        ep = self._endpoint(d)
        body = dumps_body(self.embedding_body(d, request))
        raw = await post_bytes(
            self._client, self._deadlines, d, ep.embeddings, body,
            call_headers(ep.headers, request.params), ep.secret,
            timeout, openai_error,
        )  # fmt: skip
        try:
            data = orjson.loads(raw)
            if isinstance(data, dict) and "error" in data and "data" not in data:
                raise error_in_200(d, data, ep.secret)
            return EmbeddingResponse.from_dict(data, deployment_id=d.id or "", group=d.group)
        except _PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the decoder's exception holds the body

    async def open_stream(self, d: Deployment, request: Request, timeout: float) -> OpenAIStream:
        ep = self._endpoint(d)
        payload = self.chat_body(d, request, True)
        return await open_sse(
            self._client, self._deadlines, d, ep.chat, dumps_body(payload),
            call_headers(ep.headers, request.params),
            ep.secret, timeout, openai_error, lambda resp: OpenAIStream(resp, d, ep.secret),
        )  # fmt: skip

    def forget(self, deployment_id: str) -> None:
        """Drop what was made for a deployment the router no longer has (its headers
        hold its key)."""
        self._endpoints.pop(deployment_id, None)

    async def aclose(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"OpenAITransport(open={self._client.is_open})"


def _chat_completion(d: Deployment, raw: bytes, secret: str | None) -> ChatCompletion:
    try:
        data = orjson.loads(raw)
        if isinstance(data, dict) and "error" in data and "choices" not in data:
            raise error_in_200(d, data, secret)
        return ChatCompletion.from_dict(data, deployment_id=d.id or "", group=d.group)
    except _PARSE_ERRORS as exc:
        err = malformed(d, exc)
    raise err  # off the chain: the decoder's exception holds the body


_chunk_from_dict = ChatCompletionChunk.from_dict
"""Bound once: reading a classmethod off its class makes a bound method each time,
an allocation per chunk."""


class OpenAIStream:
    """An open SSE stream of `chat.completion.chunk` events."""

    __slots__ = (
        "_choices",
        "_done",
        "_reader",
        "_resp",
        "_secret",
        "chunks",
        "deployment",
        "first",
    )

    first: ChatCompletionChunk

    def __init__(
        self, resp: aiohttp.ClientResponse, deployment: Deployment, secret: str | None
    ) -> None:
        self._resp = resp
        self._reader = SSEReader(resp, idle_timeout=deployment.timeout)
        self._secret = secret
        self._done = False
        self._choices = OpenChoices()
        self.deployment = deployment
        self.chunks = 0

    async def next(self) -> ChatCompletionChunk | None:
        # hot path: runs for every chunk of every stream, so the event's decoding and
        # the choices' bookkeeping are inline (a call less each per chunk).
        if self._done:
            return None
        d = self.deployment
        err: InterlockError
        try:
            data = await self._reader.read()
        except Exception as exc:  # typed below, or raised as it is
            self.close()
            found = read_error(d, exc, self.chunks)
            if found is None:
                raise
            err = found  # raised below, outside the except block: off the chain
        else:
            if data is None or data == b"[DONE]":
                self.close()
                if data is not None or self._choices.complete:
                    return None
                raise StreamInterruptedError(
                    f"stream ended without [DONE] after {self.chunks} chunk(s)",
                    deployment_id=d.id,
                )
            try:
                obj = orjson.loads(data)
                if type(obj) is dict and "error" in obj and "choices" not in obj:
                    chunk = None
                else:
                    chunk = _chunk_from_dict(obj, deployment_id=d.id or "", group=d.group)
            except _PARSE_ERRORS as exc:
                err = malformed(d, exc)
            else:
                if chunk is not None:
                    choices = chunk.choices
                    if len(choices) == 1:  # `OpenChoices.note`, without its two calls
                        c = choices[0]
                        if c.finish_reason is None:
                            self._choices.unfinished.add(c.index)
                        else:
                            self._choices.finish(c.index)
                    else:
                        self._choices.note(chunk)
                    self.chunks += 1
                    return chunk
                message, _, _ = error_body_fields(data)
                err = InternalServerError(
                    f"{d.provider} sent an error mid-stream: {scrub(message, self._secret)}",
                    deployment_id=d.id,
                )
            self.close()
        raise err

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._reader.close()
            self._resp.close()


# Fields interlock's results carry that no OpenAI-style API takes back in a message.
_OUTPUT_ONLY = frozenset(("reasoning_blocks", "reasoning_content", "annotations", "citations"))
_OUTPUT_ONLY_KEEPING_REASONING = _OUTPUT_ONLY - {"reasoning_content"}
_STATUS_OF_TYPE = {"invalid_request_error": 400, "authentication_error": 401,
                   "permission_error": 403, "not_found_error": 404, "rate_limit_error": 429,
                   "rate_limit_exceeded": 429, "insufficient_quota": 429}  # fmt: skip


def outgoing_messages(messages: Sequence[Any], keep_reasoning: bool) -> Sequence[Any]:
    """`messages` without the output-only fields of replayed assistant turns (copied
    only when one has any): an assistant message as `to_dict()` gives it goes back as
    OpenAI takes it."""
    drop = _OUTPUT_ONLY_KEEPING_REASONING if keep_reasoning else _OUTPUT_ONLY
    # A plain loop, dicts checked first: this runs for every request.
    for m in messages:
        if (type(m) is dict or isinstance(m, Mapping)) and not drop.isdisjoint(m):
            break
    else:
        return messages
    return [
        {k: v for k, v in m.items() if k not in drop} if isinstance(m, Mapping) else m
        for m in messages
    ]


def error_in_200(d: Deployment, data: Mapping[str, Any], secret: str | None) -> InterlockError:
    """An ``{"error": ...}`` body that came with HTTP 200 (some gateways and compatible
    servers do): mapped as if it had come with the status its ``code`` (or ``type``)
    says, 500 when it says none."""
    err = data.get("error")
    code = err.get("code") if isinstance(err, Mapping) else None
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if not (isinstance(code, int) and 400 <= code < 600):
        etype = str(err.get("type") or err.get("code") or "") if isinstance(err, Mapping) else ""
        code = _STATUS_OF_TYPE.get(etype, 500)
    return openai_error(d, code, {}, orjson.dumps(data), secret)


def openai_error(
    d: Deployment, status: int, headers: Mapping[str, str], raw: bytes, secret: str | None
) -> InterlockError:
    """OpenAI's error bodies and status codes onto the error tree."""
    return error_from_response(
        status, headers, raw, provider=d.provider, deployment_id=d.id or "", secret=secret
    )
